"""attention()'s per-call plans: what a checked call decided, kept so that the next call with
the same arguments skips straight to the allocation and the launch.

A plan is stored (by serve/api.py) only after a call went through every check and launched the
forward kernel. Its key holds everything those checks and choices read except the data
pointers: each tensor's type, dtype, shape, strides and device, and the call's causal,
causal_alignment, scale, return_lse, config and the caller's tag (the torch drop-in keeps its
own plans, its own checks having passed). A hit re-checks what the key cannot hold: the
pointers' 16-byte alignment, that q's device is the current one, whether PyTorch wants gradients
(then attention() takes the autograd path, whose plans serve/training_plans.py keeps, built on these
ones), and, for a config chosen from tuned_configs/, that the tuned files are unchanged
(dispatch.recent_files_stamp: a change is seen within 0.1 s); any of those failing sends the call
down the full path, which gives the same answer or error as without plans. Variant calls (window, softcap, sinks, ALiBi), decode-routed calls, pinned dict configs,
array subclasses and foreign arrays always take the full path.

The launch goes through the plan's PackedSequence (kernels/packed_sequence.py): arguments packed once,
pointers written per call, one cuLaunchKernel.
"""
from __future__ import annotations

from autoflash.ops.forward_base import KernelConfig
from autoflash.serve import dispatch, frameworks, out_layout

MAX_PLANS = 1024  # distinct call signatures kept; past that the table starts over

_plans: dict[tuple, "CallPlan"] = {}
_signature_of: dict[type, object] = {}  # exact array type -> its signature function (registered on first store)
_SCALAR_TYPES = (type(None), float, int)


def _torch_signature(q, k, v) -> tuple:
    return (q.dtype, q.shape, q.stride(), q.device, k.dtype, k.shape, k.stride(), k.device,
            v.dtype, v.shape, v.stride(), v.device)


def _cupy_signature(q, k, v) -> tuple:
    return (q.dtype, q.shape, q.strides, q.device.id, k.dtype, k.shape, k.strides, k.device.id,
            v.dtype, v.shape, v.strides, v.device.id)


_NO_WINDOW = (-1, -1)


def plain(window_size, softcap, sinks, alibi_slopes) -> bool:
    """No attention variant asked for (only such calls have plans)."""
    return (softcap is None and sinks is None and alibi_slopes is None
            and (window_size is _NO_WINDOW or (type(window_size) is tuple and window_size == _NO_WINDOW)))


def served(tag, q, k, v, causal, causal_alignment, scale, return_lse, config, window_size, softcap, sinks,
           alibi_slopes):
    """The result of a call from its plan, or None: the caller takes the full path (no plan, a
    variant call, or a re-check failed)."""
    if not plain(window_size, softcap, sinks, alibi_slopes):
        return None
    return run(call_key(q, k, v, causal, causal_alignment, scale, return_lse, config, tag), q, k, v)


def call_key(q, k, v, causal, causal_alignment, scale, return_lse, config, tag) -> tuple | None:
    """The plan key of a call, or None for a call that never has a plan (array types without
    plans, mixed types, arguments of other types than the plain ones)."""
    t = type(q)
    signature = _signature_of.get(t)
    if (signature is None or type(k) is not t or type(v) is not t or type(causal) is not bool
            or type(causal_alignment) is not str or type(return_lse) is not bool or type(scale) not in _SCALAR_TYPES):
        return None
    if config is not None and type(config) is not KernelConfig:
        return None  # dicts are unhashable; decode configs are served by decode
    return (t, signature(q, k, v), causal, causal_alignment, scale, return_lse, config, tag)


class CallPlan:
    """What a call with this key does once checked: allocate out (and LSE), launch `plan`
    on q's device and stream. arch: the arch whose tuned files chose the config (None: pinned).
    out_order: the order of out's dims in memory the launch was planned with (serve/out_layout.py: under
    ops/backward_wgmma.STRIDED q's; None: contiguous); the key's q strides determine it."""

    __slots__ = ("kind", "device", "out_shape", "lse_shape", "plan", "arch", "stamp", "packed", "out_order")

    def __init__(self, kind: str, device: int, out_shape: tuple, lse_shape: tuple, plan, arch: str | None,
                 out_order: tuple | None = None):
        self.kind, self.device, self.plan, self.arch = kind, device, plan, arch
        self.out_shape, self.lse_shape, self.out_order = out_shape, lse_shape, out_order
        self.stamp = dispatch.files_stamp(arch) if arch is not None else None
        self.packed = None


