"""attention_backward()'s call plans (serve/backward_plans.py) and the backward's packed launches
(kernels/packed_sequence.py), without a GPU or torch: tensors are faked (what the checks and the plan
read), kernels record their launches, driver.launchKernel records the packed argument bytes. A
call checked once is served from its plan; each field the checks read is in the key; a hit
re-checks alignment, the device and the tuned files; bad inputs raise what they raised without
plans. Nothing is timed here (benchmarks/host_backward.py); the GPU side is
tests/test_backward_host_plans_gpu.py."""
import ctypes
import dataclasses
import itertools
import types

import numpy as np
import pytest

from autoflash import store
from autoflash.kernels import packed_sequence
from autoflash.kernels.loaded import LoadedKernel
from autoflash.kernels.registry import TEMPLATES
from autoflash.ops.backward import OPERATION
from autoflash.ops.backward_gpu import OUTPUTS, BackwardLaunch
from autoflash.ops.backward_kernels import check_inputs as real_check_inputs
from autoflash.serve import autograd, backward_plans, dispatch, frameworks
from autoflash.serve.errors import InputError

from test_backward import key


pytestmark = pytest.mark.usefixtures("copies_views")  # the copying path (conftest.py)

pytest.importorskip("cupy")  # the packed launches call CuPy's driver.launchKernel (patched here)

H200 = "NVIDIA H200"
_pointers = itertools.count(1)


@dataclasses.dataclass(frozen=True)
class FakeDevice:
    index: int = 0

    def __str__(self):
        return f"cuda:{self.index}"


class FakeTensor:
    """What attention_backward and its plans read of a torch tensor."""
    __module__ = "torch"

    def __init__(self, shape, dtype="torch.bfloat16", device=0, strides=None, ptr=None, log=None):
        self.shape, self.dtype, self.device = tuple(shape), dtype, FakeDevice(device)
        self._strides = tuple(strides) if strides is not None else contiguous(shape)
        self._ptr = ptr if ptr is not None else next(_pointers) << 20
        self.log = log

    def stride(self):
        return self._strides

    def is_contiguous(self):
        return self._strides == contiguous(self.shape)

    def data_ptr(self):
        return self._ptr

    def get_device(self):
        return self.device.index

    def new_empty(self, shape, dtype=None):
        t = FakeTensor(shape, dtype or self.dtype, self.device.index, log=self.log)
        if self.log is not None:
            self.log.append(("alloc", tuple(shape)))
        return t


def contiguous(shape):
    return tuple(int(np.prod(shape[i + 1:])) for i in range(len(shape)))


class FakeFunction:
    def __init__(self, name, ptr):
        self.name, self.ptr, self.calls = name, ptr, []

    def __call__(self, grid, block, args, shared_mem=0, stream=None):
        self.calls.append((grid, block, args, shared_mem, stream))


def fake_kernel(cfg) -> LoadedKernel:
    kernel = LoadedKernel.__new__(LoadedKernel)
    kernel.config, kernel.template, kernel.smem, kernel._plans = cfg, TEMPLATES[cfg.template], 4096, {}
    names = iter(range(0xF00, 0x1000))
    kernel.module = types.SimpleNamespace(get_function=lambda name: FakeFunction(name, next(names)))
    kernel.function = FakeFunction(cfg.name, 0xE00)
    kernel._functions = {"": kernel.function}
    return kernel


class Driver(list):
    """driver.launchKernel's stand-in: records each launch (its kernelParams pointer too)."""

    def __init__(self, log=None):
        super().__init__()
        self.log = log

    def __call__(self, f, gx, gy, gz, bx, by, bz, smem, stream, params, extra):
        self.append(dict(function=f, grid=(gx, gy, gz), block=(bx, by, bz), smem=smem, stream=stream, params=params))
        if self.log is not None:
            self.log.append(("launch", f))


