"""flash_bwd_wgmma's producer loading Q and dO by TMA (ops/backward_wgmma.TMA_LOADS, switched on here) on an sm_90
GPU: the producer tiles (bm64 bn128 w12, stages 2 and 3, both dQ paths, deterministic) match float64 attention for
bf16/fp16, D 64/128, causal and not, odd lengths (1, 17, 1000), GQA, q and k/v of different lengths, contiguous inputs
and views (q, k, v of a fused projection, grad_out transposed: the maps take their strides), and equal the same call
with the switch off: dk, dv bitwise (each block sums its own keys), dq bitwise when deterministic, else within one
unit at its largest (fp32 adds in any order). A plan served on new pointers re-encodes the maps. CPU checks:
tests/test_backward_wgmma_tma_loads.py."""
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
CASES = [  # batch, heads_q, heads_kv, seq_q, seq_k, head_dim, causal, alignment
    (1, 2, 2, 1, 1, 64, False, "top_left"),
    (2, 4, 4, 17, 17, 128, True, "top_left"),
    (1, 4, 4, 1000, 1000, 64, True, "top_left"),
    (1, 8, 2, 1000, 1000, 128, False, "top_left"),   # GQA
    (1, 4, 2, 300, 700, 128, True, "bottom_right"),  # Nq != Nk
    (2, 2, 2, 1000, 1000, 64, False, "top_left"),
]


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    """STRIDED on (views read in place); every kernel and plan built anew under the switch a call sets."""
    monkeypatch.setattr(backward_wgmma, "STRIDED", True)
    yield
    switch(monkeypatch, False)


def switch(monkeypatch, on: bool) -> None:
    """TMA_LOADS on or off, with the loaded kernels and the call plans forgotten (they were built under the other)."""
    monkeypatch.setattr(backward_wgmma, "TMA_LOADS", on)
    autograd._loaded.cache_clear()
    backward_plans.clear()
    training_plans.clear()


def producer(dtype, d, causal, deterministic=False, **knobs):
    key = dict(dtype=dtype, head_dim=d, causal=causal, deterministic=deterministic, window=False, softcap=False,
               sinks=False, alibi=False)
    c = W.config("sm_90a", key, block_m=64, block_n=128, warps=12, stages=2, warps_q=1)
    c = c.replace(**knobs) if knobs else c
    assert W.producer(c) and not c.problems(), c.problems()
    return c


def run(monkeypatch, on: bool, args: tuple, **kw):
    switch(monkeypatch, on)
    grads = attention_backward(*args, **kw)
    (entry,) = backward_plans._plans.values()
    assert entry.launch.tma_loads is on
    return grads


def check_equal_to_off(on, off, deterministic=False):
    assert torch.equal(on[1], off[1]) and torch.equal(on[2], off[2])
    if deterministic:
        assert torch.equal(on[0], off[0])
    else:
        bound = 2.0 ** -7 * off[0].abs().max().item()
        assert (on[0].float() - off[0].float()).abs().max().item() <= bound


@pytest.mark.parametrize("layout", ["contiguous", "views"])
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}_h{}x{}_q{}_k{}_d{}{}_{}".format(*c[:6], "_causal" * c[6],
                                                                                             c[7]))
def test_matches_float64_and_the_switch_off(monkeypatch, case, dtype, layout):
    b, hq, hkv, nq, nk, d, causal, alignment = case
    if layout == "views":
        q, k, v, dout = views(b, hq, hkv, nq, nk, d, DTYPES[dtype], seed=nq)
    else:
        q, k, v, dout = inputs(b, hq, hkv, nq, nk, d, DTYPES[dtype], seed=nq)
    scale, offset = 1 / math.sqrt(d), (nk - nq if alignment == "bottom_right" else 0)
    _, _, *refs = reference_grads(q, k, v, dout, causal, scale, offset)
    out, lse = float64_forward(q, k, v, causal, scale, offset)
    out = like_forward(out) if layout == "views" else out
    args = (q, k, v, out, lse, dout)
    kw = dict(causal=causal, causal_alignment=alignment, config=producer(dtype, d, causal))
    on = run(monkeypatch, True, args, **kw)
    for g in on:
        assert torch.isfinite(g).all()
    if nk > 1:
        errs = [rel_err(x, r) for x, r in zip(on, refs)]
        assert max(errs) <= TOLERANCE[dtype], errs
    check_equal_to_off(on, run(monkeypatch, False, args, **kw))


@pytest.mark.parametrize("knobs", [dict(deterministic=True), dict(stages=3), dict(dq_via_producer=0),
                                   dict(dq_via_producer=1)], ids=lambda k: "_".join(f"{a}{b}" for a, b in k.items()))
@pytest.mark.parametrize("d,causal", [(64, True), (128, False), (128, True)])
def test_other_producer_schedules(monkeypatch, knobs, d, causal):
    knobs = dict(knobs)  # (pytest shares the dict between parameter sets)
    deterministic = knobs.pop("deterministic", False)
    c = producer("bf16", d, causal, deterministic, **knobs)
    q, k, v, dout = views(1, 8, 2, 1000, 1000, d, torch.bfloat16, seed=d)
    scale = 1 / math.sqrt(d)
    _, _, *refs = reference_grads(q, k, v, dout, causal, scale)
    out, lse = float64_forward(q, k, v, causal, scale)
    args = (q, k, v, like_forward(out), lse, dout)
    kw = dict(causal=causal, deterministic=deterministic, config=c)
    on = run(monkeypatch, True, args, **kw)
    assert max(rel_err(x, r) for x, r in zip(on, refs)) <= TOLERANCE["bf16"]
    if deterministic:
        switch(monkeypatch, True)
        again = attention_backward(*args, **kw)
        assert all(torch.equal(a, g) for a, g in zip(again, on))
    check_equal_to_off(on, run(monkeypatch, False, args, **kw), deterministic)


def test_a_plan_hit_on_new_pointers_reencodes_the_maps(monkeypatch):
    switch(monkeypatch, True)
    c = producer("bf16", 128, True)
    q, k, v, dout = views(2, 4, 4, 300, 300, 128, torch.bfloat16, seed=3)
    out, lse = float64_forward(q, k, v, True, 1 / math.sqrt(128))
    first = attention_backward(q, k, v, like_forward(out), lse, dout, causal=True, config=c)
    q2, k2, v2, dout2 = views(2, 4, 4, 300, 300, 128, torch.bfloat16, seed=4)  # other values, new memory
    hit = attention_backward(q2, k2, v2, like_forward(out), lse, dout2, causal=True, config=c)
    assert len(backward_plans._plans) == 1
    backward_plans.clear()
    full = attention_backward(q2, k2, v2, like_forward(out), lse, dout2, causal=True, config=c)
    assert torch.equal(hit[1], full[1]) and torch.equal(hit[2], full[2]) and not torch.equal(hit[1], first[1])
