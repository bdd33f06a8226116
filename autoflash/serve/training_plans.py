"""Call plans for attention() on inputs that require grad (training), and for the torch drop-in's
eager training calls: what a checked differentiable call decided, kept so that the next call
with the same arguments goes straight to the autograd Function, whose forward launches the
forward's call plan and whose backward launches the backward's plan.

A training plan is kept (by serve/api.py, integrations/torch.py) only after a differentiable call
went through every check and its forward kept a forward plan (serve/call_plans.py); only calls
whose q, k, v were contiguous (the full path would copy them; with ops/backward_wgmma.STRIDED also views the
backward reads in place) and plain (no variant). Its key is
the forward plan key of the call as the caller sees it (tensor types, dtypes, shapes, strides,
devices; causal, causal_alignment, scale, return_lse, config, the caller's tag) and
deterministic. A hit re-checks what the key cannot hold: that PyTorch wants gradients (grad mode
on, an input requiring grad: else the call is an inference one), and what the forward plan
re-checks (pointer alignment, the current device, the tuned files). The backward holds on to the
backward plan (serve/backward_plans.py) the first backward kept: its key differs from the forward's
only in grad_out, which a hit checks against that backward's grad_out dtype, shape, strides and device before
running it (its own re-checks: alignment, device, tuned files); anything else goes through
attention_backward (the full checks, or its plan table). The O the backward reads is the forward plan's
(CallPlan.out_order: under STRIDED laid out like q), so the backward plan is kept for, and hit with, that layout.
"""
from __future__ import annotations

import functools

from autoflash.serve import backward_plans, call_plans, frameworks
from autoflash.serve.autograd import attention_backward, kernel_ready

MAX_PLANS = 1024  # distinct call signatures kept; past that the table starts over

_plans: dict[tuple, "TrainingPlan"] = {}


class TrainingPlan:
    """forward: the forward's CallPlan (with LSE); backward: the BackwardPlan of this call's backward
    once one ran (None before), for grad_outs of g_layout (dtype, shape, strides, device); causal,
    causal_alignment, scale, deterministic: the backward's arguments."""

    __slots__ = ("forward", "backward", "g_layout", "causal", "causal_alignment", "scale", "deterministic")

    def __init__(self, forward, causal: bool, causal_alignment: str, scale, deterministic: bool):
        self.forward, self.backward, self.g_layout = forward, None, None
        self.causal, self.causal_alignment = causal, causal_alignment
        self.scale, self.deterministic = scale, deterministic


def run(key: tuple | None, deterministic, q, k, v):
    """The differentiable result of a call whose forward plan key is `key`, or None: the caller
    takes the full path (no plan, no gradient wanted, or a re-check failed)."""
    if key is None or type(deterministic) is not bool:
        return None
    entry = _plans.get((key, deterministic))
    if entry is None:
        return None
    if not (frameworks.torch().is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)):
        return None
    if not call_plans.ready(entry.forward, q, k, v):
        return None
    out, lse = planned_function().apply(entry, q, k, v)
    return (out, lse) if key[5] else out  # key[5]: return_lse (call_plans.call_key)


def remember(key: tuple | None, forward_key: tuple | None, deterministic, causal, causal_alignment: str,
             scale) -> None:
    """Keep the plan of a differentiable call that passed every check (key: its forward plan key as
    the caller computes it; forward_key: the key its forward plan was kept under)."""
    forward = call_plans.find(forward_key)
    if key is None or forward is None or forward.kind != "torch" or type(deterministic) is not bool:
        return
    if len(_plans) >= MAX_PLANS:
        _plans.clear()  # many distinct signatures: start over rather than track recency
    _plans[(key, deterministic)] = TrainingPlan(forward, bool(causal), causal_alignment, scale, deterministic)


def function_forward(ctx, entry: TrainingPlan, q, k, v):
    """The Function's forward: the forward plan's launch; O and the LSE saved (never P)."""
    out, lse = call_plans.launch_torch(entry.forward, True, q, k, v)
    ctx.save_for_backward(q, k, v, out, lse)
    ctx.mark_non_differentiable(lse)
    ctx.entry = entry
    return out, lse


def function_backward(ctx, grad_out, _grad_lse):
    """The Function's backward: the kept backward plan when grad_out is laid out as when it was kept (as out, or
    with ops/backward_wgmma.STRIDED e.g. a transposed view), else attention_backward."""
    q, k, v, out, lse = ctx.saved_tensors
    g = kernel_ready(grad_out)
    entry = ctx.entry
    layout = (g.dtype, g.shape, g.stride(), g.device)
    if entry.backward is not None and layout == entry.g_layout:  # the backward plan's key, but for the pointers
        grads = backward_plans.run(entry.backward, q, k, v, out, lse, g)
        if grads is not None:
            return None, *grads
    grads = attention_backward(q, k, v, out, lse, g, causal=entry.causal, causal_alignment=entry.causal_alignment,
                               scale=entry.scale, deterministic=entry.deterministic)
    if entry.backward is None:
        entry.backward = backward_plans.find(q, k, v, out, lse, g, entry.causal, entry.causal_alignment,
                                             entry.scale, entry.deterministic)
        entry.g_layout = layout
    return None, *grads


@functools.cache
def planned_function():
    """The torch.autograd.Function of planned calls (built on first use: defining it imports torch)."""
    torch = frameworks.torch()

    class PlannedAttention(torch.autograd.Function):
        forward = staticmethod(function_forward)
        backward = staticmethod(function_backward)

    return PlannedAttention


def clear() -> None:
    """Forget every plan (tests; a process never needs to)."""
    _plans.clear()
