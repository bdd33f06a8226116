"""ops/backward_wgmma.LSE_DELTA_VEC on an sm_90 GPU: lse2 and delta are the same values in a permuted shared-memory
order, read with 16-byte loads, so gradients match float64 within the backward's tolerances and the switch off
exactly where the order of fp32 adds is fixed: dk, dv bitwise, dq within the tolerance (its adds arrive in any order),
dq bitwise when deterministic. The served tiles (both head dims, GQA, causal both alignments, odd lengths, one key)
and the other producer configs the switch changes: the pipelined consumers (stages 3), dq_via_producer 0 and 1,
deterministic. CPU checks: tests/test_backward_wgmma_lse_delta_vec.py (render, permutation, compile)."""
import dataclasses
import math

import pytest

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch")

# (its module-level checks apply here too: torch, CuPy, an sm_90 GPU)
from test_backward_strided_gpu import DTYPES, TOLERANCE, attention_backward, backward_wgmma  # noqa: E402
from test_backward_gpu import float64_forward, reference_grads, rel_err  # noqa: E402
from test_backward_wgmma_gpu import wgmma_config  # noqa: E402
from test_backward_wgmma_heavy_first_gpu import inputs  # noqa: E402

from autoflash.serve import autograd, backward_plans  # noqa: E402

CASES = [  # batch, heads_q, heads_kv, seq_q, seq_k, head_dim, causal, alignment
    (1, 2, 2, 1, 1, 64, False, "top_left"),
    (2, 8, 2, 17, 300, 128, False, "top_left"),
    (1, 2, 2, 512, 512, 64, False, "top_left"),  # whole tiles only: the unmasked path alone
    (1, 8, 1, 1000, 1000, 64, True, "top_left"),
    (3, 4, 2, 300, 700, 128, True, "bottom_right"),
    (1, 6, 2, 4097, 4097, 64, True, "top_left"),
]


def run(monkeypatch, on: bool, *args, **kw):
    monkeypatch.setattr(backward_wgmma, "LSE_DELTA_VEC", on)
    autograd._loaded.cache_clear()
    backward_plans.clear()
    return attention_backward(*args, **kw)


def check(case, dtype, monkeypatch, config=None):
    """The case with the switch on and off (config: that one, else the served): on within the float64 tolerance, dk and
    dv bitwise equal to off, dq within the tolerance of off. Returns (on, off)."""
    b, hq, hkv, nq, nk, d, causal, alignment = case
    q, k, v, dout = inputs(b, hq, hkv, nq, nk, d, DTYPES[dtype], False, seed=nq)
    scale, offset = 1 / math.sqrt(d), (nk - nq if causal and alignment == "bottom_right" else 0)
    _, _, *refs = reference_grads(q, k, v, dout, causal, scale, offset)
    out, lse = float64_forward(q, k, v, causal, scale, offset)
    kw = dict(causal=causal, causal_alignment=alignment) if causal else dict(causal=False)
    if config is not None:
        kw.update(config=config, deterministic=config.deterministic)
    on = run(monkeypatch, True, q, k, v, out, lse, dout, **kw)
    off = run(monkeypatch, False, q, k, v, out, lse, dout, **kw)
    # one key: softmax is constant, dq = dk = 0 exactly and the kernel gets rounding-level values (relative to dO)
    err = (lambda g, ref: (g.double() - ref).norm().item() / dout.double().norm().item()) if nk == 1 else rel_err
    for name, g, ref in zip(("dq", "dk", "dv"), on, refs):
        assert err(g, ref) < TOLERANCE[dtype], (name, err(g, ref))
    assert torch.equal(on[1], off[1]) and torch.equal(on[2], off[2])
    assert err(on[0], off[0].double()) < TOLERANCE[dtype]
    return on, off


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}_h{}x{}_q{}_k{}_d{}_causal{}_{}".format(*c))
def test_served_matches_float64_and_the_switch_off(case, dtype, monkeypatch):
    check(case, dtype, monkeypatch)


def _producer_config(d, causal, stages=2, dq_via_producer=-1, deterministic=False):
    cfg = wgmma_config("bf16", d, causal, producer=True, stages=stages, deterministic=deterministic)  # skips off sm_90
    cfg = dataclasses.replace(cfg, dq_via_producer=dq_via_producer)
    assert cfg.problems() == [] and backward_wgmma.TEMPLATE.producer(cfg), cfg.name  # (the switch applies to it)
    return cfg


@pytest.mark.parametrize("variant", ["stages3", "dqp0", "dqp1"])
@pytest.mark.parametrize("case", [CASES[1], CASES[3], CASES[4]], ids=lambda c: "q{}_k{}_d{}_causal{}".format(*c[3:7]))
def test_other_producer_configs(case, variant, monkeypatch):
    d, causal = case[5], case[6]
    cfg = (_producer_config(d, causal, stages=3) if variant == "stages3"
           else _producer_config(d, causal, dq_via_producer=int(variant[-1])))
    check(case, "bf16", monkeypatch, cfg)


@pytest.mark.parametrize("stages", [2, 3])
@pytest.mark.parametrize("d", [64, 128])
def test_deterministic_equals_the_switch_off_bitwise(d, stages, monkeypatch):
    cfg = _producer_config(d, True, stages=stages, deterministic=True)
    on, off = check((2, 8, 2, 1000, 1000, d, True, "top_left"), "bf16", monkeypatch, cfg)
    assert all(torch.equal(a, b) for a, b in zip(on, off))