def slot(sequence, launch: int, index: int) -> bytes:
    """Argument `index` of launch `launch` as the driver reads it: through its kernelParams entry."""
    params = sequence.launches[launch].params_ptr
    address = ctypes.c_uint64.from_address(params + 8 * index).value
    assert ctypes.string_at(address, 8) == packed_sequence.param_bytes(sequence, launch, index)
    return ctypes.string_at(address, 8)


def pointer(sequence, launch: int, index: int) -> int:
    return int.from_bytes(slot(sequence, launch, index), "little")


@pytest.fixture
def gpu(monkeypatch, tmp_path):
    """attention_backward on FakeTensors down to the driver call."""
    from cupy.cuda import driver as cuda_driver

    log = []
    drv = Driver(log)
    monkeypatch.setattr(cuda_driver, "launchKernel", drv)
    monkeypatch.setattr(packed_sequence, "ensure_context", lambda: None)
    monkeypatch.setattr(autograd, "device_arch", lambda device: ("sm_90", H200))
    kernels = {}
    monkeypatch.setattr(autograd, "_loaded", lambda cfg, device: kernels.setdefault(cfg, fake_kernel(cfg)))
    state = types.SimpleNamespace(device=0, entered=[])

    class Device:
        def __init__(self, index):
            self.index = index

        def __enter__(self):
            state.entered.append(self.index)

        def __exit__(self, *exc):
            return False

    fake_cupy = types.SimpleNamespace(cuda=types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDevice=lambda: state.device), Device=Device))
    fake_torch = types.SimpleNamespace(uint8="torch.uint8", float32="torch.float32", Tensor=FakeTensor,
                                       cuda=types.SimpleNamespace(current_device=lambda: 0))
    monkeypatch.setattr(frameworks, "cupy", lambda: fake_cupy)
    monkeypatch.setattr(frameworks, "torch", lambda: fake_torch)
    monkeypatch.setattr(frameworks, "raw_stream", lambda: (lambda index: 0x5000 + index))
    monkeypatch.setattr(backward_plans, "_plans", {})
    monkeypatch.setattr(backward_plans, "_signature_of", {})
    now = [1000.0]
    monkeypatch.setattr(dispatch, "clock", lambda: now[0])
    monkeypatch.setattr(dispatch, "_recent", {})
    monkeypatch.setattr(store, "search_dirs", lambda: [tmp_path])
    checked = []
    monkeypatch.setattr(autograd, "check_inputs", lambda *a, **kw: checked.append(a) or real_check_inputs(*a, **kw))
    return types.SimpleNamespace(driver=drv, kernels=kernels, checked=checked, state=state, log=log, now=now,
                                 folder=tmp_path)


def tensors(b=2, hq=4, hkv=2, nq=40, nk=100, d=64, dtype="torch.bfloat16", log=None):
    q = FakeTensor((b, hq, nq, d), dtype, log=log)
    k, v = FakeTensor((b, hkv, nk, d), dtype, log=log), FakeTensor((b, hkv, nk, d), dtype, log=log)
    out, grad_out = FakeTensor((b, hq, nq, d), dtype, log=log), FakeTensor((b, hq, nq, d), dtype, log=log)
    return [q, k, v, out, FakeTensor((b, hq, nq), "torch.float32", log=log), grad_out]


def backward(ts, **kw):
    return autograd.attention_backward(*ts, **{"causal": True, **kw})


def test_second_call_is_served_by_its_plan(gpu):
    dq, dk, dv = backward(tensors())
    assert len(gpu.checked) == 1 and len(gpu.driver) == 3  # checked, three packed launches
    for i in range(3):
        ts = tensors()
        dq, dk, dv = backward(ts)
        assert (dq.shape, dk.shape, dv.shape) == (ts[0].shape, ts[1].shape, ts[2].shape)
        assert dq.dtype == "torch.bfloat16" and dq.is_contiguous()
        packed = next(iter(backward_plans._plans.values())).packed
        assert [gpu.driver[-3 + i]["params"] for i in range(3)] == [x.params_ptr for x in packed.launches]
        assert [pointer(packed, 1, i) for i in range(4)] == [t.data_ptr() for t in (ts[0], ts[1], ts[2], ts[5])]
        assert [pointer(packed, 1, i) for i in (7, 8)] == [dk.data_ptr(), dv.data_ptr()]
        assert pointer(packed, 2, 1) == dq.data_ptr() and pointer(packed, 0, 0) == ts[3].data_ptr()
    assert len(gpu.checked) == 1 and len(gpu.driver) == 12
    assert {c["stream"] for c in gpu.driver} == {0x5000} and len(backward_plans._plans) == 1
    (kernel,) = gpu.kernels.values()
    assert not kernel.function.calls  # never CuPy's launcher


