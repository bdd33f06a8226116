"""flash_bwd_wgmma with dq_via_producer on (ops/backward_wgmma.py: the consumers stage dQ in shared memory, the
producer warpgroup reduces it into the fp32 accumulator with bulk copies; value 1: a bulk op a row, spelled 1: the
rule's is 2, tests/test_backward_wgmma_dq_tile_gpu.py) on an H100/H200: gradients against
float64 autograd for every case of tests/test_backward_wgmma_gpu.py (odd lengths, Nq != Nk, GQA/MQA, causal
in both alignments, rows that see no key), D 64 (two staging tiles) and D 128 (one), bf16 and fp16, the
pipelined stages 3 at D 64 (the only size its shared memory allows); two runs agree within the rounding of
unordered fp32 adds; attention_backward() serves the rule's value (2) on the D 128 default."""
import math

import pytest

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")

from autoflash.ops.backward import TOLERANCE  # noqa: E402
from test_backward_gpu import DTYPES, float64_forward, inputs, reference_grads, rel_err  # noqa: E402
from test_backward_wgmma_gpu import CASES, _check_gradients, wgmma_config  # noqa: E402


def producer_config(dtype, head_dim, causal, stages=2, mode=1):
    """The producer tile with dQ path `mode` (1: a bulk op a row, 2: one a tile): -1 where the rule picks that
    mode (2), else spelled out."""
    from autoflash.ops.backward_wgmma import TEMPLATE

    cfg = wgmma_config(dtype, head_dim, causal, producer=True, stages=stages)
    if TEMPLATE.dq_mode(cfg) != mode:
        cfg = cfg.replace(dq_via_producer=mode)
    assert TEMPLATE.dq_mode(cfg) == mode and TEMPLATE.dq_staging_bytes(cfg) > 0
    return cfg


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}_h{}x{}_q{}_k{}_d{}_{}".format(*c))
def test_dq_via_producer_gradients_match_float64_autograd(case, dtype):
    _check_gradients(case, dtype, producer_config(dtype, case[5], case[6] is not None), "dq_via_producer")


@pytest.mark.parametrize("case", [c for c in CASES if c[5] == 64], ids=lambda c: "b{}_h{}x{}_q{}_k{}_d{}_{}".format(*c))
def test_dq_via_producer_pipelined_gradients_match_float64_autograd(case):
    """stages 3 (the dQ of tile it staged in iteration it + 1) with the producer's reductions, D 64."""
    _check_gradients(case, "bf16", producer_config("bf16", 64, case[6] is not None, stages=3),
                     "dq_via_producer pipelined")


@pytest.mark.parametrize("d", [64, 128])
def test_two_runs_agree_and_match_the_consumers_adds(d):
    """Many query tiles per block and many blocks per query tile (GQA 4:1, N 2048, causal): two runs, and the
    consumers' own red.global adds (knob off), agree up to the order of the fp32 additions."""
    from autoflash.ops.backward_wgmma import TEMPLATE

    case = (2, 8, 2, 2048, 2048, d, "top_left")
    cfg = producer_config("bf16", d, True)
    first = _check_gradients(case, "bf16", cfg, "dq_via_producer")
    second = _check_gradients(case, "bf16", cfg, "dq_via_producer")
    plain_cfg = cfg.replace(dq_via_producer=0)
    assert plain_cfg.problems() == [] and TEMPLATE.dq_mode(plain_cfg) == 0
    plain = _check_gradients(case, "bf16", plain_cfg, "consumers' adds")
    for a, b, c in zip(first, second, plain):  # (bf16 outputs: rounding flips only where the fp32 sums straddle)
        assert rel_err(a, b.double()) <= 1e-3 and rel_err(a, c.double()) <= 1e-3


def test_attention_backward_serves_the_rule():
    """attention_backward() picks the D 128 producer default (the rule: 2, one bulk op a tile), loaded with the
    staging tiles' shared memory."""
    from autoflash.serve.autograd import _served_config, attention_backward

    cfg = producer_config("bf16", 128, True, mode=2)
    assert cfg.dq_via_producer == -1
    key = dict(dtype="bf16", head_dim=128, causal=True, deterministic=False, window=False, softcap=False,
               sinks=False, alibi=False)
    assert _served_config(0, key, 1000) == cfg
    q, k, v, dout = inputs(1, 4, 2, 1000, 1000, 128, torch.bfloat16, seed=5)
    _, _, *refs = reference_grads(q, k, v, dout, True, 1 / math.sqrt(128))
    out, lse = float64_forward(q, k, v, True, 1 / math.sqrt(128))
    grads = attention_backward(q, k, v, out, lse, dout, causal=True)
    assert max(rel_err(x, r) for x, r in zip(grads, refs)) <= TOLERANCE["bf16"]
