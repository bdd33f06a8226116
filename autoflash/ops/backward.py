"""The attention backward as an operation (issue 16): dQ, dK, dV from Q, K, V, the forward's
O and LSE, and dO. The kernels, config, problem, input checks and tolerances are described in
backward_kernels.py; the GPU side (launch plan, float64 reference, checked launches) is
backward_gpu.py. This module ties them to the op contract and registers the operation; the
names callers use are re-exported here.
"""
from __future__ import annotations

from autoflash.kernels.elements import DTYPE_BYTES
from autoflash.kernels.registry import register_operation
from autoflash.ops import backward_gpu
from autoflash.ops import backward_wgmma
from autoflash.ops.backward_kernels import (TEMPLATE, TOLERANCE, BackwardConfig, BackwardProblem, TensorSpec,
                                            check_inputs, default_scale)
from autoflash.ops.base import Operation
from autoflash.ops.forward import (BENCH_SOFTCAP, BENCH_WINDOW, CHECK_SOFTCAPS, CHECK_WINDOWS, variant_arrays,
                                   variant_values)
from autoflash.ops.forward_base import VARIANT_FLAGS


class BackwardOperation(Operation):
    """The operation contract (autoflash/ops/base.py) for the backward."""

    name = "backward"
    config_class = BackwardConfig
    templates = (TEMPLATE, backward_wgmma.TEMPLATE)
    key_fields = ("head_dim", "causal", "deterministic") + VARIANT_FLAGS  # missing flags read False (key_flags.py)
    key_defaults = {f: (False,) for f in VARIANT_FLAGS}
    bucket_name = "N"
    default_buckets = (1024, 4096)
    metric = "tflops"

    def bench_problem(self, key: dict, bucket: int, tokens: int) -> dict:
        heads = 16
        window = (BENCH_WINDOW, 0 if key["causal"] else BENCH_WINDOW)
        return dict(batch=max(1, tokens // (bucket * heads)), heads_q=heads, heads_kv=heads, seq_q=bucket,
                    seq_k=bucket, head_dim=key["head_dim"], causal=key["causal"],
                    **variant_values(key, window, BENCH_SOFTCAP, alibi_batch=False))

    def check_problems(self, key: dict) -> list[dict]:
        """Odd lengths (masked tails), Nq != Nk both ways, one row, GQA and MQA; causal keys also
        bottom-right both ways (Nq > Nk: rows that see no key). A variant key's problems carry its
        variant with the forward's check values (ops/forward.py CHECK_WINDOWS, CHECK_SOFTCAPS)."""
        d, c = key["head_dim"], key["causal"]
        shapes = [(1, 2, 2, 17, 17), (1, 4, 2, 129, 77), (1, 2, 1, 77, 200), (2, 2, 2, 1, 65), (1, 3, 1, 64, 1)]
        problems = [dict(batch=b, heads_q=hq, heads_kv=hkv, seq_q=nq, seq_k=nk, head_dim=d, causal=c)
                    for b, hq, hkv, nq, nk in shapes]
        if c:
            problems += [dict(batch=1, heads_q=2, heads_kv=1, seq_q=nq, seq_k=nk, head_dim=d, causal=True,
                              causal_offset=nk - nq) for nq, nk in ((77, 200), (129, 65))]
        if any(key.get(f) for f in VARIANT_FLAGS):
            problems.append(dict(batch=1, heads_q=4, heads_kv=2, seq_q=300, seq_k=1031, head_dim=d, causal=c,
                                 causal_offset=731))
            for i, p in enumerate(problems):
                n = len(CHECK_WINDOWS)
                p.update(variant_values(key, CHECK_WINDOWS[i % n], CHECK_SOFTCAPS[i % n], alibi_batch=p["batch"] > 1))
        return problems

    def verify_problems(self, key: dict, bucket: int) -> list[dict]:
        d, c = key["head_dim"], key["causal"]
        return self.check_problems(key)[:2] + [dict(batch=1, heads_q=4, heads_kv=2, seq_q=bucket, seq_k=bucket,
                                                    head_dim=d, causal=c,
                                                    **variant_values(key, CHECK_WINDOWS[0], CHECK_SOFTCAPS[0], False))]

    def work(self, problem: dict) -> float:
        return BackwardProblem.from_dict(problem).flops()

    def default(self, arch: str, key: dict) -> BackwardConfig:
        return TEMPLATE.default(arch, key)

    # GPU side (CuPy, loaded there where used): backward_gpu.py.
    def verify(self, kernel, problem: dict, seed: int):
        return backward_gpu.verify(kernel, BackwardProblem.from_dict(problem), seed, **variant_arrays(problem, seed))

    def input_bytes(self, problem: dict, dtype: str) -> int:
        p = BackwardProblem.from_dict(problem)
        q_like = p.batch * p.heads_q * p.seq_q * p.head_dim
        kv_like = p.batch * p.heads_kv * p.seq_k * p.head_dim
        return DTYPE_BYTES[dtype] * (3 * q_like + 2 * kv_like) + 4 * p.batch * p.heads_q * p.seq_q

    def make_inputs(self, problem: dict, dtype: str, seed: int):
        return backward_gpu.make_inputs(BackwardProblem.from_dict(problem), dtype, seed,
                                        **variant_arrays(problem, seed))

    def launcher(self, kernel, problem: dict, inputs):
        return backward_gpu.launcher(kernel, BackwardProblem.from_dict(problem), inputs)


OPERATION = BackwardOperation()
register_operation(OPERATION)

__all__ = ["OPERATION", "TEMPLATE", "TOLERANCE", "BackwardConfig", "BackwardOperation", "BackwardProblem", "TensorSpec",
           "check_inputs", "default_scale"]
