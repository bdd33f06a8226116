"""flash_fwd_wgmma without a GPU: its rules prune bad configs, it renders, compiles
for sm_90a with no spills, and its SASS shows HGMMA, TMA loads (UTMALDG) and
setmaxnreg (USETMAXREG). GPU correctness is tests/test_kernels_gpu.py and
benchmarks/wgmma_probe.py."""

import pytest

from autoflash import KernelConfig
from autoflash.kernels.registry import TEMPLATES
from conftest import fwd_key as K
from sass import sass as read_sass

WG = TEMPLATES["flash_fwd_wgmma"]


def cfg(dtype="bf16", d=128, causal=False, bm=128, bn=128, stages=2, warps=None):
    return KernelConfig("flash_fwd_wgmma", "sm_90a", dtype, d, causal, bm, bn,
                        warps if warps is not None else 4 * (bm // 64 + 1), stages)


def test_defaults_are_valid():
    for dtype in WG.dtypes:
        for d in WG.head_dims:
            for causal in (False, True):
                c = WG.default("sm_90a", K(dtype, d, causal))
                assert c.problems() == [], c.name


@pytest.mark.parametrize("bad,reason", [
    (cfg(warps=8), "warps=8 must be 4 x"),
    (cfg(bn=72), "is not one of"),  # not in the knob's values
    (cfg(d=256, bn=256, stages=2), "registers per consumer thread"),
    (cfg(d=256, bn=64, stages=4), "shared memory"),
    (cfg(dtype="fp32"), "does not support dtype fp32"),
    (KernelConfig("flash_fwd_wgmma", "sm_90", "bf16", 128, False, 128, 128, 12, 2), "does not support arch sm_90"),
    (cfg(bm=192, bn=192, d=128), "registers per consumer thread"),
])
def test_rules_prune_before_compiling(bad, reason):
    problems = bad.problems()
    assert any(reason in p for p in problems), problems


def test_search_space_has_valid_configs_for_every_head_dim():
    for d in WG.head_dims:
        valid = [c for c in WG.space("sm_90a", K("bf16", d, False)) if not c.problems()]
        assert len(valid) >= 5, d


def test_dispatch_picks_wgmma_on_sm90():
    from autoflash.serve.dispatch import heuristic_default

    c = heuristic_default("sm_90", "forward", K("bf16", 128, False))
    assert c.template == "flash_fwd_wgmma" and c.arch == "sm_90a"
    assert heuristic_default("sm_80", "forward", K("bf16", 128, False)).template != "flash_fwd_wgmma"


def test_tensor_map_checks_without_driver():
    from autoflash.kernels.tma import TmaError, encode_tiled

    with pytest.raises(TmaError, match="16-byte aligned"):
        encode_tiled(8, "bf16", (128, 100, 4), (256, 25600), (64, 128, 1))
    with pytest.raises(TmaError, match="swizzle span"):
        encode_tiled(256, "bf16", (128, 100, 4), (256, 25600), (128, 128, 1))


COMPILED = [cfg("bf16", 128, False), cfg("fp16", 64, True), cfg("bf16", 256, False, bn=80)]


@pytest.mark.parametrize("c", COMPILED, ids=[c.name for c in COMPILED])
def test_compiles_for_sm90a_without_spills(c, tmp_path):
    from autoflash.kernels.compile import compile_kernel

    compiled = compile_kernel(c)
    assert compiled.report.spills == 0 and not compiled.report.wgmma_serialized, compiled.report
    assert compiled.report.stack_frame == 0, compiled.report
    assert "C7508" not in compiled.log, "ptxas ignored setmaxnreg"  # no register cap at entry
    assert "serialized" not in compiled.log, compiled.log  # wgmma serialisation warnings

    sass = read_sass(compiled.cubin, tmp_path)
    assert f"HGMMA.64x{c.block_n}x16.F32" in sass  # S = Qi Kj^T
    assert f"HGMMA.64x{c.head_dim}x16.F32" in sass  # O += P Vj
    assert "UTMALDG.4D" in sass  # TMA tile loads (4-D: d, token, head, batch with the operand's strides)
    assert "SYNCS.PHASECHK" in sass  # mbarrier waits
    assert "USETMAXREG" in sass  # producer/consumer register split
    assert "LDL" not in sass and "STL" not in sass  # no local memory
