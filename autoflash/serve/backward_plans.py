"""attention_backward()'s per-call plans (serve/autograd.py), as serve/call_plans.py keeps the
forward's: what a checked call decided, kept so that the next call with the same arguments skips
straight to the allocations and the launches.

A plan is stored only after a call went through every check and launched. Its key holds
everything those checks and choices read except the data pointers: each of the six tensors'
exact type, dtype, shape, strides and device, and the call's causal, causal_alignment, scale,
deterministic and config (None or a BackwardConfig). Only plain calls have plans (no window,
softcap, sinks or ALiBi; varlen is serve/varlen_grad.py's, never here). A hit re-checks what the
key cannot hold: the six pointers' 16-byte alignment, that the current device is the tensors'
(the full path switches devices around the launch), and, for a config chosen from tuned_configs/
(config=None), that the tuned files are unchanged since the choice (dispatch.recent_files_stamp: a
change is seen within 0.1 s). Any of those failing sends the call down the full path, which gives
the same answer or error as without plans.

The launches go through the BackwardLaunch's PackedSequence (kernels/packed_sequence.py): arguments
packed once, pointers written per call, one cuLaunchKernel each. The preprocess reads no gradient,
so it is launched before dq, dk, dv are allocated. Outputs: dq, dk, dv are three tensors, not views
of one buffer (a caller may keep, resize or free each alone), and the workspace is its own tensor
(dropped after the call: views of one storage would keep the fp32 dQ accumulator alive as long as
any gradient is kept).
"""
from __future__ import annotations

from autoflash.ops.backward_gpu import OUTPUTS
from autoflash.ops.backward_kernels import BackwardConfig
from autoflash.serve import dispatch, frameworks
from autoflash.serve.call_plans import plain  # only variant-free calls have plans, as the forward's

MAX_PLANS = 1024  # distinct call signatures kept; past that the table starts over

_plans: dict[tuple, "BackwardPlan"] = {}
_signature_of: dict[type, object] = {}  # exact tensor type -> its signature function (registered on first store)
_SCALAR_TYPES = (type(None), float, int)


def _torch_signature(q, k, v, out, lse, grad_out) -> tuple:
    return (q.dtype, q.shape, q.stride(), q.device, k.dtype, k.shape, k.stride(), k.device,
            v.dtype, v.shape, v.stride(), v.device, out.dtype, out.shape, out.stride(), out.device,
            lse.dtype, lse.shape, lse.stride(), lse.device,
            grad_out.dtype, grad_out.shape, grad_out.stride(), grad_out.device)


def call_key(q, k, v, out, lse, grad_out, causal, causal_alignment, scale, deterministic, config) -> tuple | None:
    """The plan key of a call, or None for a call that never has a plan (tensor types without
    plans, mixed types, arguments of other types than the plain ones)."""
    t = type(q)
    signature = _signature_of.get(t)
    if (signature is None or type(k) is not t or type(v) is not t or type(out) is not t or type(lse) is not t
            or type(grad_out) is not t or type(causal) is not bool or type(deterministic) is not bool
            or type(causal_alignment) is not str or type(scale) not in _SCALAR_TYPES):
        return None
    if config is not None and type(config) is not BackwardConfig:
        return None  # dicts are unhashable
    return (t, signature(q, k, v, out, lse, grad_out), causal, causal_alignment, scale, deterministic, config)


class BackwardPlan:
    """What a call with this key does once checked: allocate the workspace, launch the leading
    launches (the preprocess), allocate dq, dk, dv as q, k, v, launch the rest, on `device`'s
    current stream. arch: the arch whose tuned files chose the config (None: pinned); stamp: their
    state when it was chosen (read before the choice). strides: the gradients' strides where they are
    not contiguous (STRIDED views: torch.empty_like's of q, k, v), else None."""

    __slots__ = ("device", "launch", "packed", "leading", "offsets", "workspace_shape", "uint8", "shapes",
                 "arch", "stamp", "strides")

    def __init__(self, device: int, launch, shapes: tuple, arch: str | None, stamp: tuple | None,
                 strides: tuple | None = None):
        self.device, self.launch, self.shapes, self.arch, self.stamp = device, launch, shapes, arch, stamp
        self.strides = strides
        self.packed = launch.packed()
        self.leading = self.packed.leading(OUTPUTS)
        self.offsets = tuple(launch.offsets)
        self.workspace_shape = (max(launch.workspace_bytes, 256),)
        self.uint8 = frameworks.torch().uint8


