"""flash_fwd_wgmma's warpgroup index, without a GPU: dense kernels' consumers read it through a lane-0 shuffle, which
ptxas treats as warp-uniform, so Qi's wgmma descriptor, and with it the tile loop's ring slot, parity and K/V
descriptors, stay in uniform registers instead of vector registers moved by R2UR before each wgmma (adopted after the
ninth session's H200 A/B: causal +5.5..+10 %, benchmarks/NOTES.md). Paged kernels (not timed) keep the plain index.
Checked here: which configs render which line, and the compiled D 64 served tiles (and D 128, D 256, a variant
kernel) have no spills, no local memory, no serialised wgmma and few R2UR. The float64 GPU checks:
tests/test_wgmma_uniform_wg_gpu.py."""
import re

import pytest

from autoflash import KernelConfig
from autoflash.kernels.render import render

from sass import sass

PLAIN = "        const int wg = warpgroup - 1;                      // rows 64wg .. 64wg+63 of Qi"
SHUFFLED = "        const int wg = __shfl_sync(0xffffffffu, warpgroup - 1, 0);  // rows 64wg .. 64wg+63 of Qi"


def wgmma(head_dim=64, causal=True, block_m=128, block_n=128, stages=4, dtype="bf16", **extra):
    return KernelConfig("flash_fwd_wgmma", "sm_90a", dtype, head_dim, causal, block_m, block_n,
                        4 * (block_m // 64 + 1), stages, **extra)


# the H200's served D 64 tiles (tuned_configs/sm_90.json): causal N 1024 br128 bc128 s4 (fp16: pingpong 0), causal
# N 4096 br192 bc128 s2, non-causal br192 bc128 s3 (bf16) / s2 (fp16)
SERVED_D64 = [wgmma(), wgmma(dtype="fp16", pingpong=0), wgmma(block_m=192, stages=2),
              wgmma(block_m=192, stages=2, dtype="fp16"), wgmma(causal=False, block_m=192, stages=3),
              wgmma(causal=False, block_m=192, stages=2, dtype="fp16")]
OTHERS = [wgmma(128, stages=3), wgmma(256, block_n=80, stages=2), wgmma(64, stages=3, window=True, softcap=True),
          wgmma(128, stages=2, sinks=True, alibi=True), wgmma(192, stages=2, head_dim_v=128)]
PAGED = [wgmma(128, stages=2, paged=True), wgmma(64, causal=False, stages=2, paged=True, window=True, sinks=True)]


@pytest.mark.parametrize("cfg", SERVED_D64 + OTHERS, ids=lambda c: c.name)
def test_dense_kernels_read_a_uniform_index(cfg):
    assert cfg.problems() == [], cfg.problems()
    source = render(cfg)
    assert source.count(SHUFFLED) == 1 and PLAIN not in source


@pytest.mark.parametrize("cfg", PAGED, ids=lambda c: c.name)
def test_paged_kernels_keep_the_plain_index(cfg):
    assert cfg.problems() == [], cfg.problems()
    source = render(cfg)
    assert source.count(PLAIN) == 1 and "__shfl_sync(0xffffffffu, warpgroup" not in source


@pytest.mark.parametrize("cfg", SERVED_D64[:3] + OTHERS[:3], ids=lambda c: c.name)
def test_compiles_without_spills_serialisation_or_a_vector_loop_header(cfg, tmp_path):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels import compile as afc

    kernel = afc.compile_kernel(cfg, use_cache=False)
    report = kernel.report
    assert report.spills == 0 and report.stack_frame == 0 and not report.wgmma_serialized, report
    code = sass(kernel.cubin, tmp_path)
    assert not re.search(r"\b(LDL|STL)\b", code), "local memory"
    # with the plain index the causal tiles moved each wgmma's descriptors by R2UR (D 64: 68-116 a kernel, D 128 139,
    # D 256 182); uniform, 57-77 (benchmarks/NOTES.md, ninth session)
    r2ur = len(re.findall(r"\bR2UR\b", code))
    assert r2ur <= 80, r2ur
