"""O laid out like q under ops/backward_wgmma.STRIDED for CuPy arrays, without a GPU (tests/test_host_plans.py's faked
CuPy, kernels and driver): off, O is contiguous; on, a (B, N, H, D) view's O is allocated in that order (the full path
and the plan's), and the launch takes its strides. Torch tensors: tests/test_forward_o_layout.py."""
import types

import pytest

import autoflash
from autoflash.ops import backward_wgmma
from autoflash.serve import api, call_plans, frameworks

from test_host_path import no_context_binding  # noqa: F401  (an autouse fixture there, used here)
from test_host_plans import driver, gpu, qkv  # noqa: F401  (the fixtures)
from test_variants import FakeCupyArray

B, H, N, D = 2, 4, 256, 64
TRANSPOSED = (N * H * D * 4, D * 4, H * D * 4, 4)  # (B, N, H, D) fp32 memory seen as (B, H, N, D), bytes


class Array(FakeCupyArray):
    __module__ = "cupy._core.core"

    def transpose(self, axes):
        return Array(tuple(self.shape[a] for a in axes), self.dtype, ptr=self.data.ptr, itemsize=self.itemsize,
                     strides=tuple(self.strides[a] for a in axes))


class _Device:
    def __init__(self, index):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.fixture
def cupy_host(gpu, monkeypatch):  # noqa: F811
    fake = frameworks.cupy()
    monkeypatch.setattr(fake, "empty", lambda shape, dtype: Array(shape, str(dtype), ptr=1 << 30, itemsize=4))
    monkeypatch.setattr(fake.cuda, "Device", _Device, raising=False)
    made = []
    real = api._empty_in_order
    monkeypatch.setattr(api, "_empty_in_order", lambda *a: made.append(real(*a)) or made[-1])
    return types.SimpleNamespace(gpu=gpu, made=made)


@pytest.mark.parametrize("on", [False, True], ids=["off", "on"])
def test_cupy_view_gets_o_in_its_order(cupy_host, monkeypatch, on):
    monkeypatch.setattr(backward_wgmma, "STRIDED", on)
    outs = [autoflash.attention(*qkv(strides=TRANSPOSED)) for _ in range(3)]
    assert len(cupy_host.gpu.checked) == 1 and len(cupy_host.gpu.driver) == 2  # then the plan's launches
    (kernel,) = cupy_host.gpu.kernels.values()
    o_strides = tuple(int(a) for a in kernel.function.calls[0][2][20:23])  # the shared signature's O strides
    if on:
        assert len(cupy_host.made) == 1 and cupy_host.made[0].strides == TRANSPOSED  # the full path's O
        assert all(o.strides == TRANSPOSED for o in outs[1:])  # the plan's
        assert o_strides == tuple(s // 4 for s in TRANSPOSED[:3])
        assert next(iter(call_plans._plans.values())).out_order == (0, 2, 1, 3)
    else:
        assert not cupy_host.made and o_strides == (H * N * D, N * D, D)
        assert all(o.strides == (H * N * D * 4, N * D * 4, D * 4, 4) for o in outs[1:])
