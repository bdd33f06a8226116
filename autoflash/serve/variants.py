"""The attention variants of issue 17 as the serving API takes them (flash-attn's names and
semantics): window_size, softcap, sinks, alibi_slopes. Checked here before any launch; the
kernels implement them as compile-time specialisations (KernelConfig window/softcap/sinks/alibi,
ops/forward_base.py), their meaning is ops/reference.py's float64 reference.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from autoflash.ops.forward_base import Problem
from autoflash.serve.errors import InputError

# What attention()/attention_varlen() document next to the arguments (one text, two docstrings).
VARIANTS_DOC = """    window_size=(left, right): sliding window (Mistral, Gemma, gpt-oss): query i sees key j iff
      diag - left <= j <= diag + right, diag = query i's diagonal key (see causal_alignment); -1 =
      unbounded on that side (the default (-1, -1): no window). With causal=True the right bound is
      0 whatever is passed (flash-attn's rule). Key tiles wholly outside the window are skipped.
    softcap: logit softcap (Gemma 2): scores s = scale * q.k become softcap * tanh(s / softcap)
      before ALiBi and the masks; None (default): no softcap; must be > 0.
    sinks: attention sinks (gpt-oss): a float32 (heads_q,) array on q's device, one logit per query
      head that joins the softmax denominator only: O_i = sum_j e^s_ij v_j / (sum_j e^s_ij + e^sink);
      the returned LSE includes it. -inf = no sink for that head.
    alibi_slopes: ALiBi (BLOOM, MPT): float32 (heads_q,) or (batch, heads_q) on q's device; scores
      get - slope * |diag - j| (flash-attn's sign and distance).
    The diagonal diag follows causal_alignment for window and ALiBi with or without causal:
    i (top_left) or i + seq_k - seq_q (bottom_right). A row that sees no key gives output 0 and
    LSE -inf (with a sink: LSE = the sink). Every variant combines with the others, causal, GQA
    and return_lse, and is differentiable for torch tensors: q, k, v and sinks (when they require
    grad) get gradients (softcap's exact, through the tanh); ALiBi slopes get none (constant)."""


@dataclass
class Variants:
    """Checked variant arguments: window bounds, softcap (0 = none) and the device pointers of
    sinks and slopes (0 = none; the arrays are kept so they outlive the launch)."""

    window_left: int = -1
    window_right: int = -1
    softcap: float = 0.0
    sinks: object = None
    sinks_ptr: int = 0
    alibi: object = None
    alibi_ptr: int = 0
    alibi_batch_stride: int = 0

    @property
    def any(self) -> bool:
        return any(self.flags().values())

    def flags(self) -> dict:
        """The KernelConfig flags (forward key fields) these variants need, in VARIANT_FLAGS order."""
        return {"window": self.window_left >= 0 or self.window_right >= 0, "softcap": self.softcap > 0,
                "sinks": self.sinks is not None, "alibi": self.alibi is not None}

    def names(self) -> list[str]:
        """The variants in use, as flash-attn's argument names (for messages)."""
        return [name for name, on in zip(("window_size", "softcap", "sinks", "alibi_slopes"), self.flags().values())
                if on]

    def apply(self, p: Problem) -> "Variants":
        """Set p's variant fields (the kernel arguments); returns self."""
        p.window_left, p.window_right, p.softcap = self.window_left, self.window_right, self.softcap
        p.sinks, p.alibi_slopes, p.alibi_batch_stride = self.sinks_ptr, self.alibi_ptr, self.alibi_batch_stride
        return self


def check_variants(window_size=(-1, -1), softcap=None, sinks=None, alibi_slopes=None, *, causal: bool,
                   kind: str, device: int, batch: int, heads_q: int) -> Variants:
    """The checked variants of one call, or InputError naming the bad argument. kind/device: q's
    ("torch" or "cupy", its GPU); batch/heads_q: the shapes sinks and slopes must match."""
    v = Variants()
    v.window_left, v.window_right = _window(window_size)
    if causal:  # flash-attn: causal forces the right bound to 0; without a left bound that is plain causal
        v.window_right = 0 if v.window_left >= 0 else -1
    if softcap is not None:
        if isinstance(softcap, bool) or not isinstance(softcap, (int, float)) or not (
                math.isfinite(softcap) and softcap > 0):
            raise InputError(f"softcap must be a finite number > 0 (or None for no softcap), got {softcap!r}")
        v.softcap = float(softcap)
    if sinks is not None:
        v.sinks, v.sinks_ptr, _ = _float_vector(sinks, "sinks", ((heads_q,),), kind, device)
    if alibi_slopes is not None:
        v.alibi, v.alibi_ptr, shape = _float_vector(alibi_slopes, "alibi_slopes", ((heads_q,), (batch, heads_q)),
                                                    kind, device)
        v.alibi_batch_stride = heads_q if len(shape) == 2 else 0
    return v


def _window(window_size) -> tuple[int, int]:
    try:
        left, right = window_size
    except (TypeError, ValueError):
        raise InputError(f"window_size must be a pair (left, right) of ints >= -1, got {window_size!r}") from None
    for name, x in (("left", left), ("right", right)):
        if isinstance(x, bool) or not isinstance(x, int) or x < -1:
            raise InputError(f"window_size {name} must be an int >= -1 (-1 = unbounded), got {x!r}")
        if x >= 2**31 - 1:
            raise InputError(f"window_size {name} {x} does not fit the kernel's 32-bit bounds (use -1 for unbounded)")
    return left, right


def _float_vector(x, name: str, shapes: tuple, kind: str, device: int):
    """(array, device pointer, shape) of a contiguous float32 device array of one of `shapes`, on
    q's device and of q's kind (a torch tensor for torch q, a CuPy array for CuPy q)."""
    mod = type(x).__module__
    want = " or ".join(str(s) for s in shapes)
    if mod.startswith("torch"):
        if kind != "torch":
            raise InputError(f"{name} is a torch tensor but q is a {kind} array; pass the same kind of array")
        if not x.is_cuda or x.get_device() != device:
            raise InputError(f"{name} is on {x.device}; it must be on q's device (cuda:{device})")
        if str(x.dtype) != "torch.float32":
            raise InputError(f"{name} must be float32, got {x.dtype} (pass {name}.float())")
        shape, contiguous, ptr = tuple(x.shape), x.is_contiguous(), x.data_ptr()
    elif mod.startswith("cupy"):
        if kind == "torch":
            raise InputError(f"{name} is a CuPy array but q is a torch tensor; pass a torch tensor")
        if x.device.id != device:
            raise InputError(f"{name} is on GPU {x.device.id}; it must be on q's device ({device})")
        if str(x.dtype) != "float32":
            raise InputError(f"{name} must be float32, got {x.dtype}")
        shape, contiguous, ptr = tuple(x.shape), bool(x.flags.c_contiguous), x.data.ptr
    else:
        raise InputError(f"{name} must be a float32 device array like q (a torch CUDA tensor or a CuPy array), "
                         f"got {type(x).__name__}")
    if shape not in shapes:
        raise InputError(f"{name} must have shape {want} (heads_q = q's query heads), got {shape}")
    if not contiguous:
        raise InputError(f"{name} must be contiguous (pass {name}.contiguous())")
    return x, ptr, shape
