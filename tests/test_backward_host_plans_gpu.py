"""attention_backward()'s call plans on a GPU (serve/backward_plans.py): the gradients of a plan
hit are those of CuPy's launcher on the same launch plan and of the full (checked) path: dk and dv bitwise (each block sums its own keys in registers), dq bitwise where the
kernel is deterministic, else within one bf16 unit of the largest |dq| (its fp32 adds from the
K/V blocks land in any order); plain, GQA, causal bottom-right (rows that see no key), and
deterministic; a hit with new tensors (new pointers) too. A tuned-file change sends the next call
down the full path; a training step through autograd (autoflash.attention(...).backward()) is
served by the plan."""
import pytest

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")

cupy = pytest.importorskip("cupy")

from autoflash import store  # noqa: E402
from autoflash.kernels.loaded import stream_handle  # noqa: E402
from autoflash.serve import autograd, backward_plans, dispatch, training_plans  # noqa: E402

from test_backward_gpu import float64_forward, inputs  # noqa: E402

CASES = {  # batch, heads_q, heads_kv, seq_q, seq_k, alignment, deterministic (bf16, D 64, causal)
    "plain": (2, 4, 4, 200, 200, "top_left", False),
    "gqa": (2, 8, 2, 150, 300, "top_left", False),
    "bottom_right": (1, 4, 4, 300, 100, "bottom_right", False),  # the first 200 rows see no key
    "deterministic": (1, 4, 2, 257, 257, "top_left", True),
}


@pytest.fixture
def checked(monkeypatch):
    """Counts full (checked) attention_backward calls; plans cleared before and after."""
    calls = []
    real = autograd.check_inputs
    monkeypatch.setattr(autograd, "check_inputs", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    backward_plans.clear()
    training_plans.clear()  # a training plan holds on to a backward plan of its own
    yield calls
    backward_plans.clear()
    training_plans.clear()


def problem(b, hq, hkv, nq, nk, alignment):
    q, k, v, dout = inputs(b, hq, hkv, nq, nk, 64, torch.bfloat16, seed=nq)
    offset = nk - nq if alignment == "bottom_right" else 0
    out, lse = float64_forward(q, k, v, True, 0.125, offset)
    return q, k, v, out, lse, dout


def same(grads, ref, deterministic: bool) -> None:
    for g, r in zip(grads[1:], ref[1:]):
        assert torch.equal(g, r)
    if deterministic:
        assert torch.equal(grads[0], ref[0])
    else:
        bound = 2.0 ** -7 * ref[0].abs().max().item()  # one bf16 unit at the largest |dq|
        assert (grads[0].float() - ref[0].float()).abs().max().item() <= bound
    assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("case", CASES)
def test_a_hit_gives_the_full_paths_gradients(monkeypatch, checked, case):
    b, hq, hkv, nq, nk, alignment, det = CASES[case]
    tensors = problem(b, hq, hkv, nq, nk, alignment)
    kw = dict(causal=True, causal_alignment=alignment, deterministic=det)
    miss = autograd.attention_backward(*tensors, **kw)  # checked, packed launches, plan kept
    ref = cupy_launcher(tensors)  # the same launches through CuPy's launcher
    hits = [autograd.attention_backward(*tensors, **kw) for _ in range(2)]
    fresh = autograd.attention_backward(*(t.clone() for t in tensors), **kw)  # new pointers, same plan
    torch.cuda.synchronize()
    assert len(checked) == 1 and len(backward_plans._plans) == 1
    for grads in [miss, fresh] + hits:
        same(grads, ref, det)
    if alignment == "bottom_right":
        assert torch.count_nonzero(hits[0][0][:, :, :nq - nk]) == 0  # rows that see no key: dq = 0


def cupy_launcher(tensors):
    """(dq, dk, dv) from the kept plan's BackwardLaunch called through CuPy's launcher (no packing)."""
    (entry,) = backward_plans._plans.values()
    q, k, v = tensors[:3]
    grads = (torch.empty_like(q), torch.empty_like(k), torch.empty_like(v))
    workspace = torch.empty(entry.workspace_shape, dtype=torch.uint8, device=q.device)
    ptr = torch.cuda.current_stream().cuda_stream
    stream = stream_handle(ptr) if ptr else cupy.cuda.Stream.null  # 0: the legacy default stream
    entry.launch(*(t.data_ptr() for t in tensors + grads), workspace.data_ptr(), stream)
    return grads


def test_a_tuned_file_change_rederives(monkeypatch, checked, tmp_path):
    monkeypatch.setattr(store, "search_dirs", lambda: [tmp_path])
    monkeypatch.setattr(dispatch, "_recent", {})
    tensors = problem(2, 4, 4, 200, 200, "top_left")
    first = autograd.attention_backward(*tensors, causal=True)
    autograd.attention_backward(*tensors, causal=True)
    assert len(checked) == 1
    store.write(tmp_path / f"{autograd.device_arch(torch.cuda.current_device())[0]}.json", [])
    monkeypatch.setattr(dispatch, "STAMP_MAX_AGE_S", 0.0)  # the plan reads the files' state now
    again = autograd.attention_backward(*tensors, causal=True)
    assert len(checked) == 2
    autograd.attention_backward(*tensors, causal=True)
    assert len(checked) == 2  # re-planned under the new state
    torch.cuda.synchronize()
    same(again, first, False)


def test_training_steps_are_served_by_the_plan(monkeypatch, checked):
    import autoflash

    q, k, v, _, _, dout = problem(2, 8, 2, 200, 200, "top_left")

    def step():
        leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
        autoflash.attention(*leaves, causal=True).backward(dout)
        return [t.grad for t in leaves]

    ref = step()  # checked, plan kept
    steps = [step() for _ in range(3)]
    torch.cuda.synchronize()
    assert len(checked) == 1 and len(backward_plans._plans) == 1
    for grads in steps:
        same(grads, ref, False)
