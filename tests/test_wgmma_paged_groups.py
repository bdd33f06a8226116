"""flash_fwd_wgmma's paged producer without a GPU: the block table is read once per 16-key group (one
lane each, before the slot wait) and shared by shuffle, never inside the 16-byte copy loop; whole groups
by TMA (thread 0's arrive.expect_tx counted in the full barrier); in-page
offsets are 32-bit, so the launch refuses pages spanning 2^31 elements; the tile bench_kvcache's chunked
prefill runs on (br128 bc128 s2, d128 causal) compiles without spills. GPU side: tests/test_wgmma_paged_gpu.py."""
import re

import pytest

from autoflash.kernels import tma
from autoflash.kernels.registry import TEMPLATES
from autoflash.kernels.render import render
from autoflash.ops.forward_base import Problem

WG = TEMPLATES["flash_fwd_wgmma"]
SERVED = WG.config("sm_90a", {"dtype": "bf16", "head_dim": 128, "causal": True}, block_m=128, block_n=128, warps=12,
                   stages=2).replace(paged=True)


def function_body(src: str, name: str) -> str:
    start = re.search(rf"\b{name}\(", src).start()
    depth, i = 0, src.index("{", start)
    for j in range(i, len(src)):
        depth += {"{": 1, "}": -1}.get(src[j], 0)
        if depth == 0:
            return src[i:j + 1]
    raise AssertionError(f"{name} has no end")


def test_the_copy_loop_reads_no_table_and_divides_by_no_page_size():
    src = render(SERVED)
    copy = re.sub(r"//[^\n]*", "", function_body(src, "load_paged_tile"))  # code only
    assert "__ldg" not in copy and "table" not in copy and "page_size" not in copy
    assert copy.count("__shfl_sync") == 2  # the row's page and first row, from lane r / 16
    lookup = function_body(src, "page_group")
    assert lookup.count("__ldg") == 1 and "lane < BLOCK_N / 16" in lookup
    tma = function_body(src, "tma_paged_groups")  # whole groups: one 16-row box per column block
    assert "tma_load_4d(" in tma and "mbar_arrive_expect_tx" in tma and "__ldg" not in tma
    body = src.split('extern "C"')[1]
    assert "mbar_init(full_k(s), PAGED ? PRODUCER_THREADS + 1 : 1)" in body  # thread 0's expect_tx + 128 cp.async
    # the look-up comes before the wait for the K slot, so its latency hides under it
    assert body.index("page_group(block_table") < body.index("mbar_wait(empty_k(s), free_parity)")


def test_pages_spanning_2_to_the_31_elements_are_refused(monkeypatch):
    monkeypatch.setattr(tma, "cached_operand_map", lambda *a: tma.TensorMap())
    row = 64 * 128  # (num_pages, page_size, 64 heads, 128) pages: a row is 8192 elements

    def problem(page_size):
        strides = ((4 * 256 * 128, 128, 4 * 128), (page_size * row, 128, row), (page_size * row, 128, row),
                   (4 * 256 * 128, 256 * 128, 128))
        return Problem(2, 4, 64, 256, 4 * page_size, 128, True, strides=strides, block_table=4096, table_stride=4,
                       page_size=page_size, num_pages=8)

    assert callable(WG.launch_args(SERVED, problem(2 ** 17), 0.1))  # 2^17 x 2^13 = 2^30: fits
    with pytest.raises(ValueError, match="2\\^31"):
        WG.launch_args(SERVED, problem(2 ** 18), 0.1)


def test_the_served_chunked_prefill_tile_compiles_without_spills():
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels.compile import compile_kernel

    report = compile_kernel(SERVED).report
    assert report.spills == 0 and report.stack_frame == 0 and not report.wgmma_serialized, report
    assert re.search(r"setmaxnreg\.dec\.sync\.aligned\.u32 40;", render(SERVED))
