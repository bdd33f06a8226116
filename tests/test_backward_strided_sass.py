"""flash_bwd_wgmma's strided kernels (BackwardConfig.strided, served for views) against the contiguous ones, in the machine code (no GPU): on
the served tiles (bm64 bn128 w12 s2) the consumers' tile loop is the same, the producer warpgroup (24 registers)
issues a query tile's copies with a tenth more instructions, not a fifth (its tile bases in uniform registers from a
lane-0 tile index; before: a volatile %tid.x re-read per copy and 64-bit bases in vector registers, 332-343 against
284-287 instructions), it reads %tid.x no more often than the contiguous producer, and nothing spills. The timing:
benchmarks/bench_backward_strided.py (contiguous inputs, strided against contiguous kernels)."""
import dataclasses
import re

import pytest

from sass import sass
from test_backward_wgmma import cfg


def regions(code: str) -> tuple[list[str], list[str]]:
    """The main kernel's producer (setmaxnreg.dec to its EXIT) and the consumers' span from their first HGMMA to
    their last (the tile loop), as instruction lists."""
    ops = re.findall(r"/\*[0-9a-f]{4,}\*/\s+([^;]*);", code)
    start = next(i for i, s in enumerate(ops) if "SETMAXREG.DEALLOC" in s)
    end = next(i for i in range(start, len(ops)) if ops[i].strip() == "EXIT")
    hgmma = [i for i, s in enumerate(ops[:start]) if "HGMMA" in s]
    return ops[start:end + 1], ops[hgmma[0]:hgmma[-1] + 1]


def count(ops: list[str], pattern: str) -> int:
    return sum(1 for s in ops if re.search(pattern, s))


@pytest.mark.parametrize("d,causal", [(64, False), (64, True), (128, False), (128, True)])
def test_strided_producer_is_within_a_tenth_of_the_contiguous_one(d, causal, tmp_path):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels.compile import compile_kernel

    c = cfg("bf16", d, causal, bm=64, bn=128, warps=12, stages=2)
    code = {}
    for strided in (False, True):
        kernel = compile_kernel(dataclasses.replace(c, strided=strided))
        assert kernel.report.spills == 0 and kernel.report.stack_frame == 0, kernel.report
        assert not kernel.report.wgmma_serialized, kernel.report
        code[strided] = sass(kernel.cubin, tmp_path, kernel.config.name)
    assert not re.search(r"\b(STL|LDL)\b", code[True])
    (plain_producer, plain_loop), (producer, loop) = regions(code[False]), regions(code[True])
    assert count(loop, "HGMMA") == count(plain_loop, "HGMMA") and abs(len(loop) - len(plain_loop)) <= 8
    assert count(producer, "LDGSTS") == count(plain_producer, "LDGSTS")
    assert len(producer) <= 1.15 * len(plain_producer), (len(producer), len(plain_producer))
    assert count(producer, "S2R .*SR_TID") <= count(plain_producer, "S2R .*SR_TID")
