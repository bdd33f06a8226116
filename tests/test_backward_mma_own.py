"""flash_bwd_mma's OWN_QUERIES without a GPU: off, no config turns it on; on, the S^T form's 2-D layouts (warps_q 2
and 4, causal or not, plain or with variants but softcap, whose registers hold P dcap) do, while warps_q 1, softcap
and the S form (D 128 non-causal) do not; the served D 64 and D 256 tiles compile with 0 B spilled.
GPU checks: tests/test_backward_mma_own_gpu.py."""
from autoflash.kernels.render import render
from autoflash.ops import backward_kernels
from autoflash.ops.backward import TEMPLATE

ON = "constexpr bool OWN_QUERIES = true;"


def cfg(d, causal=False, warps_q=2, dtype="bf16", **kw):
    key = dict(dtype=dtype, head_dim=d, causal=causal, deterministic=False, **kw)
    bm, bn = (128, 128) if d == 64 and warps_q == 2 else (64, 64) if d == 256 else (64, 128)
    return TEMPLATE.config("sm_90", key, block_m=bm, block_n=bn, warps=8, stages=2, warps_q=warps_q)


def test_off_turns_it_on_nowhere(monkeypatch):
    monkeypatch.setattr(backward_kernels, "OWN_QUERIES", ())
    assert not any(ON in render(cfg(d, c)) for d in (64, 128) for c in (False, True))


def test_on_the_s_transposed_2d_layouts_only(monkeypatch):
    monkeypatch.setattr(backward_kernels, "OWN_QUERIES", (64, 128, 256))
    assert all(ON in render(cfg(64, c)) for c in (False, True)) and ON in render(cfg(128, True))
    assert ON in render(cfg(256, True, warps_q=4)) and ON in render(cfg(64, True, window=True))
    assert ON not in render(cfg(64, warps_q=1)) and ON not in render(cfg(64, True, softcap=True))
    assert ON not in render(cfg(128))  # the S form (S_ROWS)


def test_on_the_served_tiles_compile_clean(monkeypatch):
    from autoflash.kernels.compile import compile_kernel

    monkeypatch.setattr(backward_kernels, "OWN_QUERIES", (64, 128, 256))
    for dtype in ("bf16", "fp16"):
        for c in (cfg(64, dtype=dtype), cfg(64, True, dtype=dtype), cfg(256, True, warps_q=4, dtype=dtype)):
            report = compile_kernel(c).report
            assert report.spill_stores == report.spill_loads == 0, (c.name, report)
