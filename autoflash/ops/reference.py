"""Exact attention in high precision, and the check every kernel must pass.

Tolerances (relative Frobenius error ||out - ref|| / ||ref||, the reference in
float64 from the same, upcast inputs, so input rounding does not count):
  fp32  1e-4  fp32 accumulation and fast-math exp2 land near 1e-6; 1e-4 leaves
              room for long sequences without letting a wrong tile through.
  fp16  3e-3  the output is rounded to fp16 (RMS ~1.4e-4) and tensor-core templates
              round P to fp16 before P.V; measured errors stay under 1e-3.
  bf16  1e-2  bf16 has 8 significant bits: rounding the output alone gives ~1.1e-3
              RMS, rounding P as well ~3e-3.
The worst single query row may be off by WORST_ROW_FACTOR x the tolerance (a
short row norm amplifies rounding), and every value must be finite: outputs are
poisoned with NaN before a checked launch, so an unwritten element fails.
The log-sum-exp (natural log) must match to LSE_TOLERANCE in absolute terms; a row
that sees no key must be exactly 0 (its reference row is 0, so any other value is an
infinite row error) with LSE exactly -inf.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

TOLERANCE = {"fp32": 1e-4, "fp16": 3e-3, "bf16": 1e-2}
LSE_TOLERANCE = {"fp32": 1e-4, "fp16": 1e-3, "bf16": 1e-3}
WORST_ROW_FACTOR = 5.0


def reference_attention(q, k, v, *, causal: bool, scale: float | None = None, causal_offset: int = 0,
                        window: tuple[int, int] = (-1, -1), softcap: float = 0.0, sinks=None, alibi_slopes=None,
                        chunk: int = 1024):
    """Attention of (B, Hq, Nq, D) queries over (B, Hkv, Nk, D) keys/values in float64, each rule
    applied literally, in scaled-score units (s_ij = scale * q_i . k_j, natural log):

    - diagonal: query i's diagonal key is i + causal_offset (0: top-left, torch's is_causal;
      Nk - Nq: bottom-right, flash-attn's). causal, window and ALiBi all measure from it.
    - causal: key j visible iff j <= i + causal_offset.
    - window (left, right): key j visible iff i + off - left <= j <= i + off + right; -1 = unbounded.
    - softcap > 0: s -> softcap * tanh(s / softcap), before ALiBi and the masks.
    - alibi_slopes (Hq,) or (B, Hq): s -> s - slope * |i + off - j| (slope of the query head).
    - sinks (Hq,): e^sink joins the softmax denominator only; the LSE includes it.
    A row with no visible key: output 0, LSE = its sink (-inf without sinks).

    Works on NumPy (CPU) or CuPy (GPU) arrays. Returns (out, lse), lse in natural log. Query rows
    are processed in chunks so no Nq x Nk matrix is held at once.
    """
    xp = array_module(q)
    q, k, v = (xp.asarray(a, dtype=xp.float64) for a in (q, k, v))
    b, hq, nq, d = q.shape
    hkv, nk = k.shape[1], k.shape[2]
    group = hq // hkv
    k = xp.repeat(k, group, axis=1)  # GQA/MQA: each query head reads its group's K/V head
    v = xp.repeat(v, group, axis=1)
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    if alibi_slopes is not None:
        slopes = slopes_per_batch(xp, alibi_slopes, b, hq)[:, :, None, None]
    if sinks is not None:
        sink = xp.asarray(sinks, dtype=xp.float64).reshape(1, hq, 1, 1)
    keys = xp.arange(nk)[None, :]
    out = xp.empty((b, hq, nq, v.shape[-1]), dtype=xp.float64)  # V's head dim (Dv may differ from Dqk)
    lse = xp.empty((b, hq, nq), dtype=xp.float64)
    for start in range(0, nq, chunk):
        stop = min(nq, start + chunk)
        s = xp.einsum("bhqd,bhkd->bhqk", q[:, :, start:stop], k) * scale
        if softcap > 0:
            s = softcap * xp.tanh(s / softcap)
        diagonal = xp.arange(start, stop)[:, None] + causal_offset
        if alibi_slopes is not None:
            s = s - slopes * xp.abs(diagonal - keys)
        s = xp.where(visible_keys(diagonal, keys, causal=causal, window=window), s, -xp.inf)
        m = s.max(axis=-1, keepdims=True) if nk else xp.full(s.shape[:-1] + (1,), -xp.inf)
        if sinks is not None:
            m = xp.maximum(m, sink)
        safe_m = xp.where(xp.isneginf(m), 0.0, m)  # a row with nothing (and no finite sink): all terms 0
        p = xp.exp(s - safe_m)
        l = p.sum(axis=-1, keepdims=True)
        if sinks is not None:
            l = l + xp.exp(sink - safe_m)
        empty = l == 0
        out[:, :, start:stop] = xp.einsum("bhqk,bhkd->bhqd", p / xp.where(empty, 1.0, l), v)
        lse[:, :, start:stop] = xp.where(empty, -xp.inf, safe_m + xp.log(xp.where(empty, 1.0, l)))[..., 0]
    return out, lse


def array_module(a):
    """numpy, or cupy for a CuPy array (imported only then)."""
    if type(a).__module__.startswith("cupy"):
        import cupy

        return cupy
    return np


def visible_keys(diagonal, keys, *, causal: bool, window: tuple[int, int] = (-1, -1)):
    """The keys each query row sees, as reference_attention's rules say: diagonal (rows, 1) each
    row's diagonal key, keys (1, Nk) the key positions; causal: j <= diagonal; window (left,
    right): diagonal - left <= j <= diagonal + right, -1 unbounded. A (rows, Nk) bool mask."""
    xp = array_module(keys)
    left, right = window
    visible = xp.ones((diagonal.shape[0], keys.shape[1]), dtype=bool)
    if causal:
        visible &= keys <= diagonal
    if left >= 0:
        visible &= keys >= diagonal - left
    if right >= 0:
        visible &= keys <= diagonal + right
    return visible


def slopes_per_batch(xp, alibi_slopes, batch: int, heads_q: int):
    """ALiBi slopes (Hq,) (shared by the batch) or (B, Hq) as a float64 (B, Hq) array of module xp."""
    slopes = xp.asarray(alibi_slopes, dtype=xp.float64)
    return xp.broadcast_to(slopes.reshape((1, heads_q) if slopes.ndim == 1 else (batch, heads_q)),
                           (batch, heads_q))


@dataclass
class Check:
    """Outcome of comparing one kernel output with the reference."""

    dtype: str
    rel_error: float
    worst_row_error: float
    lse_error: float | None
    finite: bool

    @property
    def tolerance(self) -> float:
        return TOLERANCE[self.dtype]

    @property
    def passed(self) -> bool:
        ok = self.finite and self.rel_error <= self.tolerance
        ok = ok and self.worst_row_error <= WORST_ROW_FACTOR * self.tolerance
        if self.lse_error is not None:
            ok = ok and self.lse_error <= LSE_TOLERANCE[self.dtype]
        return bool(ok)

    def describe(self) -> str:
        verdict = "ok" if self.passed else "WRONG"
        lse = "" if self.lse_error is None else f", lse abs err {self.lse_error:.2e}"
        finite = "" if self.finite else ", NON-FINITE values"
        return (f"{verdict}: rel err {self.rel_error:.2e} (tol {self.tolerance:.0e}), "
                f"worst row {self.worst_row_error:.2e}{lse}{finite}")


def compare(out, ref, dtype: str, lse=None, ref_lse=None) -> Check:
    """Compare an output (any float array, CPU or GPU) with the float64 reference."""
    xp = array_module(ref)
    out = xp.asarray(out, dtype=xp.float64)
    finite = bool(xp.isfinite(out).all())
    if not finite:
        return Check(dtype, math.inf, math.inf, None, False)
    diff = out - ref
    rel = float(xp.linalg.norm(diff) / max(float(xp.linalg.norm(ref)), 1e-30))
    row_err = xp.linalg.norm(diff, axis=-1) / xp.maximum(xp.linalg.norm(ref, axis=-1), 1e-30)
    worst = float(row_err.max())
    lse_err = None
    if lse is not None:  # rows without a key (ref -inf) must be exactly -inf, every other row finite
        lse = xp.asarray(lse, dtype=xp.float64)
        ref_lse = xp.asarray(ref_lse, dtype=xp.float64)
        empty = xp.isneginf(ref_lse)
        if not bool((xp.isneginf(lse) == empty).all()) or not bool(xp.isfinite(lse[~empty]).all()):
            return Check(dtype, rel, worst, math.inf, False)
        lse_err = float(xp.abs(lse[~empty] - ref_lse[~empty]).max()) if bool((~empty).any()) else 0.0
    return Check(dtype, rel, worst, lse_err, True)
