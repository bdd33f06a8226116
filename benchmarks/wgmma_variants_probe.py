"""flash_fwd_wgmma variants and varlen on an H200 (issues 15, 17): compile the configs in a pool
of processes, then check each against the float64 reference (forward_launch.run_checked /
run_varlen_checked: fresh random inputs, NaN-poisoned outputs, LSE included) on dense shapes
(GQA, both diagonals, rows without a key) and packed varlen batches (bottom-right per sequence,
seqused_k, top-left). One line per failure, a pass/fail count per config last.

    AUTOFLASH_CACHE_DIR=/tmp/afcache PYTHONPATH=$PWD python3 benchmarks/wgmma_variants_probe.py [--compile-only]

Configs: D 128 (two consumer warpgroups) every flag subset; D 64 (three consumers plain/window/
sinks, two with softcap/ALiBi), fp16 D 64 and bf16 D 256 with no flag, each alone and all four;
both causalities.
"""
import argparse
import itertools
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor

from autoflash.kernels import compile as afc
from autoflash.kernels.registry import TEMPLATES
from autoflash.ops import forward_launch as fl
from autoflash.ops.forward_base import VARIANT_FLAGS

import variants_probe  # benchmarks/ (this script's folder): the checks both probes run

WG = TEMPLATES["flash_fwd_wgmma"]
# (batch, heads_q, heads_kv, seq_q, seq_k, causal_offset): square GQA, chunked prefill bottom-right,
# Nq > Nk bottom-right (rows without a key), several query tiles over a long key range
DENSE = [(2, 4, 2, 257, 257, 0), (1, 2, 1, 300, 1000, 700), (1, 2, 2, 1000, 300, -700), (1, 3, 1, 700, 2000, 0)]
LENS = ([1, 17, 300, 129, 64, 0, 700], [5, 17, 400, 129, 1, 3, 700])  # varlen (queries, keys) per sequence
USED = [3, 10, 250, 129, 1, 0, 600]  # seqused_k per sequence
SOFTCAP = 2.0  # small against the scores, so tanh bends them
WINDOW = (100, 37)  # narrower than a tile on the right, a tile and a half on the left


def configs() -> list:
    subsets = [dict(zip(VARIANT_FLAGS, bits)) for bits in itertools.product((False, True), repeat=4)]
    some = [s for s in subsets if sum(s.values()) in (0, 1, 4)]
    out = []
    for causal in (False, True):
        for dtype, d, flag_sets in (("bf16", 128, subsets), ("bf16", 64, some), ("fp16", 64, some),
                                    ("bf16", 256, some)):
            out += [WG.default("sm_90a", {"dtype": dtype, "head_dim": d, "causal": causal, **f}) for f in flag_sets]
    return out


def _compile(cfg):
    r = afc.compile_kernel(cfg).report
    return cfg.name, r.spills


def check_config(kernel, cfg) -> list[str]:
    """variants_probe's checks on this probe's shapes (several query tiles, a wider window)."""
    return variants_probe.check_config(kernel, cfg, DENSE, LENS, USED, WINDOW)


def worst_rows_capture():
    """Wrap forward_launch.compare so each check also prints its worst rows' reference norms and
    errors (tells a wrong row from a row whose true output is below the element type's range)."""
    compare = fl.compare

    def compare_and_report(out, ref, dtype, lse=None, ref_lse=None):
        check = compare(out, ref, dtype, lse, ref_lse)
        if not check.passed:
            xp = __import__("cupy")
            ref_norm = xp.linalg.norm(xp.asarray(ref), axis=-1)
            err = xp.linalg.norm(xp.asarray(out, dtype=xp.float64) - ref, axis=-1)
            rel = err / xp.maximum(ref_norm, 1e-30)
            for i in xp.argsort(rel.ravel())[-3:].get():
                print(f"  row {int(i)}: |ref| {float(ref_norm.ravel()[i]):.3e} |out - ref| {float(err.ravel()[i]):.3e}")
        return check

    fl.compare = compare_and_report


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--compile-only", action="store_true")
    ap.add_argument("--only", help="check only the configs whose name contains this")
    args = ap.parse_args()
    cfgs = [c for c in configs() if not args.only or args.only in c.name]
    worst_rows_capture()
    with ProcessPoolExecutor(min(16, multiprocessing.cpu_count()), mp_context=multiprocessing.get_context("spawn")) as ex:
        spilled = [(n, s) for n, s in ex.map(_compile, cfgs) if s]
    print(f"compiled {len(cfgs)} configs; spilling: {spilled or 'none'}", flush=True)
    if args.compile_only:
        return 0
    from autoflash.serve.api import loaded_kernel

    summary = []
    for cfg in cfgs:
        try:
            fails = check_config(loaded_kernel(cfg, 0), cfg)
        except Exception as exc:  # a launch error: report it, go on with the others
            fails = [f"{type(exc).__name__}: {str(exc)[:200]}"]
        for f in fails:
            print(f"FAIL {cfg.name}: {f}", flush=True)
        summary.append((cfg.name, len(fails)))
    bad = [n for n, f in summary if f]
    print(f"wgmma probe: {len(summary) - len(bad)}/{len(summary)} configs pass every check; failing: {bad or 'none'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
