"""attention()'s call plans (serve/call_plans.py) and packed launches (kernels/packed_sequence.py),
without a GPU: a call checked once is served from its plan; a plan is not served when what it was
made from changes (strides, shapes, the tuned files, alignment, variants); the packed argument
buffer holds exactly the arguments CuPy would have passed. Nothing here is timed:
benchmarks/host_overhead.py measures the host cost on a GPU."""
import ctypes
import types

import pytest

import autoflash
from autoflash import store
from autoflash.kernels import loaded, tma
from autoflash.kernels.registry import TEMPLATES
from autoflash.ops import forward_wgmma
from autoflash.ops.forward_base import Problem
from autoflash.ops.forward_launch import plan as make_plan
from autoflash.serve import api, call_plans, dispatch, frameworks
from autoflash.serve.errors import InputError

from conftest import fwd_key as K
from test_host_path import fake_kernel, no_context_binding  # noqa: F401  (an autouse fixture)
from test_store import make_entry
from test_variants import FakeCupyArray


pytestmark = pytest.mark.usefixtures("copies_views")  # the copying path (conftest.py)

H100 = "NVIDIA H100 80GB HBM3"
ENSURE_CONTEXT = loaded.ensure_context  # the real one (an autouse fixture stubs it for the other tests)


class DriverCalls(list):
    """driver.launchKernel stand-in: records each launch with the argument bytes it would pass."""

    def __call__(self, f, gx, gy, gz, bx, by, bz, smem, stream, params, extra):
        self.append(dict(function=f, grid=(gx, gy, gz), block=(bx, by, bz), smem=smem, stream=stream,
                         params=params))


def param_bytes(params_ptr: int, index: int, size: int) -> bytes:
    """The `size` bytes argument `index` of a kernelParams array points at."""
    address = ctypes.c_uint64.from_address(params_ptr + 8 * index).value
    return ctypes.string_at(address, size)


@pytest.fixture
def driver(monkeypatch):
    pytest.importorskip("cupy")
    from cupy.cuda import driver as cuda_driver

    calls = DriverCalls()
    monkeypatch.setattr(cuda_driver, "launchKernel", calls)
    return calls


@pytest.fixture
def gpu(monkeypatch, tmp_path, driver):
    """attention() on FakeCupyArrays down to the driver call: fake device, kernels that record CuPy
    launches, tuned files in tmp_path, and a counter of full (checked) calls."""
    monkeypatch.setattr(api, "device_arch", lambda device: ("sm_90", H100))
    kernels = {}

    def kernel_of(cfg, device):
        if cfg not in kernels:
            kernels[cfg] = fake_kernel(cfg)
            kernels[cfg].function.ptr = 0xF000 + len(kernels)
        return kernels[cfg]

    monkeypatch.setattr(api, "loaded_kernel", kernel_of)
    monkeypatch.setattr(forward_wgmma, "_sm_count", lambda: 132)
    monkeypatch.setattr(tma, "attention_operand_map", lambda *g: tma.TensorMap())
    stream = types.SimpleNamespace(ptr=0x5000)
    fake_cupy = types.SimpleNamespace(
        float32="float32", empty=lambda shape, dtype: FakeCupyArray(shape, str(dtype), ptr=1 << 30, itemsize=4),
        cuda=types.SimpleNamespace(runtime=types.SimpleNamespace(getDevice=lambda: 0),
                                   get_current_stream=lambda: stream))
    monkeypatch.setattr(frameworks, "cupy", lambda: fake_cupy)  # what api and call_plans import through
    monkeypatch.setattr(api, "_empty_like", lambda ref, shape, dtype: FakeCupyArray(shape, ptr=1 << 30))
    monkeypatch.setitem(call_plans._signature_of, FakeCupyArray, call_plans._cupy_signature)
    monkeypatch.setattr(call_plans, "_plans", {})
    monkeypatch.setattr(dispatch, "_recent", {})  # no reading of another test's folder
    monkeypatch.setattr(store, "search_dirs", lambda: [tmp_path])
    checked = []
    real_check = api.check_inputs
    monkeypatch.setattr(api, "check_inputs", lambda *ops, **kw: checked.append(ops) or real_check(*ops, **kw))
    return types.SimpleNamespace(folder=tmp_path, checked=checked, kernels=kernels, driver=driver)


