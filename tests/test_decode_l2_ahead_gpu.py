"""flash_decode_mma's l2_ahead knob on a GPU: float64 reference on ragged lengths (0, 1, a partial tile,
full), forced split counts (1, 7, heuristic), both layouts, D 64/128/256, two m-tiles, every variant at once
and the fused merge; and bit-equal outputs with the knob off (the prefetches change no arithmetic)."""
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
    key = {"dtype": dtype, "head_dim": head_dim, "m_tiles": m_tiles_for(group * seq_q, head_dim)}
    cfg = DECODE.default(arch, key).replace(**knobs)
    if cfg.problems():
        pytest.skip("; ".join(cfg.problems()))
    return cfg


@pytest.mark.parametrize("ahead", [2, 4, 8])
@pytest.mark.parametrize("head_dim, layout, seq_q, group, dtype", [(128, "bshd", 1, 4, "bf16"), (128, "bhsd", 3, 8, "bf16"),
                                                                   (64, "bhsd", 1, 4, "fp16"), (256, "bshd", 2, 4, "bf16"),
                                                                   (128, "bshd", 1, 32, "fp16")])
def test_matches_float64_and_the_knob_off_bit_for_bit(ahead, head_dim, layout, seq_q, group, dtype):
    cfg = config(head_dim, group, seq_q, dtype, l2_ahead=ahead)
    q, k, v = make(4, seq_q, 2, group, 5000, head_dim, dtype, layout, seed=ahead + head_dim)
    lengths = [5000, 0, 1, 1001]
    for splits in (None, 1, 7):
        o, lse = run_and_check(q, k, v, lengths, dtype=dtype, layout=layout, num_splits=splits, config=cfg)
        o0, lse0 = decode_attention(q, k, v, torch.tensor(lengths, dtype=torch.int32, device="cuda"), causal=True,
                                    return_lse=True, num_splits=splits, layout=layout, config=cfg.replace(l2_ahead=0))
        assert torch.equal(o, o0) and torch.equal(lse, lse0), (cfg.name, splits)


@pytest.mark.parametrize("knobs", [dict(block_n=16, warps=4, stages=3), dict(evict_first=True, fused_combine=True),
                                   dict(block_n=64, warps=2, stages=2)])
def test_other_knobs(knobs):
    cfg = config(128, 4, 1, l2_ahead=4, **knobs)
    q, k, v = make(3, 1, 2, 4, 3001, 128, seed=7)
    for splits in (None, 1, 7, 32):
        run_and_check(q, k, v, [3001, 17, 0], num_splits=splits, config=cfg)


def test_every_variant_at_once_against_float64():
    from test_decode_variants_gpu import CAPACITY, f64, reference, variant_args
    from test_decode_variants_gpu import make as make_variant

    from autoflash.ops.decode_launch import check_output

    cfg = config(128, 4, 1, l2_ahead=4, window=True, softcap=True, sinks=True, alibi=True)
    q, k, v = make_variant(4, 1, 32, 8, q_scale=3.0)
    args = variant_args(dict(window_size=(1000, -1), softcap=5.0, sinks=True, alibi_slopes="batch"), 4, 32)
    lengths = [0, 1, 1337, CAPACITY]
    seqlens = torch.tensor(lengths, dtype=torch.int32, device="cuda")
    ref, ref_lse = reference(q, k, v, lengths, True, args)
    for splits in (None, 1, 7):
        o, lse = decode_attention(q, k, v, seqlens, causal=True, return_lse=True, num_splits=splits, config=cfg, **args)
        result = check_output(f64(o), ref, f64(lse), ref_lse, "bf16")
        assert result.passed, (splits, result.describe())
