"""The dense attention forward: O = softmax(Q K^T * scale) V, with its log-sum-exp.

Problem key: (dtype, head_dim, causal); bucket: the sequence length (Nq = Nk in the
timed problems). Templates: flash_fwd_simt (CUDA cores, every arch), flash_fwd_mma
(mma.sync, sm_80+), flash_fwd_wgmma (wgmma + TMA, sm_90a).
"""
from __future__ import annotations

from autoflash.kernels.archs import build_arch
from autoflash.kernels.elements import DTYPE_BYTES
from autoflash.kernels.registry import register_operation
from autoflash.ops import forward_launch
from autoflash.ops.base import Operation
from autoflash.ops.forward_base import KernelConfig, Problem
from autoflash.ops.forward_mma import MMA
from autoflash.ops.forward_simt import SIMT
from autoflash.ops.forward_wgmma import WGMMA

TOKENS = 131072  # batch * heads * N of the timed problems: enough blocks to fill an H100 at every bucket
MAX_HEADS = 16
# (batch, heads_q, heads_kv, seq_q, seq_k) every candidate must get right before it is timed:
# an odd length with a partial last tile and GQA (2 query heads per K/V head), and whole tiles.
CHECK_SHAPES = ((1, 4, 2, 1031, 1031), (2, 2, 2, 512, 512))
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
    key_fields = ("head_dim", "causal")
    key_defaults = {"head_dim": (64, 128), "causal": (False, True)}
    bucket_name = "N"
    default_buckets = (1024, 4096, 16384)
    metric = "tflops"
    default_tokens = TOKENS

    def describe_key(self, key: dict) -> str:
        return f"{key['dtype']} d{key['head_dim']} {'causal' if key['causal'] else 'non-causal'}"

    @staticmethod
    def problem(d: dict) -> Problem:
        return Problem(**d)

    def bench_problem(self, key: dict, bucket: int, tokens: int) -> dict:
        """batch * heads * N ~ tokens, so every bucket fills the GPU."""
        heads = max(1, min(MAX_HEADS, tokens // bucket))
        batch = max(1, tokens // (heads * bucket))
        return dict(batch=batch, heads_q=heads, heads_kv=heads, seq_q=bucket, seq_k=bucket,
                    head_dim=key["head_dim"], causal=key["causal"])

    def check_problems(self, key: dict) -> list[dict]:
        return [dict(batch=b, heads_q=hq, heads_kv=hkv, seq_q=nq, seq_k=nk, head_dim=key["head_dim"],
                     causal=key["causal"]) for b, hq, hkv, nq, nk in CHECK_SHAPES]

    def verify_problems(self, key: dict, bucket: int) -> list[dict]:
        """Its bucket, and an odd length (a partial last tile), with GQA."""
        return [dict(batch=1, heads_q=4, heads_kv=2, seq_q=n, seq_k=n, head_dim=key["head_dim"],
                     causal=key["causal"]) for n in (bucket, bucket // 2 + 1)]

    def work(self, problem: dict) -> float:
        return Problem(**problem).flops()

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
                tried.append(f"{name} supports head dims {list(template.head_dims)}")
                continue
            return template.default(use_arch, key)
        raise ValueError(f"no template supports {key['dtype']} head_dim={key['head_dim']} on {arch}"
                         + (": " + "; ".join(tried) if tried else ""))

    # ------------------------------------------------------------- GPU side
    def verify(self, kernel, problem: dict, seed: int):
        return forward_launch.run_checked(kernel, Problem(**problem), seed=seed)

    def input_bytes(self, problem: dict, dtype: str) -> int:
        p = Problem(**problem)
        return DTYPE_BYTES[dtype] * p.head_dim * (2 * p.batch * p.heads_q * p.seq_q + 2 * p.batch * p.heads_kv * p.seq_k)

    def make_inputs(self, problem: dict, dtype: str, seed: int):
        return forward_launch.timing_inputs(Problem(**problem), dtype, seed)

    def launcher(self, kernel, problem: dict, inputs):
        p = Problem(**problem)
        return forward_launch.prepared_launch(kernel, p, forward_launch.default_scale(p.head_dim), inputs)


FORWARD = ForwardOp()
register_operation(FORWARD)
__all__ = ["FORWARD", "ForwardOp", "KernelConfig", "Problem"]
