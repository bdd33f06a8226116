"""flash_bwd_wgmma's DQ_ALTERNATE switch without a GPU (ops/backward_wgmma.py: at the producer tile whose dQ tile one
warpgroup computes, D 64 bm64 bn128 w12 stages 2, tile it's dQ goes to warpgroup it % 2): off, no config's source has
its code (the sha1 of all 56 valid configs' renders was unchanged by the commit that added it, /tmp/BK_notes.md);
on, only those configs change, and they compile for sm_90a with no spills and no wgmma serialisation, with the
consumers' adds, dq_via_producer=1 and deterministic. GPU correctness: tests/test_backward_wgmma_dq_alternate_gpu.py."""
import pytest

from autoflash.kernels.render import render
from autoflash.ops import backward_wgmma
from autoflash.ops.backward_wgmma import TEMPLATE as WG
from test_backward_wgmma import _valid_configs, cfg, kernel_sass

ON_TEXT = ("(DQ_ALTERNATE)", "== it % CONSUMERS", "dq_c = 0;", "if (does_dq) named_barrier")


def test_off_renders_none_of_its_code():
    assert backward_wgmma.DQ_ALTERNATE is False
    for _, c in _valid_configs("split"):
        source = render(c)
        assert not [t for t in ON_TEXT if t in source], c.name
        assert not WG.alternates_dq(c)


def test_on_changes_only_the_uneven_split_at_stages_2(monkeypatch):
    configs = [c for _, c in _valid_configs("split")]
    off = {c.name: render(c) for c in configs}
    monkeypatch.setattr(backward_wgmma, "DQ_ALTERNATE", True)
    changed = {c.name for c in configs if render(c) != off[c.name]}
    expected = {c.name for c in configs if c.head_dim == 64 and WG.producer(c) and c.stages == 2}
    assert changed == expected and len(expected) == 2  # D 64 bm64 bn128 w12 s2, causal and not
    for c in configs:
        assert WG.alternates_dq(c) == (c.name in expected)
        if c.name in expected:
            assert all(t in render(c) for t in ON_TEXT), c.name


@pytest.mark.parametrize("causal,dtype,dqp,det", [(True, "bf16", -1, False), (False, "fp16", -1, False),
                                                  (True, "bf16", 1, False), (False, "fp16", 1, False),
                                                  (True, "bf16", -1, True)])
def test_compiles_without_spills(causal, dtype, dqp, det, tmp_path, monkeypatch):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels.compile import compile_kernel

    monkeypatch.setattr(backward_wgmma, "DQ_ALTERNATE", True)
    c = cfg(dtype=dtype, d=64, causal=causal, warps=12, deterministic=det, dq_via_producer=dqp)
    assert c.problems() == [] and WG.alternates_dq(c)
    kernel = compile_kernel(c)
    print(f"{c.name}: {kernel.report.registers} registers, {kernel.report.spills} B spilled")
    assert kernel.report.spills == 0 and kernel.report.registers <= 168, kernel.report
    assert "serialized" not in kernel.log  # the per-tile, warp-uniform does_dq keeps the wgmmas asynchronous
    main = kernel_sass(kernel, c.name, tmp_path)
    assert "HGMMA.64x64x16" in main and "BAR.ARV" in main and "BAR.SYNC.DEFER_BLOCKING R" in main
    staged = WG.dq_mode(c) != 0  # -1 at D 64: the rule's one bulk op a tile
    assert ("UBLKRED.G.S.ADD.F32" in main) == staged and ("REDG.E.ADD.F32x2" in main) == (not staged)
