"""flash_bwd_wgmma's S^T / dP^T look-ahead (ops/backward_wgmma.PIPELINE, switched on here) on an sm_90 GPU: the D 64
producer tile (bm64 bn128 w12, stages 2 and 3; every dQ mode and deterministic) matches float64 attention for bf16/fp16, causal
and not, odd lengths (1, 17, 1000, 4097), GQA, q and k/v of different lengths, contiguous inputs and views, and
equals the same call with the switch off: dk, dv bitwise (every wgmma's operands and order are unchanged), dq bitwise
when deterministic, else within one unit at its largest (fp32 adds in any order). CPU checks:
tests/test_backward_wgmma_pipeline.py."""
import math

import pytest

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")
pytest.importorskip("cupy")

from autoflash.ops import backward_wgmma  # noqa: E402
from autoflash.ops.backward import TOLERANCE  # noqa: E402
from autoflash.serve import autograd, backward_plans, training_plans  # noqa: E402
from autoflash.serve.autograd import attention_backward  # noqa: E402

from test_backward_gpu import float64_forward, inputs, reference_grads, rel_err  # noqa: E402
from test_backward_strided_gpu import like_forward, views  # noqa: E402

if not torch.cuda.is_available() or torch.cuda.get_device_capability() != (9, 0):
    pytest.skip("flash_bwd_wgmma needs an sm_90 GPU", allow_module_level=True)

W = backward_wgmma.TEMPLATE
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
CASES = [  # batch, heads_q, heads_kv, seq_q, seq_k, causal, alignment (head dim 64)
    (1, 2, 2, 1, 1, False, "top_left"),
    (2, 4, 4, 17, 17, True, "top_left"),
    (1, 4, 4, 1000, 1000, True, "top_left"),
    (1, 8, 2, 1000, 1000, False, "top_left"),   # GQA
    (1, 4, 2, 300, 700, True, "bottom_right"),  # Nq != Nk
    (1, 2, 2, 4097, 4097, False, "top_left"),
    (1, 2, 1, 4097, 4097, True, "top_left"),    # GQA, causal
]


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    """Every kernel and plan built anew under the switch a call sets."""
    yield
    switch(monkeypatch, False)


def switch(monkeypatch, on: bool) -> None:
    """PIPELINE on or off, with the loaded kernels and the call plans forgotten (they were built under the other)."""
    monkeypatch.setattr(backward_wgmma, "PIPELINE", on)
    autograd._loaded.cache_clear()
    backward_plans.clear()
    training_plans.clear()


def producer(dtype, causal, deterministic=False, **knobs):
    key = dict(dtype=dtype, head_dim=64, causal=causal, deterministic=deterministic, window=False, softcap=False,
               sinks=False, alibi=False)
    c = W.config("sm_90a", key, block_m=64, block_n=128, warps=12, stages=2, warps_q=1)
    c = c.replace(**knobs) if knobs else c
    assert W.producer(c) and not c.problems(), c.problems()
    return c


def run(monkeypatch, on: bool, args: tuple, **kw):
    switch(monkeypatch, on)
    assert W.pipelines(kw["config"]) is on
    return attention_backward(*args, **kw)


def check_equal_to_off(on, off, deterministic=False):
    assert torch.equal(on[1], off[1]) and torch.equal(on[2], off[2])
    if deterministic:
        assert torch.equal(on[0], off[0])
    else:
        bound = 2.0 ** -7 * off[0].abs().max().item()
        assert (on[0].float() - off[0].float()).abs().max().item() <= bound


@pytest.mark.parametrize("layout", ["contiguous", "views"])
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}_h{}x{}_q{}_k{}{}_{}".format(*c[:5], "_causal" * c[5], c[6]))
def test_matches_float64_and_the_switch_off(monkeypatch, case, dtype, layout):
    b, hq, hkv, nq, nk, causal, alignment = case
    make = views if layout == "views" else inputs
    q, k, v, dout = make(b, hq, hkv, nq, nk, 64, DTYPES[dtype], seed=nq)
    scale, offset = 1 / math.sqrt(64), (nk - nq if alignment == "bottom_right" else 0)
    _, _, *refs = reference_grads(q, k, v, dout, causal, scale, offset)
    out, lse = float64_forward(q, k, v, causal, scale, offset)
    out = like_forward(out) if layout == "views" else out
    args = (q, k, v, out, lse, dout)
    kw = dict(causal=causal, causal_alignment=alignment, config=producer(dtype, causal))
    on = run(monkeypatch, True, args, **kw)
    for g in on:
        assert torch.isfinite(g).all()
    if nk > 1:
        errs = [rel_err(x, r) for x, r in zip(on, refs)]
        assert max(errs) <= TOLERANCE[dtype], errs
    check_equal_to_off(on, run(monkeypatch, False, args, **kw))


@pytest.mark.parametrize("knobs", [dict(deterministic=True), dict(dq_via_producer=0), dict(dq_via_producer=1),
                                   dict(stages=3), dict(stages=3, deterministic=True)],
                         ids=lambda k: "_".join(f"{a}{b}" for a, b in k.items()))
@pytest.mark.parametrize("causal", [False, True])
def test_other_dq_schedules(monkeypatch, knobs, causal):
    knobs = dict(knobs)  # (pytest shares the dict between parameter sets)
    deterministic = knobs.pop("deterministic", False)
    c = producer("bf16", causal, deterministic, **knobs)
    q, k, v, dout = views(1, 8, 2, 1000, 1000, 64, torch.bfloat16, seed=64)
    scale = 1 / math.sqrt(64)
    _, _, *refs = reference_grads(q, k, v, dout, causal, scale)
    out, lse = float64_forward(q, k, v, causal, scale)
    args = (q, k, v, like_forward(out), lse, dout)
    kw = dict(causal=causal, deterministic=deterministic, config=c)
    on = run(monkeypatch, True, args, **kw)
    assert max(rel_err(x, r) for x, r in zip(on, refs)) <= TOLERANCE["bf16"]
    if deterministic:
        again = attention_backward(*args, **kw)
        assert all(torch.equal(a, g) for a, g in zip(again, on))
    check_equal_to_off(on, run(monkeypatch, False, args, **kw), deterministic)
