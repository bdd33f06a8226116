"""O laid out like q under ops/backward_wgmma.STRIDED (serve/out_layout.py), without a GPU or torch
(tests/test_training_plans.py's faked tensors, kernels and driver): off, O is contiguous whatever q's strides (today's
allocation); on, a (B, N, H, D) view's O is (B, N, H, D) memory seen as (B, H, N, D), and the kernel is launched with
those O strides; a contiguous q keeps a contiguous O; the call plans allocate the layout they were planned with and
are hit; the training Function hands the backward that O. Values and the model's reshape being a view:
tests/test_forward_o_layout_gpu.py."""
import sys

import pytest

import autoflash
from autoflash.ops import backward_wgmma
from autoflash.ops.forward_base import dense_strides
from autoflash.serve import backward_plans, call_plans, out_layout, training_plans

import test_training_plans as tp
from test_training_plans import gpu  # noqa: F401  (the fixture)
from test_host_path import no_context_binding  # noqa: F401  (an autouse fixture there, used here)

B, H, HKV, N, D = 2, 4, 2, 128, 64
TRANSPOSED = (N * H * D, D, H * D, 1)  # (B, N, H, D) memory seen as (B, H, N, D)
FUSED = (N * (H + 2 * HKV) * D, D, (H + 2 * HKV) * D, 1)  # q of a fused (B, N, Hq + 2 Hkv, D) projection
CONTIGUOUS = (H * N * D, N * D, D, 1)


class Tensor(tp.Tensor):
    """tests/test_training_plans.py's tensor, with permute (a view: same pointer), dim and element_size."""
    __module__ = "torch"

    def permute(self, dims):
        return Tensor(tuple(self.shape[d] for d in dims), self.dtype, strides=tuple(self._strides[d] for d in dims),
                      ptr=self._ptr, device=self.device.index)

    def new_empty(self, shape, dtype=None):
        return Tensor(shape, dtype or self.dtype, device=self.device.index)

    def dim(self):
        return len(self.shape)

    def element_size(self):
        return 4 if "float32" in self.dtype else 2


@pytest.fixture
def host(gpu, monkeypatch):  # noqa: F811
    monkeypatch.setattr(sys.modules["torch"], "Tensor", Tensor)  # the exact type call_plans registers
    return gpu


@pytest.fixture(params=[False, True], ids=["off", "on"])
def switch(request, monkeypatch):
    monkeypatch.setattr(backward_wgmma, "STRIDED", request.param)
    return request.param


def inputs(q_strides, grad=False):
    """q with q_strides; k, v of HKV heads laid out the same way."""
    kv = {TRANSPOSED: (N * HKV * D, D, HKV * D, 1), FUSED: FUSED, CONTIGUOUS: (HKV * N * D, N * D, D, 1)}[q_strides]
    return (Tensor((B, H, N, D), strides=q_strides, requires_grad=grad),
            Tensor((B, HKV, N, D), strides=kv, requires_grad=grad), Tensor((B, HKV, N, D), strides=kv, requires_grad=grad))


def o_strides_launched(host):
    """O's (batch, head, token) strides the last forward launch passed (flash_fwd_mma's shared signature: after
    the 5 pointers, 6 scalars and q's, k's, v's strides)."""
    function = next(iter(host.fwd.values())).function
    args = function.calls[-1][2]
    return tuple(int(a) for a in args[20:23])


def test_order_rules(monkeypatch):
    shape = (B, H, N, D)
    monkeypatch.setattr(backward_wgmma, "STRIDED", False)
    assert out_layout.order(shape, TRANSPOSED, D, 2) is None  # off: contiguous
    monkeypatch.setattr(backward_wgmma, "STRIDED", True)
    assert out_layout.order(shape, TRANSPOSED, D, 2) == (0, 2, 1, 3)
    assert out_layout.order(shape, FUSED, D, 2) == (0, 2, 1, 3)
    assert out_layout.order(shape, CONTIGUOUS, D, 2) is None
    assert out_layout.order((1, H, N, D), (123, D, H * D, 1), D, 2) == (0, 2, 1, 3)  # batch 1: its stride unread
    assert out_layout.order((B, 1, N, D), (N * D, 7, D, 1), D, 2) is None  # one head: the same memory as contiguous
    assert out_layout.order((B, H, 1, D), (H * D, D, 5, 1), D, 2) is None  # one token: likewise
    assert out_layout.order(shape, (0, D, H * D, 1), D, 2) is None  # a broadcast batch: contiguous
    assert out_layout.order(shape, TRANSPOSED, 4, 2) is None  # O rows of 8 bytes: not 16-byte strides
    monkeypatch.setattr(out_layout, "LIKE_Q", False)
    assert out_layout.order(shape, TRANSPOSED, D, 2) is None
    assert dense_strides((B, H, N, 32), (0, 2, 1, 3)) == (N * H * 32, 32, H * 32, 1)
    assert dense_strides((B, H, N, 32), None) == (H * N * 32, N * 32, 32, 1)
    assert out_layout.inverse((0, 2, 1, 3)) == (0, 2, 1, 3) and out_layout.inverse((1, 2, 0, 3)) == (2, 0, 1, 3)


