"""flash_bwd_mma's P^T and dS^T stores by stmatrix on sm_90 (ops/backward_kernels.STMATRIX_STORE), without a GPU:
sm_90 renders store them with stmatrix, sm_80-89 renders (no stmatrix there) and sm_90 with the switch off with one
32-bit store a pair; the H200's tiles compile clean, their main loops a quarter of the store instructions. The GPU
checks (gradients against float64 and bitwise to the switch off): tests/test_backward_mma_stmatrix_gpu.py."""
import re

import pytest

from autoflash.kernels.render import render
from autoflash.ops import backward_kernels
from autoflash.ops.backward_kernels import TEMPLATE

from sass import sass

STORE = "stmatrix_x4(st_sdS + at,"


def configs(arch, dims=(64, 128, 256), **extra):
    return [TEMPLATE.default(arch, dict(dtype=dt, head_dim=d, causal=causal, deterministic=det, **extra))
            for dt in ("bf16", "fp16") for d in dims for causal in (False, True) for det in (False, True)]


def test_sm_90_renders_store_by_stmatrix_and_older_archs_do_not():
    assert backward_kernels.STMATRIX_STORE  # measured: benchmarks/NOTES.md, twenty-sixth session
    for c in configs("sm_90") + configs("sm_90", softcap=True):
        assert STORE in render(c), c.name
    for arch, dims in (("sm_80", (64, 128, 256)), ("sm_86", (64, 128)), ("sm_89", (64, 128))):
        for c in configs(arch, dims):
            assert "stmatrix" not in render(c), c.name


def test_off_renders_the_32_bit_stores(monkeypatch):
    monkeypatch.setattr(backward_kernels, "STMATRIX_STORE", False)
    for c in configs("sm_90"):
        assert "stmatrix" not in render(c), c.name


@pytest.mark.parametrize("d, bm, causal", [(64, 128, False), (64, 128, True), (128, 64, False), (128, 64, True)])
def test_h200_tiles_compile_clean_with_a_quarter_of_the_stores(monkeypatch, tmp_path, d, bm, causal):
    """The H200's tuned tiles (bm x 128, 8 warps, 2 stages, the 2-D layout): 0 spills; each P^T / dS^T pair store
    of the main loop's two copies (masked and not) replaced, four by one stmatrix."""
    from autoflash.kernels.compile import compile_kernel

    c = TEMPLATE.config("sm_90", dict(dtype="bf16", head_dim=d, causal=causal, deterministic=False), block_m=bm,
                        block_n=128, warps=8, stages=2, warps_q=2)
    counts = {}
    for on in (True, False):
        monkeypatch.setattr(backward_kernels, "STMATRIX_STORE", on)
        kernel = compile_kernel(c, use_cache=False)
        assert kernel.report.spills == 0 and kernel.report.stack_frame == 0, kernel.report
        code = sass(kernel.cubin, tmp_path, c.name)
        counts[on] = {op: len(re.findall(rf"\b{op}(?:\.\S+)?\s", code)) for op in ("STS", "STSM")}
    stores = 2 * 2 * (32 * bm // 2) // 256  # two loop copies x (P^T, dS^T) x 32 keys x bm / 2 queries / 256 a store
    assert counts[False]["STSM"] == 0 and counts[True]["STSM"] == stores, counts
    assert counts[False]["STS"] - counts[True]["STS"] == 4 * stores, counts