def served(q, k, v, out, lse, grad_out, causal, causal_alignment, scale, deterministic, config, window_size,
           softcap, sinks, alibi_slopes):
    """(dq, dk, dv) of a call from its plan, or None: the caller takes the full path (no plan, a
    variant call, or a re-check failed)."""
    if not plain(window_size, softcap, sinks, alibi_slopes):
        return None
    key = call_key(q, k, v, out, lse, grad_out, causal, causal_alignment, scale, deterministic, config)
    if key is None:
        return None
    entry = _plans.get(key)
    return None if entry is None else run(entry, q, k, v, out, lse, grad_out)


def find(q, k, v, out, lse, grad_out, causal, causal_alignment, scale, deterministic) -> BackwardPlan | None:
    """The plan kept for a plain call with no pinned config (serve/training_plans.py holds on to it)."""
    key = call_key(q, k, v, out, lse, grad_out, causal, causal_alignment, scale, deterministic, None)
    return None if key is None else _plans.get(key)


def run(entry: BackwardPlan, q, k, v, out, lse, grad_out):
    """(dq, dk, dv) of a call with entry's key, or None when a re-check fails (then: the full path)."""
    ptrs = (q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(), lse.data_ptr(), grad_out.data_ptr())
    if ((ptrs[0] | ptrs[1] | ptrs[2] | ptrs[3] | ptrs[4] | ptrs[5]) & 15
            or frameworks.cupy().cuda.runtime.getDevice() != entry.device
            or (entry.arch is not None and dispatch.recent_files_stamp(entry.arch) != entry.stamp)):
        return None
    stream = frameworks.raw_stream()(entry.device)
    workspace = q.new_empty(entry.workspace_shape, dtype=entry.uint8)
    w = workspace.data_ptr()
    o = entry.offsets
    parts = (w + o[0], w + o[1], w + o[2], w + o[3], 0, 0, 0, 0, 0)  # lse2, delta, acc, sem; no variant, no varlen
    entry.packed(ptrs + (0, 0, 0) + parts, stream, 0, entry.leading)  # the preprocess reads no gradient
    if entry.strides is None:
        dq, dk, dv = q.new_empty(entry.shapes[0]), k.new_empty(entry.shapes[1]), v.new_empty(entry.shapes[2])
    else:
        s = entry.strides
        dq, dk, dv = (q.new_empty_strided(entry.shapes[0], s[0]), k.new_empty_strided(entry.shapes[1], s[1]),
                      v.new_empty_strided(entry.shapes[2], s[2]))
    entry.packed(ptrs + (dq.data_ptr(), dk.data_ptr(), dv.data_ptr()) + parts, stream, entry.leading)
    return dq, dk, dv


def remember(entry: BackwardPlan, q, k, v, out, lse, grad_out, causal, causal_alignment, scale, deterministic,
             config) -> None:
    """Keep the plan of a call that passed every check and launched (serve/autograd.py)."""
    _register(type(q))
    key = call_key(q, k, v, out, lse, grad_out, causal, causal_alignment, scale, deterministic, config)
    if key is None:
        return
    if len(_plans) >= MAX_PLANS:
        _plans.clear()  # many distinct signatures: start over rather than track recency
    _plans[key] = entry


def _register(t: type) -> None:
    """Only the exact torch.Tensor type has plans (a subclass may override what is read)."""
    if t not in _signature_of and t is frameworks.torch().Tensor:
        _signature_of[t] = _torch_signature


def clear() -> None:
    """Forget every plan (tests; a process never needs to)."""
    _plans.clear()