@pytest.mark.parametrize("q_strides", [TRANSPOSED, FUSED], ids=["transposed", "fused"])
def test_a_view_gets_o_in_its_order_and_the_plan_keeps_it(host, switch, q_strides):
    want = (N * H * D, D, H * D, 1) if switch else CONTIGUOUS
    for i in range(3):
        q, k, v = inputs(q_strides)
        out = autoflash.attention(q, k, v, causal=True)
        assert out.shape == (B, H, N, D) and out.stride() == want
        if i == 0:  # the checked call: its launch took O's strides
            assert o_strides_launched(host) == want[:3]
    assert len(host.checked.forward) == 1  # calls 2 and 3: the plan
    (plan,) = call_plans._plans.values()
    assert plan.out_order == ((0, 2, 1, 3) if switch else None)
    assert len(host.driver) == 2  # the plan's packed launches (the first call: CuPy's launcher)


def test_a_contiguous_q_keeps_a_contiguous_o(host, switch):
    for _ in range(2):
        out = autoflash.attention(*inputs(CONTIGUOUS), causal=True)
        assert out.stride() == CONTIGUOUS
    assert o_strides_launched(host) == CONTIGUOUS[:3]
    assert len(host.checked.forward) == 1 and next(iter(call_plans._plans.values())).out_order is None


def test_lse_stays_contiguous(host, switch):
    for _ in range(2):
        out, lse = autoflash.attention(*inputs(TRANSPOSED), causal=True, return_lse=True)
        assert lse.shape == (B, H, N) and lse.stride() == (H * N, N, 1)


def test_strided_plans_and_contiguous_plans_are_apart(host, monkeypatch):
    """A plan allocates the layout it launched with: one made with the switch off keeps contiguous O after it is
    turned on (the A/B clears plans between runs), and a view's plan is not a contiguous q's."""
    monkeypatch.setattr(backward_wgmma, "STRIDED", False)
    autoflash.attention(*inputs(TRANSPOSED), causal=True)
    monkeypatch.setattr(backward_wgmma, "STRIDED", True)
    assert autoflash.attention(*inputs(TRANSPOSED), causal=True).stride() == CONTIGUOUS  # the off plan
    call_plans.clear()
    assert autoflash.attention(*inputs(TRANSPOSED), causal=True).stride() == TRANSPOSED
    assert autoflash.attention(*inputs(CONTIGUOUS), causal=True).stride() == CONTIGUOUS
    assert len(call_plans._plans) == 2


def test_training_hands_the_backward_o_in_qs_layout(host, monkeypatch):
    """The planned Function saves the forward plan's O and gives it to the backward (whose plans key on its
    strides): under STRIDED a view's O is the transposed one, off the contiguous one."""
    seen = []

    def backward(q, k, v, out, lse, g, **kw):
        seen.append(out.stride())
        return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)

    monkeypatch.setattr(training_plans, "attention_backward", backward)
    monkeypatch.setattr(backward_plans, "find", lambda *a: None)
    import autoflash.serve.autograd as autograd

    monkeypatch.setattr(autograd, "attention_backward", backward)
    for flag, want in ((False, CONTIGUOUS), (True, TRANSPOSED)):
        monkeypatch.setattr(backward_wgmma, "STRIDED", flag)
        for plans in (call_plans, training_plans):
            plans.clear()
        for _ in range(3):  # the full path, then the training plan twice
            q, k, v = inputs(TRANSPOSED, grad=True)
            out = autoflash.attention(q, k, v, causal=True)
            assert out.stride() == want
            out.grad_fn(Tensor(out.shape, out.dtype, strides=TRANSPOSED))
        assert seen[-3:] == [want] * 3
        assert len(training_plans._plans) == (1 if flag else 0)  # off: views are copied, never planned