def fp32(shape, ptr, strides=None):
    return FakeCupyArray(shape, "float32", ptr=ptr, itemsize=4, strides=strides)


def qkv(n=256, base=1 << 20, strides=None):
    return tuple(fp32((2, 4, n, 64), base + i * (1 << 24), strides) for i in range(3))


def test_second_call_is_served_by_its_plan(gpu):
    store.write(gpu.folder / "sm_90.json", [make_entry(bucket=256, block_n=32)])
    q, k, v = qkv()
    autoflash.attention(q, k, v)
    assert len(gpu.checked) == 1 and not gpu.driver  # first call: checked, launched through CuPy
    (kernel,) = gpu.kernels.values()
    assert kernel.config.block_n == 32 and len(kernel.function.calls) == 1
    for i in range(3):
        out = autoflash.attention(*qkv(base=(i + 2) << 28))  # same signature, new tensors
        assert out.shape == q.shape
    assert len(gpu.checked) == 1 and len(gpu.driver) == 3  # no more checks: three driver launches
    grid, block, _, smem, _ = kernel.function.calls[0]
    assert all((c["grid"], c["block"], c["smem"], c["stream"]) == (grid, block, smem, 0x5000) for c in gpu.driver)
    assert gpu.driver[-1]["function"] == kernel.function.ptr


def test_plans_follow_strides_shapes_and_arguments(gpu):
    q, k, v = qkv()
    autoflash.attention(q, k, v)
    autoflash.attention(q, k, v)
    assert len(gpu.checked) == 1
    transposed = (256 * 4 * 64 * 4, 64 * 4, 4 * 64 * 4, 4)  # (B, N, H, D) memory seen as (B, H, N, D), bytes
    autoflash.attention(*qkv(strides=transposed))
    autoflash.attention(*qkv(n=300))
    autoflash.attention(q, k, v, causal=True)
    autoflash.attention(q, k, v, scale=0.5)
    autoflash.attention(q, k, v, return_lse=True)
    autoflash.attention(q, k, v, causal=True, causal_alignment="bottom_right")
    assert len(gpu.checked) == 7  # each new signature or argument: checked once
    for args in ((q, k, v), qkv(strides=transposed), qkv(n=300)):
        autoflash.attention(*args)
    autoflash.attention(q, k, v, causal=True)
    out, lse = autoflash.attention(q, k, v, return_lse=True)
    assert lse.shape == (2, 4, 256)
    assert len(gpu.checked) == 7  # and then served by its plan
    assert len(gpu.driver) == 6  # the repeat of the first call, then the five repeats above


@pytest.fixture
def clock(monkeypatch):
    """dispatch's clock, moved by hand."""
    now = [1000.0]
    monkeypatch.setattr(dispatch, "clock", lambda: now[0])
    monkeypatch.setattr(dispatch, "_recent", {})
    return now


def test_a_changed_tuned_file_drops_the_plan(gpu, clock):
    path = gpu.folder / "sm_90.json"
    store.write(path, [make_entry(bucket=256, block_n=32)])
    q, k, v = qkv()
    autoflash.attention(q, k, v)
    autoflash.attention(q, k, v)
    assert len(gpu.checked) == 1
    store.write(path, [make_entry(bucket=256, block_n=64, ms=0.5)])  # retuned while the process runs
    clock[0] += dispatch.STAMP_MAX_AGE_S / 2
    autoflash.attention(q, k, v)  # the files' state read less than STAMP_MAX_AGE_S ago is trusted
    assert len(gpu.checked) == 1
    clock[0] += dispatch.STAMP_MAX_AGE_S
    autoflash.attention(q, k, v)  # read again: changed, so checked again and the new entry served
    assert len(gpu.checked) == 2
    assert any(kern.config.block_n == 64 and kern.function.calls for kern in gpu.kernels.values())
    autoflash.attention(q, k, v)
    assert len(gpu.checked) == 2
    path.unlink()  # removed: the heuristic default serves, checked again
    clock[0] += dispatch.STAMP_MAX_AGE_S
    autoflash.attention(q, k, v)
    assert len(gpu.checked) == 3
    assert dispatch.explain("sm_90", H100, "forward", K("fp32", 64, False), 256)[1] == "heuristic default"