def test_hit_launches_the_preprocess_before_allocating_the_gradients(gpu):
    backward(tensors())
    gpu.log.clear()
    backward(tensors(log=gpu.log))
    kinds = [k for k, _ in gpu.log]
    assert kinds == ["alloc", "launch", "alloc", "alloc", "alloc", "launch", "launch"]
    assert gpu.log[0][1] == (backward_plans._plans[next(iter(backward_plans._plans))].workspace_shape[0],)


def _variations():
    """(what changes, how): one field the checks read at a time, each a valid call."""
    def tensor(i, **kw):
        def change(ts):
            t = ts[i]
            ts[i] = FakeTensor(kw.get("shape", t.shape), kw.get("dtype", t.dtype), kw.get("device", 0),
                               kw.get("strides"))
            return ts
        return change

    def same_shape_other_strides(i):
        def change(ts):
            t = ts[i]
            strides = list(contiguous(t.shape))
            strides[0] += 64  # a padded batch stride: same shape, other strides (not contiguous)
            ts[i] = FakeTensor(t.shape, t.dtype, 0, strides)
            return ts
        return change

    out = []
    for i, name in enumerate(("q", "k", "v", "out", "lse", "grad_out")):
        out.append((f"{name} dtype", tensor(i, dtype="torch.float16"), {}))
        out.append((f"{name} device", tensor(i, device=1), {}))
        out.append((f"{name} strides", same_shape_other_strides(i), {}))
    out.append(("shapes", lambda ts: tensors(nq=41), {}))
    out.append(("q shape (GQA)", lambda ts: tensors(hq=8), {}))
    out.append(("causal", lambda ts: ts, dict(causal=False)))
    out.append(("causal_alignment", lambda ts: ts, dict(causal_alignment="bottom_right")))
    out.append(("scale", lambda ts: ts, dict(scale=0.1)))
    out.append(("deterministic", lambda ts: ts, dict(deterministic=True)))
    out.append(("config", lambda ts: ts, dict(config=OPERATION.default("sm_90", key(head_dim=64, causal=True)))))
    return out


@pytest.mark.parametrize("what,change,kw", _variations(), ids=[v[0] for v in _variations()])
def test_each_field_the_checks_read_is_in_the_key(gpu, what, change, kw):
    """A call differing from a planned one in one field misses its plan (served() gives None) and
    takes the full path (checked again: a valid call launches, a bad one raises as without plans)."""
    backward(tensors())
    assert len(backward_plans._plans) == 1
    ts = change(tensors())
    args = {**dict(causal=True, causal_alignment="top_left", scale=None, deterministic=False, config=None), **kw}
    assert backward_plans.served(*ts, args["causal"], args["causal_alignment"], args["scale"], args["deterministic"],
                                 args["config"], (-1, -1), None, None, None) is None
    try:
        backward(ts, **kw)
    except (InputError, ValueError):
        pass  # e.g. mixed dtypes or devices: refused by the full path, as without plans
    assert len(gpu.checked) == 2


def test_key_fields_follow_the_checks():
    """The TensorSpec fields check_inputs reads are in the signature: shape, dtype, device read
    directly; contiguity is a function of shape and strides; alignment is re-checked per call."""
    from autoflash.ops.backward_kernels import TensorSpec

    assert {f.name for f in dataclasses.fields(TensorSpec)} == {"name", "shape", "dtype", "device", "contiguous",
                                                                "aligned"}
    t = FakeTensor((2, 3, 4, 64))
    assert backward_plans._torch_signature(*[t] * 6) == (t.dtype, t.shape, t.stride(), t.device) * 6


