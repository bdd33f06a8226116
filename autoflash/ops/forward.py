"""The dense attention forward: O = softmax(Q K^T * scale) V, with its log-sum-exp.

Problem key: (dtype, head_dim, causal, window, softcap, sinks, alibi, head_dim_v); head_dim_v 0 =
head_dim (a key or entry without it reads 0), else V's head dim (flash_fwd_mma and flash_fwd_simt;
the checked and timed problems carry it, v and o built with it); bucket: the sequence
length (Nq = Nk in the timed problems). A variant key's problems carry that variant with the
values below (VARIANT_VALUES): what is checked and timed is the variant on real values. Templates: flash_fwd_simt (CUDA cores, every arch), flash_fwd_mma
(mma.sync, sm_80+), flash_fwd_wgmma (wgmma + TMA, sm_90a).
"""
from __future__ import annotations

import numpy as np

from autoflash.kernels.archs import build_arch
from autoflash.kernels.elements import DTYPE_BYTES
from autoflash.kernels.registry import register_operation
from autoflash.kernels.template import spell_values
from autoflash.ops import forward_launch
from autoflash.ops.base import Operation
from autoflash.ops.forward_base import VARIANT_FLAGS, KernelConfig, Problem
from autoflash.ops.forward_mma import MMA
from autoflash.ops.forward_simt import SIMT
from autoflash.ops.forward_wgmma import WGMMA

TOKENS = 131072  # batch * heads * N of the timed problems: enough blocks to fill an H100 at every bucket
MAX_HEADS = 16
# (batch, heads_q, heads_kv, seq_q, seq_k) every candidate must get right before it is timed:
# an odd length with a partial last tile and GQA (2 query heads per K/V head), and whole tiles.
CHECK_SHAPES = ((1, 4, 2, 1031, 1031), (2, 2, 2, 512, 512))
# A variant key's checks add a bottom-right problem (Nq < Nk: the diagonal off the corner).
VARIANT_CHECK_SHAPE = (1, 4, 2, 300, 1031)
# Values each variant is checked with (one per check problem, cycling): windows narrow and wide,
# left-only and two-sided (a causal key forces the right bound to 0, as the API does); softcap 30
# (Gemma 2) and 2 (bends most scores); sinks standard normal per head; ALiBi's geometric slopes,
# per head and per (batch, head).
CHECK_WINDOWS = ((64, 0), (256, 32), (17, -1))
CHECK_SOFTCAPS = (30.0, 2.0, 50.0)
ARRAY_REQUESTS = ("with_sinks", "with_alibi", "alibi_per_batch")  # problem-dict keys, not Problem fields
BENCH_WINDOW = 1024  # left (and, non-causal, right) bound of the timed window problems
BENCH_SOFTCAP = 30.0
# Template preference per dtype for the heuristic default: the first that supports
# the arch, dtype and head dim wins.
PREFERENCE = {
    "fp32": ("flash_fwd_simt",),
    "fp16": ("flash_fwd_wgmma", "flash_fwd_mma", "flash_fwd_simt"),
    "bf16": ("flash_fwd_wgmma", "flash_fwd_mma", "flash_fwd_simt"),
}


