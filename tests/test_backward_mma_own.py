"""flash_bwd_mma's OWN_DV / OWN_DK without a GPU: off, no config turns them on; on, the S^T form's 2-D layouts
(warps_q 2 and 4, causal or not, plain or with variants but softcap, whose registers hold P dcap) do, while warps_q 1,
softcap and the S form (D 128 non-causal) do not; served at D 64 (s30a), where the tiles compile with 0 B spilled, as
the D 256 tile does with them on. GPU checks: tests/test_backward_mma_own_gpu.py."""
import pytest

from autoflash.kernels.render import render
from autoflash.ops import backward_mma_switches
from autoflash.ops.backward import TEMPLATE

ON = ("OWN_DV = true", "OWN_DK = true")


def cfg(d, causal=False, warps_q=2, dtype="bf16", **kw):
    key = dict(dtype=dtype, head_dim=d, causal=causal, deterministic=False, **kw)
    bm, bn = (128, 128) if d == 64 and warps_q == 2 else (64, 64) if d == 256 else (64, 128)
    return TEMPLATE.config("sm_90", key, block_m=bm, block_n=bn, warps=8, stages=2, warps_q=warps_q)


def switched(monkeypatch, tiles):
    for name in ("OWN_DV", "OWN_DK"):
        monkeypatch.setattr(backward_mma_switches, name, tiles)


def test_served_at_d64_only():
    assert backward_mma_switches.OWN_DV == backward_mma_switches.OWN_DK == (64,)
    assert all(m in render(cfg(64, c)) for m in ON for c in (False, True))
    assert not any(m in render(cfg(d, True, warps_q=wq)) for m in ON for d, wq in ((128, 2), (256, 4)))


def test_off_turns_them_on_nowhere(monkeypatch):
    switched(monkeypatch, ())
    assert not any(m in render(cfg(d, c)) for m in ON for d in (64, 128) for c in (False, True))


@pytest.mark.parametrize("mark", ON)
def test_on_the_s_transposed_2d_layouts_only(monkeypatch, mark):
    switched(monkeypatch, (64, 128, 256))
    assert all(mark in render(cfg(64, c)) for c in (False, True)) and mark in render(cfg(128, True))
    assert mark in render(cfg(256, True, warps_q=4)) and mark in render(cfg(64, True, window=True))
    assert mark not in render(cfg(64, warps_q=1)) and mark not in render(cfg(64, True, softcap=True))
    assert mark not in render(cfg(128))  # the S form (S_ROWS)


def test_on_the_d64_and_d256_tiles_compile_clean(monkeypatch):
    from autoflash.kernels.compile import compile_kernel

    switched(monkeypatch, (64, 128, 256))
    for dtype in ("bf16", "fp16"):
        for c in (cfg(64, dtype=dtype), cfg(64, True, dtype=dtype), cfg(256, True, warps_q=4, dtype=dtype)):
            report = compile_kernel(c).report
            assert report.spill_stores == report.spill_loads == 0, (c.name, report)
