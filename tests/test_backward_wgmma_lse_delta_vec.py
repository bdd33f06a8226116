"""ops/backward_wgmma.LSE_DELTA_VEC without a GPU: off, no config renders the permuted lse2/delta copies (every
config renders as before the switch); on, every producer config's loader copies them in 8-byte pieces permuted so a
consumer thread reads its values of two 8-query column blocks with one 16-byte load, the others render as off; the
permutation (read from the rendered source) puts every value where the consumer reads it; the served tiles compile
clean (0 spills, no stack, no serialised wgmma) with LDS.128 and no LDS.64 in their SASS. GPU checks:
tests/test_backward_wgmma_lse_delta_vec_gpu.py."""
import re

import pytest

from autoflash.kernels.render import render
from autoflash.ops import backward_wgmma

from test_backward_wgmma import WG, _valid_configs, cfg, kernel_sass

SERVED = [cfg(dt, d, causal, bm=64, bn=128, warps=12, stages=2)
          for dt in ("bf16", "fp16") for d in (64, 128) for causal in (False, True)]


def test_off_by_default_renders_float2_reads():
    assert backward_wgmma.LSE_DELTA_VEC is False
    for _, c in _valid_configs("split"):
        source = render(c)
        assert "cp_async_8" not in source and "float4*>(s" not in source, c.name
        assert "float2*>(sL + col)" in source and "float2*>(sD + (j / 4) * 8 + 2 * t)" in source, c.name


def test_on_producer_configs_only(monkeypatch):
    off = {c.name: render(c) for _, c in _valid_configs("split")}
    monkeypatch.setattr(backward_wgmma, "LSE_DELTA_VEC", True)
    producers = 0
    for _, c in _valid_configs("split"):
        source = render(c)
        if WG.producer(c):
            producers += 1
            assert "cp_async_8(dst" in source and "float4*>(sL" in source and "float4*>(sD" in source, c.name
            assert "float2*>(sL + col)" not in source, c.name
        else:  # (252-255 registers: they spilled with the float4 reads)
            assert source == off[c.name], c.name
    assert producers >= 8


def _expressions(source: str) -> tuple[str, str, str]:
    """The loader's destination byte offset of pair e, the consumer's float offset of its float4 at accumulator
    index j (thread t), and which half of it holds the pair of j, from the rendered source (C -> Python)."""
    dst = re.search(r"cp_async_8\(dst \+ (.*?), src \+ 2 \* e\);", source).group(1)
    read = re.search(r"float4\*>\(sL \+ (.*?)\);", source).group(1)
    half = re.search(r"const float2 l2 = (.*?) \? make_float2\(l4\.z, l4\.w\)", source).group(1)
    py = lambda e: e.replace(" / ", " // ")  # noqa: E731 (non-negative ints: C's division truncates like //)
    return py(dst), py(read), py(half)


@pytest.mark.parametrize("block_m", [64, 128])
def test_permutation_puts_each_pair_where_its_thread_reads_it(block_m, monkeypatch):
    monkeypatch.setattr(backward_wgmma, "LSE_DELTA_VEC", True)
    # (the expressions do not name BLOCK_M; producer tiles are 64 queries today, block_m 128 checks the rest)
    dst, read, half = _expressions(render(cfg("bf16", 64, False, bm=64, bn=128, warps=12)))
    # the loader: pair e (source floats 2e, 2e + 1) to float dst / 4, a permutation of the tile's floats
    where = {}
    for e in range(block_m // 2):
        offset = eval(dst, {"e": e})
        assert offset % 8 == 0
        where[offset // 4], where[offset // 4 + 1] = 2 * e, 2 * e + 1
    assert sorted(where) == list(range(block_m)) and sorted(where.values()) == list(range(block_m))
    # the consumer: thread t's accumulators j, j + 1 are queries (j / 4) * 8 + 2t, + 1 (the m64nNk16 layout)
    for t in range(4):
        for j in range(0, block_m // 2, 2):
            base, hi = eval(read, {"j": j, "t": t}), eval(half, {"j": j})
            assert base % 4 == 0  # 16-byte aligned
            col = (j // 4) * 8 + 2 * t
            assert (where[base + 2 * hi], where[base + 2 * hi + 1]) == (col, col + 1), (t, j)


@pytest.mark.parametrize("c", SERVED, ids=lambda c: c.name)
def test_served_tiles_compile_clean(c, monkeypatch, tmp_path):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels.compile import compile_kernel

    monkeypatch.setattr(backward_wgmma, "LSE_DELTA_VEC", True)
    kernel = compile_kernel(c)
    report = kernel.report
    assert report.spills == 0 and report.stack_frame == 0 and not report.wgmma_serialized, report
    assert "serialized" not in kernel.log
    sass = kernel_sass(kernel, c.name, tmp_path)
    # lse2, delta: 8 LDS.128 a tile (4 in each score path + 4), were 16 LDS.64; the loader's 8-byte copies
    assert len(re.findall(r"\bLDS\.128\b", sass)) == 12 and not re.search(r"\bLDS\.64\b", sass)
    assert re.search(r"\bLDGSTS\.E\.64\b", sass)
