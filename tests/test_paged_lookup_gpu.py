"""The paged decode kernel's page look-ups on a GPU: each warp holds its 16-key groups' table entries in a
shared-memory ring of two 32-group batches, refilled by cp.async a batch ahead (templates/flash_decode_mma
load_page_batch .. pages_of_tile). Long caches make every warp run through several batches, so the ring
wraps many times, at each tile shape (1, 2 and 4 groups a tile), page sizes 16/48/64/256 (48: pages that
splits and tiles start inside), split counts whose boundaries fall mid-page, lengths 0, 1, partial last
pages and full tables: paged output bit-equal to the contiguous one (same config and split count) and
within the float64 reference's tolerance. Then the served path: on bench_kvcache's six rows a paged cache
is served the contiguous cache's config (serve/decode._paged_config) and gives the same bits."""
import pytest

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch")

from test_paged_gpu import check, paged_inputs  # noqa: E402

from autoflash.serve.decode import decode_attention  # noqa: E402

# (block_n, warps, stages): 1 group a tile over 2 warps (the most batches), 2 groups, 4 groups, the deepest
# pipeline of 1-group tiles (STAGES <= 32 / GROUPS), and 8 warps.
SHAPES = [(16, 2, 2), (32, 4, 3), (64, 4, 2), (16, 4, 6), (16, 8, 3), (64, 8, 2)]


def configs(head_dim, block_n, warps, stages):
    from autoflash.kernels.device import device_arch
    from autoflash.ops.decode import DECODE

    arch = device_arch(torch.cuda.current_device())[0]
    plain = DECODE.default(arch, {"dtype": "bf16", "head_dim": head_dim, "m_tiles": 1, "paged": False}).replace(
        block_n=block_n, warps=warps, stages=stages)
    paged = plain.replace(paged=True)
    if plain.problems() or paged.problems():
        pytest.skip(f"{paged.name}: {paged.problems() or plain.problems()}")
    return plain, paged


@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("block_n, warps, stages", SHAPES)
@pytest.mark.parametrize("page_size", [16, 48, 64, 256])
def test_long_caches_wrap_the_ring(head_dim, block_n, warps, stages, page_size):
    plain, paged = configs(head_dim, block_n, warps, stages)
    max_pages = -(-5000 // page_size)
    nk = max_pages * page_size
    q, k, v, kp, vp, table = paged_inputs(5, 1, 2, 4, max_pages, page_size, head_dim, seed=block_n + page_size)
    lengths = [nk, 0, 1, 4999, 16 * 37 + 1]  # full, empty, one key, a partial last page, one past a group
    seqlens = torch.tensor(lengths, dtype=torch.int32, device="cuda")
    for splits in (1, 3, 7, None):
        o_c, lse_c = decode_attention(q, k, v, seqlens, causal=True, return_lse=True, num_splits=splits, config=plain)
        o_p, lse_p = decode_attention(q, kp, vp, seqlens, block_table=table, causal=True, return_lse=True,
                                      num_splits=splits, config=paged)
        torch.cuda.synchronize()
        assert torch.equal(o_p, o_c) and torch.equal(lse_p, lse_c), f"{paged.name} splits {splits}"
        check(o_p, lse_p, q, k, v, lengths, causal=True)


@pytest.mark.parametrize("page_size", [16, 48])
def test_a_window_starts_the_look_ups_mid_cache(page_size):
    """With a window the splits share only its keys (from a multiple of 16 inside a page): the warps' first
    groups are not the table row's first."""
    plain, paged = configs(128, 32, 4, 3)
    plain, paged = (c.replace(window=True) for c in (plain, paged))
    max_pages = -(-6000 // page_size)
    q, k, v, kp, vp, table = paged_inputs(3, 2, 2, 4, max_pages, page_size, 128, seed=page_size)
    seqlens = torch.tensor([max_pages * page_size, 5001, 300], dtype=torch.int32, device="cuda")
    for splits in (1, 4, None):
        o_c = decode_attention(q, k, v, seqlens, causal=True, num_splits=splits, config=plain, window_size=(2000, 0))
        o_p = decode_attention(q, kp, vp, seqlens, block_table=table, causal=True, num_splits=splits, config=paged,
                               window_size=(2000, 0))
        torch.cuda.synchronize()
        assert torch.equal(o_p, o_c), splits


BENCH_ROWS = [(1, 32, 8, 32768, 128), (8, 32, 8, 8192, 128), (64, 32, 8, 4096, 128), (256, 32, 8, 1024, 128),
              (16, 8, 1, 16384, 128), (32, 32, 8, 2048, 64)]  # bench_kvcache.DECODE_ROWS


@pytest.mark.parametrize("dims", BENCH_ROWS, ids=lambda d: "b{}_h{}_{}_n{}_d{}".format(*d))
def test_served_paged_config_is_the_contiguous_one_on_the_bench_rows(dims):
    """The served path (config=None, this GPU's tuned file): pages of 16 and 64 keys get the contiguous
    cache's config and split count with paged set, unless a paged entry was timed on this grid, and then
    (same config) the same bits."""
    from autoflash.ops.decode_launch import DecodeProblem
    from autoflash.serve import decode as decode_api

    b, hq, hkv, n, d = dims
    dev = torch.cuda.current_device()
    unpaged = decode_api._choose_config(None, "bf16", DecodeProblem(b, hq, hkv, 1, n, d, True), dev)
    for page in (16, 64):
        p = DecodeProblem(b, hq, hkv, 1, n, d, True, page_size=page, num_pages=b * n // page)
        served = decode_api._choose_config(None, "bf16", p, dev)
        if served.replace(paged=False) != unpaged:
            continue  # a paged entry timed on this grid: its own config (bits may differ)
        q, k, v, kp, vp, table = paged_inputs(b, 1, hkv, hq // hkv, n // page, page, d, spare=0, seed=page)
        contig = decode_attention(q, k, v, causal=True)
        paged = decode_attention(q, kp, vp, block_table=table, causal=True)
        torch.cuda.synchronize()
        assert torch.equal(paged, contig), (served.name, page)
