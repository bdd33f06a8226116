"""Training plans on a GPU (serve/training_plans.py): a training step served by the planned Function
(autoflash.attention() and the drop-in's eager calls) gives the full path's output bitwise and its
gradients: dk and dv bitwise, dq bitwise where the kernel is deterministic, else within one bf16 unit
of the largest |dq| (the fp32 adds from the K/V blocks land in any order); plain, GQA, bottom-right
causal (rows that see no key), deterministic, return_lse. torch.compile(fullgraph=True) of the
drop-in still gives gradients (through the ops, never the plans)."""
import pytest

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")

import autoflash  # noqa: E402
import autoflash.torch as aft  # noqa: E402
from autoflash.serve import api, backward_plans, call_plans, training_plans  # noqa: E402

from test_backward_gpu import inputs  # noqa: E402
from test_backward_host_plans_gpu import same  # noqa: E402

CASES = {  # batch, heads_q, heads_kv, seq_q, seq_k, alignment, deterministic, return_lse (bf16, D 64, causal)
    "plain": (2, 4, 4, 128, 128, "top_left", False, False),
    "gqa": (2, 8, 2, 128, 128, "top_left", False, True),
    "bottom_right": (1, 4, 4, 200, 128, "bottom_right", False, False),  # the first 72 rows see no key
    "deterministic": (1, 4, 2, 128, 128, "top_left", True, False),
}
PLANNED = "PlannedAttentionBackward"


@pytest.fixture
def checked(monkeypatch):
    """Counts attention()'s full (checked) calls; every plan table cleared before and after."""
    calls = []
    real = api.check_inputs
    monkeypatch.setattr(api, "check_inputs", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    for table in (call_plans, backward_plans, training_plans):
        table.clear()
    yield calls
    for table in (call_plans, backward_plans, training_plans):
        table.clear()


def run_step(fn, q, k, v, dout):
    """(out, grad_fn's name, (dq, dk, dv)) of one training step through fn."""
    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    out = fn(*leaves)
    out = out[0] if isinstance(out, tuple) else out
    name = type(out.grad_fn).__name__
    out.backward(dout)
    return out.detach(), name, [t.grad for t in leaves]


@pytest.mark.parametrize("case", CASES)
def test_planned_attention_steps_match_the_full_path(checked, case):
    b, hq, hkv, nq, nk, alignment, det, return_lse = CASES[case]
    q, k, v, dout = inputs(b, hq, hkv, nq, nk, 64, torch.bfloat16, seed=nq + hkv)

    def fn(*leaves):
        return autoflash.attention(*leaves, causal=True, causal_alignment=alignment, deterministic=det,
                                   return_lse=return_lse)

    ref_out, ref_name, ref = run_step(fn, q, k, v, dout)  # the full path: checked, plans kept
    n = len(checked)
    steps = [run_step(fn, q, k, v, dout) for _ in range(3)]
    torch.cuda.synchronize()
    assert ref_name != PLANNED and len(training_plans._plans) == 1
    assert len(checked) == n  # never checked again
    for out, name, grads in steps:
        assert name == PLANNED
        assert torch.equal(out, ref_out)
        same(grads, ref, det)
    if alignment == "bottom_right":
        assert torch.count_nonzero(steps[-1][2][0][:, :, :nq - nk]) == 0  # rows that see no key: dq = 0


@pytest.mark.parametrize("gqa", [False, True])
def test_planned_dropin_steps_match_the_ops(checked, gqa):
    q, k, v, dout = inputs(2, 8, 2 if gqa else 8, 128, 128, 64, torch.bfloat16, seed=3)

    def fn(*leaves):
        return aft.scaled_dot_product_attention(*leaves, is_causal=True, enable_gqa=gqa)

    ref_out, ref_name, ref = run_step(fn, q, k, v, dout)  # through autoflash::sdpa_fwd's autograd formula
    steps = [run_step(fn, q, k, v, dout) for _ in range(3)]
    torch.cuda.synchronize()
    assert ref_name != PLANNED and len(training_plans._plans) == 1
    for out, name, grads in steps:
        assert name == PLANNED
        assert torch.equal(out, ref_out)
        same(grads, ref, False)


def test_compiled_dropin_with_grads_takes_the_ops(checked):
    q, k, v, dout = inputs(2, 4, 4, 128, 128, 64, torch.bfloat16, seed=5)

    def fn(*leaves):
        return aft.scaled_dot_product_attention(*leaves, is_causal=True)

    eager = [run_step(fn, q, k, v, dout) for _ in range(2)]  # the second one planned
    compiled = torch.compile(fn, fullgraph=True)
    steps = [run_step(compiled, q, k, v, dout) for _ in range(2)]
    torch.cuda.synchronize()
    assert eager[1][1] == PLANNED
    for out, name, grads in steps:
        assert name != PLANNED  # the compiled graph runs the ops
        assert torch.equal(out, eager[0][0])
        same(grads, eager[0][2], False)
