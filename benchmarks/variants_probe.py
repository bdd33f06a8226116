"""flash_fwd_mma / flash_fwd_simt variants and varlen on the GPU (issues 15, 17): correctness of
every flag combination against the float64 reference, then plain vs window/softcap time per
visible pair.

    PYTHONPATH=$PWD python3 benchmarks/variants_probe.py [--quick]

1. Compiles every config first in a pool of processes (the disk cache then serves the checks).
2. Checks (forward_launch.run_checked / run_varlen_checked: fresh random inputs, NaN-poisoned
   outputs, LSE included): for each config, each shape of DENSE (GQA, Nq != Nk both ways: the
   bottom-right diagonal off the corner and rows with no key) with the config's variants on, then
   packed varlen batches (bottom-right per sequence, seqused_k, top-left). One line per failure,
   a pass/fail count per (template, flags) last.
3. (run first, after compiling) Times the mma default (bf16 D 128) plain vs window (1024, 0) causal and softcap 30, N = 16384:
   TFLOP/s counting visible pairs (CUDA events, median of 20 after warm-up).
"""
import argparse
import itertools
import multiprocessing
import os
import statistics
from concurrent.futures import ProcessPoolExecutor

os.environ.setdefault("AUTOFLASH_CACHE_DIR", "/tmp/autoflash-cache")

from autoflash.kernels import compile as afc  # noqa: E402
from autoflash.kernels.device import device_arch  # noqa: E402
from autoflash.kernels.registry import TEMPLATES  # noqa: E402
from autoflash.ops.forward_base import VARIANT_FLAGS, Problem  # noqa: E402
from autoflash.ops import forward_launch as fl  # noqa: E402

# (batch, heads_q, heads_kv, seq_q, seq_k, causal_offset); offset seq_k - seq_q: bottom-right
DENSE = [(2, 4, 2, 257, 257, 0), (1, 2, 1, 300, 1000, 700), (1, 2, 2, 1000, 300, -700), (1, 3, 1, 17, 1000, 0)]
LENS = ([1, 17, 300, 129, 64], [5, 17, 400, 129, 1])  # varlen (queries, keys) per sequence
SOFTCAP = 2.0  # small against N(0, 1) scores, so tanh bends them


def log(*a):
    print(*a, flush=True)


def configs(arch: str, quick: bool):
    """(label, config) pairs: mma D 128 default every flag subset, D 64 and a pipelined (stages 3)
    config each flag alone and all four, simt fp32 D 64 the same, simt bf16 D 128 all four."""
    mma, simt = TEMPLATES["flash_fwd_mma"], TEMPLATES["flash_fwd_simt"]
    subsets = [dict(zip(VARIANT_FLAGS, bits)) for bits in itertools.product((False, True), repeat=4)]
    some = [s for s in subsets if sum(s.values()) in (0, 1, 4)]
    out = []
    for causal in (False, True):
        key = lambda dt, d: {"dtype": dt, "head_dim": d, "causal": causal}  # noqa: E731
        bases = [("mma d128", mma.default(arch, key("bf16", 128)), subsets if not quick else some),
                 ("mma d64", mma.default(arch, key("bf16", 64)), some),
                 ("mma d64 s3", mma.config(arch, key("bf16", 64), block_m=128, block_n=32, warps=4, stages=3), some),
                 ("simt fp32 d64", simt.default(arch, key("fp32", 64)), some),
                 ("simt bf16 d128", simt.default(arch, key("bf16", 128)), [subsets[0], subsets[-1]])]
        for label, base, flag_sets in bases:
            out += [(label, base.replace(**flags)) for flags in flag_sets]
    return out


def _compile(cfg):
    r = afc.compile_kernel(cfg).report
    return cfg.name, r.registers, r.spills


WINDOW = (64, 37)  # (left, right); right is 0 for causal configs
USED = [3, 10, 250, 129, 1]  # seqused_k per sequence of LENS


def values(cfg, window=WINDOW) -> dict:
    """The Problem values of the config's variants (window, softcap)."""
    v = {}
    if cfg.window:
        v.update(window_left=window[0], window_right=0 if cfg.causal else window[1])
    if cfg.softcap:
        v["softcap"] = SOFTCAP
    return v


def arrays(cfg, batch: int, heads_q: int, per_batch: bool) -> dict:
    """Host sinks (N(0, 4) per query head) and ALiBi slopes ((Hq,) or (B, Hq)) the config needs."""
    import numpy as np

    a = {}
    if cfg.sinks:
        a["sinks"] = np.random.default_rng(1).standard_normal(heads_q).astype(np.float32) * 2
    if cfg.alibi:
        s = fl.alibi_slopes(heads_q)
        a["alibi_slopes"] = np.outer(1.0 + np.arange(batch), s).astype(np.float32) if per_batch else s
    return a