def test_hit_rechecks_alignment_and_the_error_is_the_full_paths(gpu):
    backward(tensors())
    for i in range(6):
        ts = tensors()
        ts[i] = FakeTensor(ts[i].shape, ts[i].dtype, ptr=ts[i].data_ptr() + 8)
        with pytest.raises(ValueError, match="not 16-byte aligned"):
            backward(ts)
    assert len(gpu.checked) == 7 and len(gpu.driver) == 3


def test_hit_rechecks_the_current_device(gpu):
    backward(tensors())
    gpu.state.device = 1  # another device is current: the full path switches to the tensors' around the launch
    backward(tensors())
    assert len(gpu.checked) == 2 and gpu.state.entered == [0] and len(gpu.driver) == 6


def test_tuned_file_change_rederives_and_a_pinned_config_does_not_care(gpu):
    backward(tensors())
    backward(tensors())
    assert len(gpu.checked) == 1
    store.write(gpu.folder / "sm_90.json", [])  # a tuned file appears
    backward(tensors())
    assert len(gpu.checked) == 1  # within STAMP_MAX_AGE_S the last reading stands
    gpu.now[0] += 1.0
    backward(tensors())
    assert len(gpu.checked) == 2  # re-derived (and re-planned with the new stamp)
    backward(tensors())
    assert len(gpu.checked) == 2
    cfg = OPERATION.default("sm_90", key(head_dim=64, causal=True))
    backward(tensors(), config=cfg)
    backward(tensors(), config=cfg)
    (gpu.folder / "sm_90.json").unlink()
    gpu.now[0] += 1.0
    backward(tensors(), config=cfg)
    assert len(gpu.checked) == 3  # the pinned call: checked once, then served whatever the files do


BAD = [
    ("wrong dtype", lambda ts: ts.__setitem__(0, FakeTensor(ts[0].shape, "torch.float32")), {}),
    ("lse shape", lambda ts: ts.__setitem__(4, FakeTensor((2, 4, 41), "torch.float32")), {}),
    ("not contiguous", lambda ts: ts.__setitem__(1, FakeTensor(ts[1].shape, ts[1].dtype, 0,
                                                               (100 * 64 * 2, 64, 128, 1))), {}),
    ("other device", lambda ts: ts.__setitem__(2, FakeTensor(ts[2].shape, ts[2].dtype, 1)), {}),
    ("alignment", lambda ts: None, dict(causal_alignment="bottom-right")),
    ("scale", lambda ts: None, dict(scale=float("nan"))),
    ("config", lambda ts: None, dict(config=OPERATION.default("sm_90", key(head_dim=128, causal=True)))),
    ("misaligned", lambda ts: ts.__setitem__(3, FakeTensor(ts[3].shape, ts[3].dtype, ptr=ts[3].data_ptr() + 4)), {}),
]


@pytest.mark.parametrize("what,change,kw", BAD, ids=[b[0] for b in BAD])
def test_bad_inputs_raise_what_they_raised_without_plans(gpu, what, change, kw):
    def error(planned):
        backward_plans.clear()
        if planned:
            backward(tensors())  # a plan for the good signature
        ts = tensors()
        change(ts)
        with pytest.raises((InputError, ValueError)) as info:
            backward(ts, **kw)
        return type(info.value), str(info.value)

    without = error(False)
    with_plans = error(True)
    assert with_plans == without and len(backward_plans._plans) == 1


def test_variant_calls_have_no_plans(gpu):
    for _ in range(2):
        backward(tensors(d=128), softcap=30.0)
    assert len(gpu.checked) == 2 and not backward_plans._plans and len(gpu.driver) == 6


def test_plan_table_is_bounded(gpu, monkeypatch):
    monkeypatch.setattr(backward_plans, "MAX_PLANS", 3)
    for n in range(10, 17):
        backward(tensors(nq=n))
        assert len(backward_plans._plans) <= 3


