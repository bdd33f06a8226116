"""flash_decode_mma's swizzle knob on a GPU: float64 reference on ragged lengths (0, 1, a partial tile,
full), forced split counts (1, 7, heuristic), both layouts, D 64/128/256, two m-tiles, fp16, paged caches,
the fused merge, every variant at once; and bit-equal outputs with the knob off (the swizzle moves where K/V
sit in shared memory, not what ldmatrix returns, so the arithmetic is the same)."""
import pytest

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch")

from test_decode_gpu import make, run_and_check  # noqa: E402

from autoflash.serve.decode import decode_attention  # noqa: E402


def config(head_dim, group, seq_q, dtype="bf16", **knobs):
    from autoflash.kernels.device import device_arch
    from autoflash.ops.decode import DECODE
    from autoflash.ops.decode_kernels import m_tiles_for

    arch = device_arch(torch.cuda.current_device())[0]
    flags = {k: knobs.pop(k) for k in ("paged", "window", "softcap", "sinks", "alibi") if k in knobs}
    key = {"dtype": dtype, "head_dim": head_dim, "m_tiles": m_tiles_for(group * seq_q, head_dim), **flags}
    cfg = DECODE.default(arch, key).replace(**knobs)
    if cfg.problems():
        pytest.skip("; ".join(cfg.problems()))
    return cfg


@pytest.mark.parametrize("knobs", [dict(), dict(block_n=16), dict(block_n=64, warps=2, stages=2)],
                         ids=["default", "bn16", "bn64"])
@pytest.mark.parametrize("head_dim, layout, seq_q, group, dtype", [(128, "bshd", 1, 4, "bf16"), (128, "bhsd", 3, 8, "bf16"),
                                                                   (64, "bhsd", 1, 4, "fp16"), (256, "bshd", 2, 4, "bf16"),
                                                                   (128, "bshd", 1, 32, "fp16")])
def test_matches_float64_and_the_knob_off_bit_for_bit(knobs, head_dim, layout, seq_q, group, dtype):
    cfg = config(head_dim, group, seq_q, dtype, swizzle=True, **knobs)
    q, k, v = make(4, seq_q, 2, group, 5000, head_dim, dtype, layout, seed=head_dim + cfg.block_n)
    lengths = [5000, 0, 1, 1001]
    for splits in (None, 1, 7):
        o, lse = run_and_check(q, k, v, lengths, dtype=dtype, layout=layout, num_splits=splits, config=cfg)
        o0, lse0 = decode_attention(q, k, v, torch.tensor(lengths, dtype=torch.int32, device="cuda"), causal=True,
                                    return_lse=True, num_splits=splits, layout=layout, config=cfg.replace(swizzle=False))
        assert torch.equal(o, o0) and torch.equal(lse, lse0), (cfg.name, splits)


def test_fused_merge_and_cache_hint():
    cfg = config(128, 4, 1, swizzle=True, evict_first=True, fused_combine=True)
    q, k, v = make(3, 1, 2, 4, 3001, 128, seed=7)
    for splits in (None, 1, 7, 7, 32):
        run_and_check(q, k, v, [3001, 17, 0], num_splits=splits, config=cfg)


def test_paged_caches_and_every_variant_against_float64():
    from test_decode_variants_gpu import CAPACITY, f64, paged, reference, variant_args
    from test_decode_variants_gpu import make as make_variant

    from autoflash.ops.decode_launch import check_output

    q, k, v = make_variant(4, 1, 32, 8, q_scale=3.0)
    lengths = [0, 1, 1337, CAPACITY]
    seqlens = torch.tensor(lengths, dtype=torch.int32, device="cuda")
    kp, vp, table = paged(k, v)
    cfg = config(128, 4, 1, swizzle=True, paged=True)
    for splits in (None, 1, 7):  # paged, plain: float64 and the contiguous swizzled kernel, bit for bit
        o, lse = decode_attention(q, kp, vp, seqlens, block_table=table, causal=True, return_lse=True,
                                  num_splits=splits, config=cfg)
        ref, ref_lse = reference(q, k, v, lengths, True, {})
        assert check_output(f64(o), ref, f64(lse), ref_lse, "bf16").passed, splits
        oc, lsec = decode_attention(q, k, v, seqlens, causal=True, return_lse=True, num_splits=splits,
                                    config=cfg.replace(paged=False))
        assert torch.equal(o, oc) and torch.equal(lse, lsec), splits
    args = variant_args(dict(window_size=(1000, -1), softcap=5.0, sinks=True, alibi_slopes="batch"), 4, 32)
    ref, ref_lse = reference(q, k, v, lengths, True, args)
    for is_paged in (False, True):
        cfg = config(128, 4, 1, swizzle=True, paged=is_paged, window=True, softcap=True, sinks=True, alibi=True)
        for splits in (None, 1, 7):
            caches = (kp, vp) if is_paged else (k, v)
            o, lse = decode_attention(q, *caches, seqlens, block_table=table if is_paged else None, causal=True,
                                      return_lse=True, num_splits=splits, config=cfg, **args)
            result = check_output(f64(o), ref, f64(lse), ref_lse, "bf16")
            assert result.passed, (is_paged, splits, result.describe())