def test_the_files_state_is_read_once_per_interval(gpu, clock, monkeypatch):
    q, k, v = qkv()
    autoflash.attention(q, k, v)
    reads = []
    real = dispatch._read_stamp
    monkeypatch.setattr(dispatch, "_read_stamp", lambda arch: reads.append(arch) or real(arch))
    for _ in range(5):
        autoflash.attention(q, k, v)
    assert reads == []
    clock[0] += dispatch.STAMP_MAX_AGE_S
    for _ in range(5):
        autoflash.attention(q, k, v)
    assert reads == ["sm_90"] and len(gpu.checked) == 1


def test_a_pinned_config_plan_does_not_depend_on_the_tuned_files(gpu):
    cfg = TEMPLATES["flash_fwd_simt"].default("sm_90", K("fp32", 64, False))
    q, k, v = qkv()
    autoflash.attention(q, k, v, config=cfg)
    store.write(gpu.folder / "sm_90.json", [make_entry(bucket=256, block_n=32)])
    autoflash.attention(q, k, v, config=cfg)
    assert len(gpu.checked) == 1
    autoflash.attention(q, k, v, config=cfg.to_dict())  # a dict is checked every time
    autoflash.attention(q, k, v, config=cfg.to_dict())
    assert len(gpu.checked) == 3


def test_what_a_plan_cannot_hold_is_checked_on_every_call(gpu):
    q, k, v = qkv()
    autoflash.attention(q, k, v)
    misaligned = fp32(q.shape, q.data.ptr + 8)
    with pytest.raises(InputError, match="16-byte aligned"):  # the full path's own message
        autoflash.attention(misaligned, k, v)
    sinks = FakeCupyArray((4,), "float32", ptr=4096, itemsize=4)
    autoflash.attention(q, k, v, sinks=sinks)
    autoflash.attention(q, k, v, sinks=sinks)  # variant calls have no plan
    with pytest.raises(InputError, match="scale must be a finite number, got True"):
        autoflash.attention(q, k, v, scale=True)
    with pytest.raises(InputError, match="scale must be a finite number"):
        autoflash.attention(q, k, v, scale=float("nan"))
    assert len(gpu.checked) == 6


def test_bad_calls_never_leave_a_plan(gpu):
    q, k, v = qkv()
    bad_k = fp32((2, 3, 256, 64), 1 << 25)
    for _ in range(2):
        with pytest.raises(InputError, match="multiple of key/value heads"):
            autoflash.attention(q, bad_k, bad_k)
    assert not call_plans._plans


def test_calls_on_another_device_take_the_full_path(gpu, monkeypatch):
    q, k, v = qkv()
    autoflash.attention(q, k, v)
    key = call_plans.call_key(q, k, v, False, "top_left", None, False, None, None)
    assert call_plans.run(key, q, k, v) is not None
    monkeypatch.setattr(frameworks.cupy().cuda.runtime, "getDevice", lambda: 1)
    assert call_plans.run(key, q, k, v) is None


# ------------------------------------------------------------ packed launches
def simt_plan(driver):
    kernel = fake_kernel(TEMPLATES["flash_fwd_simt"].default("sm_90", K("fp32", 64, True)))
    kernel.function.ptr = 0xABC
    return make_plan(kernel, Problem(2, 8, 2, 100, 50, 64, True, causal_offset=-50), 0.125)


def expected_bytes(args) -> list[bytes]:
    return [a.tobytes() for a in args]


def test_packed_arguments_are_the_ones_cupy_would_pass(driver):
    plan = simt_plan(driver)
    ptrs = (0x1000, 0x2000, 0x3000, 0x4000, 0x5000)
    packed = plan.packed(*ptrs)
    packed(ptrs, 0x77)
    (call,) = driver
    assert call["function"] == 0xABC and call["grid"] == plan.grid and call["smem"] == plan.smem
    assert call["stream"] == 0x77 and call["block"] == plan.block
    for i, raw in enumerate(expected_bytes(plan.args(*ptrs))):
        assert param_bytes(call["params"], i, len(raw)) == raw, i
    new = (0x11000, 0x12000, 0x13000, 0x14000, 0)
    packed(new, 0)
    for i, raw in enumerate(expected_bytes(plan.args(*new))):
        assert param_bytes(driver[-1]["params"], i, len(raw)) == raw, i
    assert plan.packed(*new) is packed  # built once per plan


