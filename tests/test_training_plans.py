"""attention()'s training plans (serve/training_plans.py) without a GPU or torch: tensors, torch's grad
mode and autograd.Function are faked (what the checks and the plans read), kernels record their
launches, driver.launchKernel records the packed launches. A differentiable call checked once is
served by the planned Function (the forward's plan, then the backward's); each field the checks
read is in the key; a hit re-checks whether gradients are wanted, alignment, the device, the tuned
files, and the backward's grad_out; bad inputs raise what they raised without plans. The drop-in's
training plans and the gradients' values are tested on the GPU (tests/test_training_plans_gpu.py)."""
import sys
import types

import pytest

import autoflash
from autoflash import store
from autoflash.serve import api, autograd, backward_plans, call_plans, dispatch, frameworks, training_plans
from autoflash.serve.errors import InputError

from test_backward_host_plans import Driver, FakeDevice, contiguous
from test_backward_host_plans import fake_kernel as fake_bwd_kernel
from test_host_path import fake_kernel as fake_fwd_kernel
from test_host_path import no_context_binding  # noqa: F401  (an autouse fixture there, used here)


pytestmark = pytest.mark.usefixtures("copies_views")  # the copying path (conftest.py)

pytest.importorskip("cupy")  # the packed launches call CuPy's driver.launchKernel (patched here)

A100 = "NVIDIA A100-SXM4-80GB"
_next_ptr = [1 << 24]


class Tensor:
    """What attention(), its autograd Function and the plans read of a torch tensor."""
    __module__ = "torch"
    is_cuda = True

    def __init__(self, shape, dtype="torch.bfloat16", strides=None, ptr=None, requires_grad=False, device=0):
        self.shape, self.dtype, self.device = tuple(shape), dtype, FakeDevice(device)
        self._strides = tuple(strides) if strides is not None else contiguous(shape)
        _next_ptr[0] += 1 << 24
        self._ptr = ptr if ptr is not None else _next_ptr[0]
        self.requires_grad = requires_grad

    def stride(self):
        return self._strides

    def is_contiguous(self):
        return self._strides == contiguous(self.shape)

    def contiguous(self):
        return self if self.is_contiguous() else Tensor(self.shape, self.dtype, requires_grad=self.requires_grad)

    def clone(self):
        return Tensor(self.shape, self.dtype)

    def data_ptr(self):
        return self._ptr

    def get_device(self):
        return self.device.index

    def new_empty(self, shape, dtype=None):
        return Tensor(shape, dtype or self.dtype, device=self.device.index)


class Ctx:
    def save_for_backward(self, *tensors):
        self.saved_tensors = tensors

    def mark_non_differentiable(self, *tensors):
        self.non_differentiable = tensors


class Function:
    """torch.autograd.Function's stand-in: apply runs forward with grad mode off and keeps the ctx;
    the output's grad_fn runs backward."""
    grad = types.SimpleNamespace(enabled=True)

    @classmethod
    def apply(cls, *args):
        ctx, before = Ctx(), Function.grad.enabled
        Function.grad.enabled = False
        try:
            outputs = cls.forward(ctx, *args)
        finally:
            Function.grad.enabled = before
        outputs[0].grad_fn = lambda grad_out: cls.backward(ctx, grad_out, None)
        return outputs


@pytest.fixture
def gpu(monkeypatch, tmp_path):
    """attention() on fake tensors that require grad, down to the driver calls."""
    from cupy.cuda import driver as cuda_driver

    from autoflash.kernels import packed_sequence

    drv = Driver()
    monkeypatch.setattr(cuda_driver, "launchKernel", drv)
    monkeypatch.setattr(packed_sequence, "ensure_context", lambda: None)
    arch = lambda device: ("sm_80", A100)  # noqa: E731  (flash_fwd_mma and flash_bwd_mma: no TMA maps)
    monkeypatch.setattr(api, "device_arch", arch)
    monkeypatch.setattr(autograd, "device_arch", arch)
    fwd, bwd = {}, {}

    def fwd_kernel(cfg, device):
        if cfg not in fwd:
            fwd[cfg] = fake_fwd_kernel(cfg)
            fwd[cfg].function.ptr = 0xA000 + len(fwd)
        return fwd[cfg]

    monkeypatch.setattr(api, "loaded_kernel", fwd_kernel)
    monkeypatch.setattr(autograd, "_loaded", lambda cfg, device: bwd.setdefault(cfg, fake_bwd_kernel(cfg)))
    state = types.SimpleNamespace(device=0)
    fake_cupy = types.SimpleNamespace(cuda=types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDevice=lambda: state.device), Device=lambda i: _NoDevice()))
    fake_torch = types.SimpleNamespace(
        Tensor=Tensor, uint8="torch.uint8", float32="torch.float32", float16="torch.float16",
        bfloat16="torch.bfloat16", is_grad_enabled=lambda: Function.grad.enabled,
        autograd=types.SimpleNamespace(Function=Function), cuda=types.SimpleNamespace(current_device=lambda: 0))
    monkeypatch.setitem(sys.modules, "torch", fake_torch)  # api._needs_grad, autograd's Function, call_plans
    monkeypatch.setattr(frameworks, "cupy", lambda: fake_cupy)
    monkeypatch.setattr(frameworks, "torch", lambda: fake_torch)
    monkeypatch.setattr(frameworks, "torch_dtypes", lambda: {"fp32": "torch.float32", "fp16": "torch.float16",
                                                             "bf16": "torch.bfloat16"})
    monkeypatch.setattr(frameworks, "raw_stream", lambda: (lambda index: 0x5000 + index))
    autograd.attention_function.cache_clear()
    training_plans.planned_function.cache_clear()
    for module in (call_plans, backward_plans, training_plans):
        monkeypatch.setattr(module, "_plans", {})
    monkeypatch.setattr(call_plans, "_signature_of", {})
    monkeypatch.setattr(backward_plans, "_signature_of", {})
    monkeypatch.setattr(Function, "grad", types.SimpleNamespace(enabled=True))
    now = [1000.0]
    monkeypatch.setattr(dispatch, "clock", lambda: now[0])
    monkeypatch.setattr(dispatch, "_recent", {})
    monkeypatch.setattr(store, "search_dirs", lambda: [tmp_path])
    checked = types.SimpleNamespace(forward=[], backward=[])
    real_fwd, real_bwd = api.check_inputs, autograd.check_inputs
    monkeypatch.setattr(api, "check_inputs", lambda *a, **kw: checked.forward.append(a) or real_fwd(*a, **kw))
    monkeypatch.setattr(autograd, "check_inputs", lambda *a, **kw: checked.backward.append(a) or real_bwd(*a, **kw))
    yield types.SimpleNamespace(driver=drv, checked=checked, state=state, now=now, folder=tmp_path, fwd=fwd)
    autograd.attention_function.cache_clear()
    training_plans.planned_function.cache_clear()