def check_config(kernel, cfg, dense=DENSE, lens=LENS, used=USED, window=WINDOW) -> list[str]:
    """Failures (one line each) of one config on every dense shape and the varlen batches
    (bottom-right per sequence, with seqused_k, top-left). benchmarks/wgmma_variants_probe.py
    calls it with its own shapes."""
    fails = []
    v = values(cfg, window)
    for i, (b, hq, hkv, nq, nk, off) in enumerate(dense):
        p = Problem(b, hq, hkv, nq, nk, cfg.head_dim, cfg.causal, causal_offset=off, **v)
        c = fl.run_checked(kernel, p, seed=i, **arrays(cfg, b, hq, per_batch=(i == 0)))
        if not c.passed:
            fails.append(f"dense {(b, hq, hkv, nq, nk, off)}: {c.describe()}")
    win = (v.get("window_left", -1), v.get("window_right", -1))
    for j, (br, seqused) in enumerate(((True, None), (True, used), (False, None))):
        c = fl.run_varlen_checked(kernel, lens[0], lens[1], 4, 2, bottom_right=br, seqused_k=seqused, seed=10 + j,
                                  window=win, softcap=v.get("softcap", 0.0),
                                  **arrays(cfg, len(lens[0]), 4, per_batch=(j == 1)))
        if not c.passed:
            fails.append(f"varlen bottom_right={br} seqused_k={seqused}: {c.describe()}")
    return fails


def time_ms(run, reps=20):
    import cupy

    for _ in range(3):
        run()
    s, e = cupy.cuda.Event(), cupy.cuda.Event()
    times = []
    for _ in range(reps):
        s.record()
        run()
        e.record()
        e.synchronize()
        times.append(cupy.cuda.get_elapsed_time(s, e))
    return statistics.median(times), min(times), max(times)


def timing(arch: str, loaded):
    mma = TEMPLATES["flash_fwd_mma"]
    n, b, h, d = 16384, 1, 16, 128
    rows = []
    cases = [("plain", False, {}), ("plain", True, {}),
             ("window (1024, 0)", True, dict(window_left=1024, window_right=0)),
             ("softcap 30", False, dict(softcap=30.0)), ("softcap 30", True, dict(softcap=30.0))]
    for label, causal, extra in cases:
        p = Problem(b, h, h, n, n, d, causal, **extra)
        cfg = mma.default(arch, {"dtype": "bf16", "head_dim": d, "causal": causal}).replace(**p.variant_flags())
        kernel = loaded(cfg)
        inputs = fl.timing_inputs(p, "bf16", 0)
        run = fl.prepared_launch(kernel, p, fl.default_scale(d), inputs)
        med, lo, hi = time_ms(run)
        pairs = p.visible_pairs() if p.variant_flags()["window"] else (n * (n + 1) // 2 if causal else n * n)
        tflops = 4.0 * b * h * d * pairs / (med * 1e-3) / 1e12
        rows.append((label + (" causal" if causal else ""), cfg.name, med, lo, hi, tflops))
    log("\n| mma bf16 D128 N16384 B1 H16 | config | ms (median) | min-max | TFLOP/s per visible pair |")
    log("|---|---|---|---|---|")
    for label, name, med, lo, hi, tf in rows:
        log(f"| {label} | {name} | {med:.3f} | {lo:.3f}-{hi:.3f} | {tf:.1f} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-timing", action="store_true")
    args = ap.parse_args()
    import cupy

    from autoflash.kernels.loaded import LoadedKernel

    arch, _ = device_arch(0)
    arch = "sm_90" if arch.startswith("sm_90") else arch
    cfgs = configs(arch, args.quick)
    spawn = multiprocessing.get_context("spawn")  # the parent has a CUDA context: never fork it
    with ProcessPoolExecutor(max_workers=min(16, os.cpu_count() or 4), mp_context=spawn) as pool:
        for name, regs, spills in pool.map(_compile, [c for _, c in cfgs]):
            if spills:
                log(f"SPILLS {name}: {regs} regs, {spills} B")
    log(f"compiled {len(cfgs)} configs")
    cache = {}

    def loaded(cfg):
        if cfg.name not in cache:
            cache[cfg.name] = LoadedKernel(afc.compile_kernel(cfg))
        return cache[cfg.name]

    if not args.no_timing:
        timing(arch, loaded)
    summary = {}
    for label, cfg in cfgs:
        flags = "+".join(f for f in VARIANT_FLAGS if getattr(cfg, f)) or "plain"
        tag = f"{label} {'causal' if cfg.causal else 'non-causal'} {flags}"
        try:
            fails = check_config(loaded(cfg), cfg)
        except Exception as e:  # a launch error is a failure of this config, not of the probe
            fails = [f"ERROR {type(e).__name__}: {str(e)[:300]}"]
        log(f"{tag}: {'ok' if not fails else 'FAIL'}")
        for f in fails:
            log(f"  FAIL {cfg.name}: {f}")
        summary.setdefault(label, [0, 0])[0 if not fails else 1] += 1
    cupy.cuda.get_current_stream().synchronize()
    log("\n| configs | passed | failed |\n|---|---|---|")
    for label, (ok, bad) in summary.items():
        log(f"| {label} | {ok} | {bad} |")


if __name__ == "__main__":
    main()
