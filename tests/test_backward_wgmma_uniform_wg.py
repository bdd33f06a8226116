"""flash_bwd_wgmma's warpgroup index by a lane-0 shuffle (issue 16), without a GPU. ptxas takes the shuffled index as
warp-uniform, so the K/V descriptors of the S^T / dP^T wgmmas and the dQ wgmma's dS^T / K descriptors (all built from
it) stay in uniform registers, not vector registers moved by an R2UR pair before each wgmma; the dK/dV stores after
the loop take their key rows from the plain index again, so the shuffled value need not stay live across the loop
(NVRTC 13.0 spilled it, 12 B at D 128). Timed on the H200 (benchmarks/NOTES.md): D 128 +2.2..+4.9 %, D 64 neutral.
Only the kernels with a producer warpgroup: without one (the consumers at 252-254 registers, e.g. the deterministic
default) the shuffled index spilled 52-80 B, so they keep the plain index. Checked here: every valid config renders
its form, and the served tiles compile with no spills, no local memory, no serialised wgmma and few R2UR (NVRTC 13 +
ptxas, bf16: 11-14 a kernel; 45-61 with the plain index). The no-producer configs' compiles: tests/test_backward_wgmma.py."""
import collections
import re

import pytest

from autoflash.kernels.render import render
from autoflash.ops import backward_wgmma

from sass import sass
from test_backward_wgmma import SCHEDULES, _valid_configs, cfg

SHUFFLED = ("    const int wg = __shfl_sync(0xffffffffu, threadIdx.x / 128, 0), warp = (threadIdx.x % 128) / 32, "
            "lane = threadIdx.x % 32;")
PLAIN = "    const int wg = threadIdx.x / 128, warp = (threadIdx.x % 128) / 32, lane = threadIdx.x % 32;"
STORE_KEY_ROWS = ("    const int kw = threadIdx.x / 128 * 64 + warp * 16 + g, key_row = k_start + kw;",
                  "        const int kw = threadIdx.x / 128 * 64 + warp * 16 + g;")  # (STAGED_STORE's)
# the H200's served tiles (tuned_configs/sm_90.json, N 4096): bm64 bn128 w12 (a producer warpgroup), D 64 non-causal
# stages 3 (pipelined), the rest stages 2
SERVED = [cfg(dtype, d, causal, bm=64, bn=128, warps=12, stages=3 if (d, causal) == (64, False) else 2)
          for dtype in ("bf16", "fp16") for d in (64, 128) for causal in (False, True)]


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_producer_configs_shuffle_the_warpgroup_index(schedule, monkeypatch):
    monkeypatch.setattr(backward_wgmma, "DQ_OWN_KEYS", SCHEDULES[schedule][0])
    monkeypatch.setattr(backward_wgmma, "DQ_BULK_REDUCE", SCHEDULES[schedule][1])
    served = SERVED if schedule == "split" else []  # the served schedule
    assert all(c.problems() == [] for c in served)
    configs = [c for _, c in _valid_configs(schedule)] + served
    assert len(configs) > len(served)
    for c in configs:
        source = render(c)
        shuffled = backward_wgmma.TEMPLATE.producer(c)
        assert source.count(SHUFFLED) == sum(map(source.count, STORE_KEY_ROWS)) == int(shuffled), c.name
        assert source.count(PLAIN) == int(not shuffled), c.name


def counts(code: str) -> collections.Counter:
    """Opcodes (without modifiers) of a SASS listing."""
    return collections.Counter(m.group(1) for m in re.finditer(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)",
                                                              code))


@pytest.mark.parametrize("c", SERVED[:4], ids=lambda c: c.name)
def test_served_tiles_compile_clean_with_few_r2ur(c, tmp_path, monkeypatch):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels.compile import compile_kernel

    # TAIL_SPLIT's block-index arithmetic adds R2URs before the loop (its main loop's census: within 3 instructions of
    # the 3-D grid's, benchmarks/NOTES.md "TAIL_SPLIT"): the loop's count is what this checks
    monkeypatch.setattr(backward_wgmma, "TAIL_SPLIT", False)
    monkeypatch.setattr(backward_wgmma, "CAUSAL_WALK", False)  # (the same for the causal walk's: 66 R2UR, s27)

    kernel = compile_kernel(c)  # the session's cache: test_backward_wgmma compiles these too
    report = kernel.report
    assert report.spills == 0 and report.stack_frame == 0 and not report.wgmma_serialized, report
    code = sass(kernel.cubin, tmp_path, c.name)
    assert not re.search(r"\b(LDL|STL)\b", code), "local memory"
    found = counts(code)
    # (heavy-first causal tiles: the grouped grid's divisions leave the indices in vector registers, 28 R2UR under
    # NVRTC 13; the s25d timings were of that code. Its census inside the loop is still to be taken)
    limit = 32 if backward_wgmma.heavy_first(c) else 16
    assert found["HGMMA"] > 0 and found["R2UR"] <= limit, (found["HGMMA"], found["R2UR"])