class _NoDevice:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def qkv(b=2, hq=4, hkv=2, nq=128, nk=128, d=64, grad=True, **kw):
    return (Tensor((b, hq, nq, d), requires_grad=grad, **kw), Tensor((b, hkv, nk, d), requires_grad=grad, **kw),
            Tensor((b, hkv, nk, d), requires_grad=grad, **kw))


def step(ts, grad_out=None, **kw):
    """A training step: attention() then its backward; (out, (dq, dk, dv))."""
    out = autoflash.attention(*ts, **{"causal": True, **kw})
    out = out[0] if isinstance(out, tuple) else out
    grads = out.grad_fn(grad_out if grad_out is not None else Tensor(out.shape, out.dtype))
    return out, grads


def test_a_training_call_is_served_by_its_plans(gpu):
    step(qkv())
    assert (len(gpu.checked.forward), len(gpu.checked.backward)) == (2, 1)  # attention() and its forward; backward
    assert len(gpu.driver) == 3  # the backward's three packed launches (the first forward: CuPy's launcher)
    assert len(training_plans._plans) == 1
    (entry,) = training_plans._plans.values()
    assert entry.backward is None
    for i in range(3):
        ts = qkv()
        g = Tensor(ts[0].shape)
        out, (none, dq, dk, dv) = step(ts, g)
        assert none is None and (dq.shape, dk.shape, dv.shape) == (ts[0].shape, ts[1].shape, ts[2].shape)
        assert entry.backward is next(iter(backward_plans._plans.values()))
        assert len(gpu.driver) == 3 + 4 * (i + 1)  # one forward launch, three backward launches a step
        forward = gpu.driver[-4]
        assert forward["function"] == next(iter(gpu.fwd.values())).function.ptr
        assert {c["stream"] for c in gpu.driver[-4:]} == {0x5000}
    assert (len(gpu.checked.forward), len(gpu.checked.backward)) == (2, 1)  # never checked again
    packed = entry.backward.packed
    from test_backward_host_plans import pointer

    assert [pointer(packed, 1, i) for i in range(4)] == [t.data_ptr() for t in (*ts, g)]
    assert [pointer(packed, 1, i) for i in (7, 8)] == [dk.data_ptr(), dv.data_ptr()]
    assert pointer(packed, 2, 1) == dq.data_ptr() and pointer(packed, 0, 0) == out.data_ptr()


def test_return_lse_and_the_outputs(gpu):
    for _ in range(3):
        out, lse = autoflash.attention(*qkv(), causal=True, return_lse=True)
    assert out.shape == (2, 4, 128, 64) and lse.shape == (2, 4, 128) and lse.dtype == "torch.float32"
    assert len(gpu.checked.forward) == 2


