"""flash_bwd_wgmma's UNIFORM_WG switch (ops/backward_wgmma.UNIFORM_WG, off; issue 16), without a GPU: the main kernel
reads its warpgroup index through a lane-0 shuffle, which ptxas treats as warp-uniform, so the K/V descriptors of the
S^T / dP^T wgmmas and the dQ wgmma's dS^T / K descriptors (all built from it) stay in uniform registers instead of
vector registers moved by an R2UR pair before each wgmma (the forward's lesson, tests/test_wgmma_uniform_wg.py).
Checked here: off by default and off renders the plain line (the full render identity against the previous tree was a
throw-away script, see the NOTES entry), each value changes only its lines (+ comment lines) for every valid config,
and the compiled served tiles have no spills, no local memory, no serialised wgmma, the same wgmmas, and fewer
instructions and R2UR than with the switch off. Values: 1 one shuffled index for all; 2 the key rows from the plain
index (the device's NVRTC 13.0 spilled 12 B at D 128 with 1: the shuffled value, which ptxas cannot recompute, stayed
live across the loop for the key rows); 3 the plain index up to setmaxnreg, the consumers' shuffle after it; 4 as
1, the dK/dV stores after the loop with the key rows from the plain index again (in a block of their own).
The float64 GPU checks: tests/test_backward_wgmma_uniform_wg_gpu.py."""
import collections
import re

import pytest

from autoflash.kernels.render import render
from autoflash.ops import backward_wgmma

from sass import sass
from test_backward_wgmma import SCHEDULES, _valid_configs, cfg

PLAIN = "    const int wg = threadIdx.x / 128, warp = (threadIdx.x % 128) / 32, lane = threadIdx.x % 32;"
SHUFFLED = ("    const int wg = __shfl_sync(0xffffffffu, threadIdx.x / 128, 0), warp = (threadIdx.x % 128) / 32, "
            "lane = threadIdx.x % 32;")
KEY_ROWS = "    const int kw = wg * 64 + warp * 16 + g;  // this thread's first key row of the block"
PLAIN_KEY_ROWS = ("    const int kw = threadIdx.x / 128 * 64 + warp * 16 + g;  "
                  "// this thread's first key row of the block")
# value -> (lines the switch removes, code lines it adds; the rest it adds are comments)
CHANGES = {
    1: ([PLAIN], [SHUFFLED]),
    2: ([PLAIN, KEY_ROWS], [SHUFFLED, PLAIN_KEY_ROWS]),
    3: ([PLAIN], ["    int wg = threadIdx.x / 128;",
                  "    const int warp = (threadIdx.x % 128) / 32, lane = threadIdx.x % 32;",
                  "    wg = __shfl_sync(0xffffffffu, wg, 0);"]),
    4: ([PLAIN], [SHUFFLED,
                  "    {  // (UNIFORM_WG 4) the key rows again from the plain index, which ptxas recomputes here: the",
                  "    const int kw = threadIdx.x / 128 * 64 + warp * 16 + g, key_row = k_start + kw;"]),
}
# the H200's served tiles (tuned_configs/sm_90.json, N 4096): bm64 bn128 w12 (a producer warpgroup), D 64 non-causal
# stages 3 (pipelined), the rest stages 2
SERVED = [cfg(dtype, d, causal, bm=64, bn=128, warps=12, stages=3 if (d, causal) == (64, False) else 2)
          for dtype in ("bf16", "fp16") for d in (64, 128) for causal in (False, True)]


def test_off_by_default():
    assert backward_wgmma.UNIFORM_WG is False
    for c in SERVED:
        assert c.problems() == [], c.problems()
        source = render(c)
        assert source.count(PLAIN) == 1 and "UNIFORM_WG" not in source and SHUFFLED not in source


@pytest.mark.parametrize("value", list(CHANGES))
@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_on_changes_only_the_warpgroup_index(schedule, value, monkeypatch):
    monkeypatch.setattr(backward_wgmma, "DQ_OWN_KEYS", SCHEDULES[schedule][0])
    monkeypatch.setattr(backward_wgmma, "DQ_BULK_REDUCE", SCHEDULES[schedule][1])
    configs = [c for _, c in _valid_configs(schedule)]
    assert configs
    for c in configs:
        before = render(c)
        monkeypatch.setattr(backward_wgmma, "UNIFORM_WG", value)
        source = render(c)
        monkeypatch.setattr(backward_wgmma, "UNIFORM_WG", False)
        removed = [line for line in before.splitlines() if line not in source.splitlines()]
        added = [line for line in source.splitlines() if line not in before.splitlines()]
        code = [line for line in added if not line.lstrip().startswith("//")]
        assert (removed, code) == CHANGES[value], c.name
        assert all(source.count(line) == 1 for line in code) and len(added) - len(code) <= 4, c.name


def counts(code: str) -> collections.Counter:
    """Opcodes (without modifiers) of a SASS listing."""
    return collections.Counter(m.group(1) for m in re.finditer(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)",
                                                              code))


@pytest.mark.parametrize("c", SERVED[:4], ids=lambda c: c.name)
def test_compiles_without_spills_or_serialisation_and_with_fewer_r2ur(c, tmp_path, monkeypatch):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels.compile import compile_kernel

    found = {}
    for value in (False, *CHANGES):
        monkeypatch.setattr(backward_wgmma, "UNIFORM_WG", value)
        kernel = compile_kernel(c, use_cache=False)
        report = kernel.report
        assert report.spills == 0 and report.stack_frame == 0 and not report.wgmma_serialized, report
        code = sass(kernel.cubin, tmp_path, c.name)
        assert not re.search(r"\b(LDL|STL)\b", code), "local memory"
        found[value] = counts(code)
    off = found[False]
    # (NVRTC 13 + ptxas, bf16: R2UR 45-61 -> 11-14 a kernel, 1616-2088 instructions instead of 1696-2200)
    for value in CHANGES:
        on = found[value]
        assert on["HGMMA"] == off["HGMMA"] > 0, value
        assert on["R2UR"] <= 16 < 40 <= off["R2UR"], (value, off["R2UR"], on["R2UR"])
        assert sum(on.values()) < sum(off.values()), value