# ---------------------------------------------------------------- packed launches == CuPy's arguments
def launch_for(flags=None, deterministic=False, varlen=False, causal=True):
    k = key(head_dim=128 if flags else 64, causal=causal, deterministic=deterministic, **(flags or {}))
    cfg = OPERATION.default("sm_90", k)
    if varlen:
        cfg = TEMPLATES["flash_bwd_mma"].default("sm_90", key(head_dim=64, causal=causal)).replace(varlen=True)
    ts = tensors(d=k["head_dim"])
    specs = [autograd.tensor_spec(n, t) for n, t in zip(("q", "k", "v", "out", "lse", "grad_out"), ts)]
    p = real_check_inputs(*specs, causal, "bottom_right", window=(16, 0) if (flags or {}).get("window") else (-1, -1),
                          softcap=30.0 if (flags or {}).get("softcap") else 0.0,
                          alibi_batch_stride=0 if (flags or {}).get("alibi") else -1)
    if varlen:
        p.total_q, p.total_k = 70, 150
    return BackwardLaunch(fake_kernel(cfg), p, 0.1)


CASES = {"plain": dict(), "deterministic": dict(deterministic=True), "non-causal": dict(causal=False),
         "variants": dict(flags=dict(window=True, softcap=True, sinks=True, alibi=True)),
         "varlen": dict(varlen=True)}


@pytest.mark.parametrize("case", CASES)
def test_packed_arguments_are_cupys(monkeypatch, case):
    """Every launch's packed argument slots hold the bytes CuPy's launcher gets for the same call
    (grid, block, shared memory, stream too), for pointers written on two successive calls."""
    from cupy.cuda import driver as cuda_driver

    drv = Driver()
    monkeypatch.setattr(cuda_driver, "launchKernel", drv)
    monkeypatch.setattr(packed_sequence, "ensure_context", lambda: None)
    plan = launch_for(**CASES[case])
    packed = plan.packed()
    assert plan.packed() is packed
    for base in (1 << 32, 1 << 36):
        ptrs = [base + 0x1000 * i for i in range(1, 11)]
        extra = dict(sinks=base + 0x20000, alibi_slopes=base + 0x30000, dsinks=base + 0x40000,
                     cu_seqlens_q=base + 0x50000, cu_seqlens_k=base + 0x60000)
        functions = [plan.pre, plan.main, plan.conv] + ([plan.sink] if plan.sink is not None else [])
        for f in functions:
            f.calls.clear()
        drv.clear()
        plan(*ptrs, "stream", **extra)
        packed(plan.pointers(*ptrs, **extra), 0x77)
        order = [plan.pre] + ([plan.sink] if plan.sink is not None else []) + [plan.main, plan.conv]
        assert [c["function"] for c in drv] == [f.ptr for f in order]
        for f, launch in zip(order, drv):
            ((grid, block, args, smem, stream),) = f.calls
            assert (launch["grid"], launch["block"], launch["smem"], launch["stream"]) == (grid, block, smem, 0x77)
            (seq_launch,) = [x for x in packed.launches if x.params_ptr == launch["params"]]
            n = packed.launches.index(seq_launch)
            assert len(args) == len(seq_launch.values)
            for i, a in enumerate(args):
                raw = np.asarray(a).tobytes()
                assert slot(packed, n, i)[:len(raw)] == raw, (f.name, i)


def test_leading_launches_read_no_output():
    plan = launch_for()
    assert plan.packed().leading(OUTPUTS) == 1  # the preprocess only
    sinks = launch_for(flags=dict(sinks=True))
    assert sinks.packed().leading(OUTPUTS) == 1  # the sink kernel writes dsinks


def test_packing_refuses_an_argument_it_cannot_hold():
    with pytest.raises(Exception, match="cannot be packed"):
        packed_sequence.PackedSequence([(FakeFunction("f", 1), (1, 1, 1), (32, 1, 1), 0, (np.zeros(3),))])