@pytest.fixture
def fake_tma_maps(monkeypatch):
    """Tensor maps encoded without a driver: each map's 128 bytes repeat the pointer it names; the geometries
    encoded so far are returned (a list that grows); the flash_fwd_wgmma grid assumes 132 SMs."""
    made = []

    def fake_map(*geometry):
        made.append(geometry)
        m = tma.TensorMap()
        ctypes.memmove(m.address, geometry[0].to_bytes(8, "little") * 16, 128)
        return m

    monkeypatch.setattr(tma, "attention_operand_map", fake_map)
    monkeypatch.setattr(tma, "_QKV_CACHE", tma._MapCache(size=4))
    monkeypatch.setattr(forward_wgmma, "_sm_count", lambda: 132)
    return made


def test_packed_tma_maps_follow_q_k_v(fake_tma_maps, driver):
    made = fake_tma_maps
    kernel = fake_kernel(TEMPLATES["flash_fwd_wgmma"].default("sm_90a", K("bf16", 128, False)))
    kernel.function.ptr = 0xDEF
    plan = make_plan(kernel, Problem(2, 4, 2, 256, 512, 128, False), 0.1)
    first = (0x100000, 0x200000, 0x300000, 0x400000, 0)
    packed = plan.packed(*first)
    struct_slots = packed.launches[0].struct_slots
    assert len(struct_slots) == 3
    for ptrs in (first, first[:3] + (0x500000, 0), (0x600000,) + first[1:]):
        encoded = len(made)
        packed(ptrs, 0)
        args = plan.args(*ptrs)
        for i, a in enumerate(args):
            size = tma.TENSOR_MAP_BYTES if i in struct_slots else len(a.tobytes())
            want = ctypes.string_at(a.ptr, size) if i in struct_slots else a.tobytes()
            assert param_bytes(driver[-1]["params"], i, size) == want, (ptrs, i)
        assert param_bytes(driver[-1]["params"], struct_slots[0], 8) == ptrs[0].to_bytes(8, "little")
        if ptrs[1] == first[1] and ptrs[0] == first[0]:
            assert len(made) == encoded  # only o changed: the maps are the last call's


# ------------------------------------------------------------ benchmarks/host_overhead.py's report
def test_host_overhead_reports_the_bar_against_cudnn(tmp_path, capsys):
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).parent.parent / "benchmarks" / "host_overhead.py"
    spec = importlib.util.spec_from_file_location("host_overhead", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    row = lambda m: {"median": m, "min": m - 1, "max": m + 2}  # noqa: E731
    rows = {bench.ATTENTION: row(18.0), bench.DROP_IN: row(30.0), bench.CUDNN: row(24.0), bench.CUDNN_CTX: row(29.0),
            "config": "x (tuned)"}
    lines = bench.bar_lines(rows)
    assert len(lines) == 4 and "0.75x, at or below cuDNN" in lines[0] and "1.25x, ABOVE cuDNN" in lines[2]
    assert bench.fmt_host(row(18.0)) == "18.00 (17.00..20.00)" and bench.fmt_host("x") == "x"
    for label, scale in (("before", 2.0), ("after", 1.0)):
        data = {"label": label, "device": "GPU", "torch": "2.x",
                "host_us": {k: ({"median": v["median"] * scale, "min": 0, "max": 1} if isinstance(v, dict) else v)
                            for k, v in rows.items()}}
        (tmp_path / f"{label}.json").write_text(json.dumps(data))
    bench.compare(tmp_path / "before.json", tmp_path / "after.json")
    assert f"| {bench.ATTENTION} | 36.00 (0.00..1.00) | 18.00 (0.00..1.00) |" in capsys.readouterr().out


def test_a_thread_without_a_context_gets_the_primary_one(monkeypatch):
    current, freed = [0], []
    monkeypatch.setattr(loaded, "_context_calls", [lambda: current[0], freed.append])
    ENSURE_CONTEXT()
    assert freed == [0]  # none bound: cudaFree(0) binds the primary context
    current[0] = 0x1234
    ENSURE_CONTEXT()
    assert freed == [0]  # one bound: nothing to do
