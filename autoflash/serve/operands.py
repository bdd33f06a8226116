"""An array handed to autoflash as the kernels see it (Operand: pointer, shape, dtype, device,
element strides), and the checks every serving entry point applies to one: framework, device,
dtype, whole-element strides (as_operand), a contiguous head dim and 16-byte-aligned rows
(kernel_strides); and the softmax scale every entry point takes (check_scale)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from autoflash.ops.forward_base import MAX_TOKEN_STRIDE, stepped_strides  # noqa: F401  (MAX_TOKEN_STRIDE: api's name too)
from autoflash.serve.errors import InputError
from autoflash.serve.foreign import SUPPORTED_ARRAYS, foreign_view


@dataclass
class Operand:
    """A device array seen as a raw pointer plus what the kernel needs to know."""

    name: str
    kind: str  # "torch", "cupy", or the top-level module of a foreign array (e.g. "jax")
    obj: object  # the tensor, or for a foreign array its zero-copy CuPy view
    ptr: int
    shape: tuple
    dtype: str
    device: int
    wrap: object = None  # foreign arrays: turns a CuPy result into the caller's kind (None: CuPy)
    strides: tuple = ()  # element strides, one per dim


TORCH_DTYPES = {"torch.float32": "fp32", "torch.float16": "fp16", "torch.bfloat16": "bf16"}
_CUPY_DTYPES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}


def as_operand(x, name: str) -> Operand:
    mod = type(x).__module__
    if mod.startswith("torch"):
        if not x.is_cuda:
            raise InputError(f"{name} is on {x.device}; autoflash runs on CUDA tensors (use {name}.cuda())")
        dtype = TORCH_DTYPES.get(str(x.dtype))
        if dtype is None:
            raise InputError(f"{name} has dtype {x.dtype}; supported: float32, float16, bfloat16")
        return Operand(name, "torch", x, x.data_ptr(), tuple(x.shape), dtype, x.get_device(),
                       strides=tuple(x.stride()))
    if mod.startswith("numpy"):
        raise InputError(f"{name} is a NumPy array on the CPU; pass {SUPPORTED_ARRAYS}")
    kind, wrap = "cupy", None
    if not mod.startswith("cupy"):
        kind = {"jaxlib": "jax"}.get(mod.split(".")[0], mod.split(".")[0])  # JAX arrays' type lives in jaxlib
        x, wrap = foreign_view(x, name)
    dtype = _CUPY_DTYPES.get(str(x.dtype))
    if dtype is None:
        raise InputError(f"{name} has dtype {x.dtype}; supported: float32, float16, bfloat16")
    if any(s % x.itemsize for s in x.strides):
        raise InputError(f"{name}'s strides {x.strides} (bytes) are not whole elements; pass cupy.ascontiguousarray({name})")
    return Operand(name, kind, x, x.data.ptr, tuple(x.shape), dtype, x.device.id, wrap,
                   strides=tuple(s // x.itemsize for s in x.strides))


ELEMENT_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}
def kernel_strides(t: Operand) -> tuple[int, int, int]:
    """(batch, head, token) element strides of a (B, H, N, D) operand as the kernels take them:
    the head dim must be contiguous and each stride a multiple of 16 bytes (TMA and 16-byte
    vector loads), else InputError. A dim of size 1 is never stepped along, so its stride
    (arbitrary in PyTorch) is replaced by one that is valid for any kernel."""
    if t.strides[3] != 1 and t.shape[3] > 1:
        raise InputError(f"{t.name}'s head dim is not contiguous (strides {t.strides} elements); the kernels "
                         f"need stride 1 in the last dim: pass {t.name}.contiguous()")
    sb, sh, sn = stepped_strides(t.shape, t.strides)
    eb = ELEMENT_BYTES[t.dtype]
    if min(sb, sh, sn) < 0 or any((s * eb) % 16 for s in (sb, sh, sn)) or t.ptr % 16:
        raise InputError(f"{t.name}'s rows are not 16-byte aligned (strides {t.strides} elements of {eb} B, "
                         f"address {t.ptr:#x}): the batch, head and token strides must be non-negative multiples "
                         f"of {16 // eb} elements and the data pointer 16-byte aligned; pass {t.name}.contiguous()")
    if sn >= MAX_TOKEN_STRIDE:
        raise InputError(f"{t.name}'s token stride {sn} is too large (the kernels take < {MAX_TOKEN_STRIDE})")
    return (sb, sh, sn)


def check_scale(scale, head_dim: int, name: str = "scale") -> float:
    """The softmax scale as a float: None gives 1/sqrt(head_dim); anything but a finite int or
    float (a bool too) is an InputError naming the argument (`name`: the entry point's spelling)."""
    if scale is None:
        return 1.0 / math.sqrt(head_dim)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise InputError(f"{name} must be a finite number, got {scale!r}")
    return float(scale)