def remember(entry: CallPlan, q, k, v, causal, causal_alignment, scale, return_lse, config, tag) -> None:
    """Keep the plan of a call that passed every check and launched (serve/api.py)."""
    _register(type(q), entry.kind)
    key = call_key(q, k, v, causal, causal_alignment, scale, return_lse, config, tag)
    if key is None:
        return
    if len(_plans) >= MAX_PLANS:
        _plans.clear()  # many distinct signatures: start over rather than track recency
    _plans[key] = entry


def _register(t: type, kind: str) -> None:
    """Only the exact framework array types have plans (a subclass may override what is read)."""
    if t in _signature_of:
        return
    if kind == "torch":
        import torch

        if t is torch.Tensor:
            _signature_of[t] = _torch_signature
    elif kind == "cupy":
        import cupy

        if t is cupy.ndarray:
            _signature_of[t] = _cupy_signature


def find(key: tuple | None) -> CallPlan | None:
    """The plan kept under key (serve/training_plans.py builds on the forward's)."""
    return None if key is None else _plans.get(key)


def run(key: tuple | None, q, k, v):
    """The result of a call with a stored plan, or None: no plan, or a re-check failed (the
    caller then takes the full path)."""
    if key is None:
        return None
    entry = _plans.get(key)
    if entry is None:
        return None
    if entry.kind == "torch":
        return _run_torch(entry, key[5], q, k, v)
    return _run_cupy(entry, key[5], q, k, v)


def _fresh(entry: CallPlan) -> bool:
    return entry.arch is None or dispatch.recent_files_stamp(entry.arch) == entry.stamp


def _run_torch(entry: CallPlan, return_lse: bool, q, k, v):
    if not ready(entry, q, k, v):
        return None
    torch = frameworks.torch()
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        return None  # attention() differentiates (serve/training_plans.py); attention_forward's callers never get here
    return launch_torch(entry, return_lse, q, k, v)


def ready(entry: CallPlan, q, k, v) -> bool:
    """A torch call with this plan's key may launch it: what the key cannot hold re-checked."""
    return not (q.data_ptr() | k.data_ptr() | v.data_ptr()) & 15 and _on_device(entry) and _fresh(entry)


def launch_torch(entry: CallPlan, return_lse: bool, q, k, v):
    """out (and lse) of a torch call that passed ready(): allocated, and the kernel launched."""
    out = q.new_empty(entry.out_shape) if entry.out_order is None else out_layout.empty_torch(q, entry.out_shape,
                                                                                               entry.out_order)
    lse = q.new_empty(entry.lse_shape, dtype=frameworks.torch().float32) if return_lse else None
    _launch(entry, (q.data_ptr(), k.data_ptr(), v.data_ptr()), out.data_ptr(), lse.data_ptr() if return_lse else 0,
            frameworks.raw_stream()(entry.device))
    return (out, lse) if return_lse else out


def _run_cupy(entry: CallPlan, return_lse: bool, q, k, v):
    cupy = frameworks.cupy()
    ptrs = q.data.ptr, k.data.ptr, v.data.ptr
    if (ptrs[0] | ptrs[1] | ptrs[2]) & 15 or not _on_device(entry) or not _fresh(entry):
        return None
    out = cupy.empty(entry.out_shape, dtype=q.dtype) if entry.out_order is None else out_layout.empty_cupy(
        cupy, entry.out_shape, entry.out_order, q.dtype)
    lse = cupy.empty(entry.lse_shape, dtype="float32") if return_lse else None
    _launch(entry, ptrs, out.data.ptr, lse.data.ptr if return_lse else 0, cupy.cuda.get_current_stream().ptr)
    return (out, lse) if return_lse else out


def _on_device(entry: CallPlan) -> bool:
    """q's device is the current one (else the full path switches devices around the launch)."""
    return frameworks.cupy().cuda.runtime.getDevice() == entry.device


def _launch(entry: CallPlan, ptrs: tuple, o: int, lse: int, stream_ptr: int) -> None:
    if entry.packed is None:
        entry.packed = entry.plan.packed(*ptrs, o, lse)
    entry.packed(ptrs + (o, lse), stream_ptr)


def clear() -> None:
    """Forget every plan (tests; a process never needs to)."""
    _plans.clear()
