"""One small launch of one template's kernel, checked against float64: the program
benchmarks/sanitize.sh runs under compute-sanitizer.

    python3 benchmarks/sanitize_run.py TARGET [--compile-only]

TARGET is a template (flash_fwd_simt, flash_fwd_mma, flash_fwd_wgmma), which runs a
tuned entry of tuned_configs/sm_90.json (the template's default where the file has
none), or fault_test_oob: the test-only kernel that writes out of bounds, a positive
control that shows the sanitizer sees into NVRTC cubins at all.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the test-only fault_test template lives with the tests

# (template, dtype, head_dim, causal, seq bucket) of the tuned entry each target runs
WANTED = {
    "flash_fwd_simt": ("fp32", 64, False, 1024),
    "flash_fwd_mma": ("bf16", 64, True, 1024),
    "flash_fwd_wgmma": ("bf16", 128, True, 4096),
}
# GQA (2 query heads per K/V head) and a length that leaves every tile size a partial last tile
SHAPE = dict(batch=1, heads_q=2, heads_kv=1, seq_q=333, seq_k=333)


def target_config(target: str):
    """(config, where it came from)."""
    from autoflash import store
    from autoflash.kernels.registry import TEMPLATES as VARIANTS

    if target == "fault_test_oob":
        import fault_test_template as fault_test

        return fault_test.config("oob"), "fault_test.config('oob')"
    dtype, head_dim, causal, bucket = WANTED[target]
    for e in store.read(ROOT / "tuned_configs" / "sm_90.json", "sm_90"):
        if (e["config"]["template"], e["dtype"], e["head_dim"], e["causal"], e["seq_bucket"]) == (
                target, dtype, head_dim, causal, bucket):
            from autoflash import KernelConfig

            return KernelConfig.from_dict(e["config"]), f"tuned_configs/sm_90.json (N={bucket})"
    return VARIANTS[target].default("sm_90", {"dtype": dtype, "head_dim": head_dim, "causal": causal}), "template default (no tuned entry)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", choices=[*WANTED, "fault_test_oob"])
    parser.add_argument("--compile-only", action="store_true", help="fill the compile cache, launch nothing")
    args = parser.parse_args()
    import fault_test_template as fault_test

    # registered only for the control; harmless otherwise
    ctx = fault_test.registered() if args.target == "fault_test_oob" else contextlib.nullcontext()
    with ctx:
        cfg, source = target_config(args.target)
        if args.compile_only:
            from autoflash.kernels.compile import compile_kernel

            compile_kernel(cfg)
            print(f"compiled {cfg.name}")
            return 0
        from autoflash.serve.api import loaded_kernel
        from autoflash.ops.forward_base import Problem
        from autoflash.ops.forward_launch import run_checked

        print(f"config {cfg.name} from {source}")
        p = Problem(**SHAPE, head_dim=cfg.head_dim, causal=cfg.causal)
        try:
            check = run_checked(loaded_kernel(cfg, 0), p)
        except Exception as exc:  # under memcheck a bad access ends the launch with an error
            print(f"RESULT error: {type(exc).__name__}: {str(exc)[:200]}")
            return 1
        print(f"RESULT {'pass' if check.passed else 'FAIL'}: rel err {check.rel_error:.1e}")
        return 0 if check.passed else 1


if __name__ == "__main__":
    sys.exit(main())