def _variations():
    """(what changes, how): one field the checks read at a time, each a valid call."""
    strided = (128 * 4 * 64 * 2 // 2, 64, 4 * 64, 1)  # (B, N, H, D) memory seen as (B, H, N, D), elements
    return [
        ("shapes", lambda: qkv(nq=130, nk=130), {}),
        ("GQA heads", lambda: qkv(hq=8), {}),
        ("dtype", lambda: qkv(dtype="torch.float16"), {}),
        ("strides", lambda: tuple(Tensor((2, 4, 128, 64), strides=strided, requires_grad=True) for _ in range(3)),
         {}),
        ("causal", qkv, dict(causal=False)),
        ("alignment", qkv, dict(causal_alignment="bottom_right")),
        ("scale", qkv, dict(scale=0.1)),
        ("deterministic", qkv, dict(deterministic=True)),
        ("config", qkv, dict(config=api.choose_config("sm_80", A100, "bf16", 64, True, 128, dict(
            window=False, softcap=False, sinks=False, alibi=False)))),
    ]


@pytest.mark.parametrize("what,make,kw", _variations(), ids=[v[0] for v in _variations()])
def test_each_field_the_checks_read_is_in_the_key(gpu, what, make, kw):
    step(qkv())
    before = len(gpu.checked.forward)
    step(make(), **kw)
    assert len(gpu.checked.forward) > before  # the full path: attention()'s checks (its forward's plan may serve)
    assert len(training_plans._plans) == (1 if what == "strides" else 2)  # strided inputs: copied, never planned


def test_strided_inputs_are_copied_and_never_planned(gpu):
    strided = (128 * 4 * 64, 64, 4 * 64, 1)
    for _ in range(2):
        step(tuple(Tensor((2, 4, 128, 64), strides=strided, requires_grad=True) for _ in range(3)))
    assert not training_plans._plans
    assert len(gpu.checked.forward) == 3  # checked each time (the second time the copies' forward: its plan)


def test_a_hit_rechecks_what_the_key_cannot_hold(gpu, monkeypatch):
    step(qkv())
    step(qkv())
    n = len(gpu.checked.forward)
    out = autoflash.attention(*qkv(grad=False), causal=True)  # no input requires grad: inference
    assert not hasattr(out, "grad_fn")
    Function.grad.enabled = False  # torch.no_grad()
    assert not hasattr(autoflash.attention(*qkv(), causal=True), "grad_fn")
    Function.grad.enabled = True
    assert len(gpu.checked.forward) == n + 1  # the inference path: checked, then served by its own plan
    gpu.state.device = 1  # another current device: the full path (it switches devices around the launch)
    step(qkv())
    gpu.state.device = 0
    assert len(gpu.checked.forward) == n + 3  # attention()'s checks and its forward's
    ts = list(qkv())
    ts[1] = Tensor(ts[1].shape, ptr=ts[1].data_ptr() + 8, requires_grad=True)
    with pytest.raises((InputError, ValueError)) as planned:
        step(ts)
    assert len(gpu.checked.forward) == n + 4
    training_plans.clear()
    call_plans.clear()
    with pytest.raises((InputError, ValueError)) as unplanned:
        step(ts)
    assert (type(planned.value), str(planned.value)) == (type(unplanned.value), str(unplanned.value))


def test_a_tuned_file_change_rederives(gpu):
    step(qkv())
    step(qkv())
    n = len(gpu.checked.forward)
    store.write(gpu.folder / "sm_80.json", [])
    gpu.now[0] += 1.0
    step(qkv())
    assert len(gpu.checked.forward) == n + 2
    step(qkv())
    assert len(gpu.checked.forward) == n + 2  # re-planned


def test_the_backward_rechecks_grad_out(gpu):
    for _ in range(3):
        out, _ = step(qkv())
    n = len(gpu.checked.backward)
    strided = Tensor(out.shape, strides=(4 * 128 * 64, 64, 4 * 64, 1))  # copied by kernel_ready: then planned
    step(qkv(), strided)
    assert len(gpu.checked.backward) == n
    with pytest.raises(ValueError) as planned:  # another dtype: attention_backward's full path refuses it
        step(qkv(), Tensor(out.shape, "torch.float16"))
    assert len(gpu.checked.backward) == n + 1
    with pytest.raises(ValueError) as unplanned:
        autograd.attention_backward(*qkv(), out, Tensor((2, 4, 128), "torch.float32"),
                                    Tensor(out.shape, "torch.float16"), causal=True)
    assert str(planned.value) == str(unplanned.value)


def test_bad_inputs_raise_what_they_raised_without_plans(gpu):
    step(qkv())
    step(qkv())
    cases = [(qkv(d=100), {}), (qkv(), dict(causal_alignment="bottom-right")), (qkv(), dict(scale=float("nan"))),
             ((Tensor((2, 4, 128, 64), "torch.float32", requires_grad=True),) + qkv()[1:], {})]

    def errors():
        out = []
        for ts, kw in cases:
            with pytest.raises((InputError, ValueError)) as info:
                step(ts, **kw)
            out.append((type(info.value), str(info.value)))
        return out

    planned = errors()
    training_plans.clear()
    call_plans.clear()
    backward_plans.clear()
    assert errors() == planned


def test_variant_and_unplannable_calls_have_no_training_plans(gpu):
    for _ in range(2):
        step(qkv(d=128), softcap=30.0)
        step(qkv(), deterministic=1)  # not a bool: never a plan key
    assert not training_plans._plans


def test_planned_function_is_a_torch_function(gpu):
    cls = training_plans.planned_function()
    assert issubclass(cls, Function) and cls.forward is training_plans.function_forward
    assert cls.backward is training_plans.function_backward