class ForwardOp(Operation):
    name = "forward"
    config_class = KernelConfig
    templates = (SIMT, MMA, WGMMA)
    key_fields = ("head_dim", "causal") + VARIANT_FLAGS + ("head_dim_v",)
    key_defaults = {"head_dim": (64, 128), "causal": (False, True), **{f: (False,) for f in VARIANT_FLAGS},
                    "head_dim_v": (0,)}
    bucket_name = "N"
    default_buckets = (1024, 4096, 16384)
    metric = "tflops"
    default_tokens = TOKENS

    def describe_key(self, key: dict) -> str:
        variants = "".join(f" {f}" for f in VARIANT_FLAGS if key.get(f))
        dv = f"/{key['head_dim_v']}" if key.get("head_dim_v") else ""
        return f"{key['dtype']} d{key['head_dim']}{dv} {'causal' if key['causal'] else 'non-causal'}{variants}"

    @staticmethod
    def problem(d: dict) -> Problem:
        """A problem dict (plain data) as a Problem; ARRAY_REQUESTS ask for arrays the launcher
        allocates (variant_arrays), so they are not Problem fields."""
        return Problem(**{f: v for f, v in d.items() if f not in ARRAY_REQUESTS})

    def bench_problem(self, key: dict, bucket: int, tokens: int) -> dict:
        """batch * heads * N ~ tokens, so every bucket fills the GPU."""
        heads = max(1, min(MAX_HEADS, tokens // bucket))
        batch = max(1, tokens // (heads * bucket))
        window = (BENCH_WINDOW, 0 if key["causal"] else BENCH_WINDOW)
        return dict(batch=batch, heads_q=heads, heads_kv=heads, seq_q=bucket, seq_k=bucket,
                    head_dim=key["head_dim"], causal=key["causal"], **_dim_v(key),
                    **variant_values(key, window, BENCH_SOFTCAP, alibi_batch=False))

    def check_problems(self, key: dict) -> list[dict]:
        shapes = CHECK_SHAPES + ((VARIANT_CHECK_SHAPE,) if any(key.get(f) for f in VARIANT_FLAGS) else ())
        return [with_offset(dict(batch=b, heads_q=hq, heads_kv=hkv, seq_q=nq, seq_k=nk, head_dim=key["head_dim"],
                                 causal=key["causal"], **_dim_v(key),
                                 **variant_values(key, CHECK_WINDOWS[i], CHECK_SOFTCAPS[i], alibi_batch=i == 1)))
                for i, (b, hq, hkv, nq, nk) in enumerate(shapes)]

    def verify_problems(self, key: dict, bucket: int) -> list[dict]:
        """Its bucket, and an odd length (a partial last tile), with GQA."""
        return [dict(batch=1, heads_q=4, heads_kv=2, seq_q=n, seq_k=n, head_dim=key["head_dim"],
                     causal=key["causal"], **_dim_v(key),
                     **variant_values(key, CHECK_WINDOWS[i], CHECK_SOFTCAPS[i], alibi_batch=False))
                for i, n in enumerate((bucket, bucket // 2 + 1))]

    def work(self, problem: dict) -> float:
        return self.problem(problem).flops()

    def entry_problem(self, problem: dict) -> dict:
        return {"batch": problem["batch"], "heads": problem["heads_q"], "seq": problem["seq_q"]}

    def default(self, arch: str, key: dict) -> KernelConfig:
        tried = []
        for name in PREFERENCE[key["dtype"]]:
            template = next(t for t in self.templates if t.name == name)
            use_arch = build_arch(template.archs, arch)
            if use_arch is None or key["dtype"] not in template.dtypes:
                continue
            if key["head_dim"] not in template.head_dims:
                tried.append(f"{name} supports head dims {spell_values(template.head_dims)}")
                continue
            if key.get("head_dim_v", 0) not in template.head_dims_v:
                tried.append(f"{name} supports V head dims {spell_values(template.head_dims_v)} (0: Q/K's)")
                continue
            return template.default(use_arch, key)
        raise ValueError(f"no template supports {key['dtype']} head_dim={key['head_dim']} on {arch}"
                         + (": " + "; ".join(tried) if tried else ""))

    # ------------------------------------------------------------- GPU side
    def verify(self, kernel, problem: dict, seed: int):
        return forward_launch.run_checked(kernel, self.problem(problem), seed=seed, **variant_arrays(problem, seed))

    def input_bytes(self, problem: dict, dtype: str) -> int:
        p = self.problem(problem)
        return DTYPE_BYTES[dtype] * (p.batch * p.heads_q * p.seq_q * (p.head_dim + p.dim_v)
                                     + p.batch * p.heads_kv * p.seq_k * (p.head_dim + p.dim_v))

    def make_inputs(self, problem: dict, dtype: str, seed: int):
        return forward_launch.timing_inputs(self.problem(problem), dtype, seed, **variant_arrays(problem, seed))

    def launcher(self, kernel, problem: dict, inputs):
        p = self.problem(problem)
        return forward_launch.prepared_launch(kernel, p, forward_launch.default_scale(p.head_dim), inputs)


def _dim_v(key: dict) -> dict:
    """V's head dim in a problem dict only when the key has one (plain problems stay as they were)."""
    return {"head_dim_v": key["head_dim_v"]} if key.get("head_dim_v") else {}


def variant_values(key: dict, window: tuple[int, int], softcap: float, alibi_batch: bool) -> dict:
    """The Problem values (and array requests) of a key's variants: the plain key gets none."""
    values = {}
    if key.get("window"):
        values.update(window_left=window[0], window_right=0 if key["causal"] else window[1])
    if key.get("softcap"):
        values["softcap"] = softcap
    if key.get("sinks"):
        values["with_sinks"] = True
    if key.get("alibi"):
        values["with_alibi"] = True
        values["alibi_per_batch"] = alibi_batch  # slopes (B, Hq) rather than (Hq,)
    return values


def with_offset(problem: dict) -> dict:
    """A problem with Nq != Nk checks the bottom-right diagonal (flash-attn's alignment)."""
    if problem["seq_k"] != problem["seq_q"]:
        problem["causal_offset"] = problem["seq_k"] - problem["seq_q"]
    return problem


def variant_arrays(problem: dict, seed: int) -> dict:
    """Host values of the sinks (standard normal per query head) and ALiBi slopes (geometric; per
    (batch, head) when asked, scaled per batch so rows differ) a problem dict asks for."""
    arrays = {}
    if problem.get("with_sinks"):
        arrays["sinks"] = np.random.default_rng(seed).standard_normal(problem["heads_q"]).astype(np.float32)
    if problem.get("with_alibi"):
        slopes = forward_launch.alibi_slopes(problem["heads_q"])
        if problem.get("alibi_per_batch"):
            slopes = np.outer(1.0 + np.arange(problem["batch"]), slopes).astype(np.float32)
        arrays["alibi_slopes"] = slopes
    return arrays


FORWARD = ForwardOp()
register_operation(FORWARD)
__all__ = ["FORWARD", "ForwardOp", "KernelConfig", "Problem"]
