"""Where a backward block's time goes: the served flash_bwd_wgmma tile rendered with its clock marks
(ops/backward_wgmma.PROBE_CLOCKS: never served), one call, every block's clock64 at its marks: 0 entry, 1 K, V landed
and the barriers set, 2 the first query tile landed, 3 the loop done, 4 dK, dV stored (thread 0), 5 the producer done.
Per SM the blocks are ordered by their start: the gap from one block's end (the later of 4 and 5) to the next one's
start is the launch between them. Cycles are turned into us by each SM's clock over the call (its cycles between its
first and last block's starts over the global timer's ns between them). Printed: medians over the whole blocks (not
TAIL_SPLIT's parts) and each phase's share of the call summed over the SMs; --switches compiles the tile again with
those ops/backward_wgmma switches on (e.g. PREFETCH_KV) and prints its row beside. Then, per consumer warpgroup, where
its query tiles' time goes (ns a tile, medians over the whole blocks): 0 waiting for the tile to land, 1 for S^T, 2 the
exps and the dV issue, 3 waiting for dP^T, 4 dS and the dK issue, 5 dS^T stored and handed over, 6 the dQ wgmma and the
wait for all, 8 (the walk) the wait for a free dQ staging buffer, 7 the rest of dQ's staging or reduction and the loop's
turn; and (the walk) the producer's: 0 its wait for a free stage, 1 its loads, 2 its dQ reduction (its thread 0: the
wait for the staged tile, the bulk op, the wait for the previous op's read). Last, per consumer (the walk): the tiles it
waited for (> 64 cycles in the wait: every tile in practice, s23e) and the mean ns from the producer's thread 0 having
issued such a tile's copies to the consumer passing its wait, and consumer 0's dq_empty wait and each consumer's tile
wait repeated at once (their phases complete: what the wait instruction costs by itself).

    PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/bwd_block_clocks.py [--rows bf16:128:4096:false,...]
"""
from __future__ import annotations

import argparse
import statistics

import cupy
import numpy as np
import torch

from bench_backward import served_config
from bench_backward_graph import switched
from bwd_mma_source_ab import plan_impl, row_inputs

from autoflash.kernels.compile import compile_kernel
from autoflash.kernels.device import device_arch
from autoflash.kernels.loaded import LoadedKernel

SLOTS = 1 << 16  # the template's block_clocks rows


PHASES = ("tile", "S", "exp+dV", "dP", "dS+dK", "dS_st", "dQ", "dQ_st", "dQ_wait")  # the template's lap(k)
PRODUCER_PHASES = ("empty", "loads", "dQ_red")  # produce_blocks' laps


def device_table(kernel, name: str, shape: tuple, dtype) -> cupy.ndarray:
    """The module's __device__ array `name` as a CuPy array."""
    ptr = kernel.module.get_global_var(name)  # (a device address)
    memory = cupy.cuda.UnownedMemory(ptr, int(np.prod(shape)) * np.dtype(dtype).itemsize, kernel.module)
    return cupy.ndarray(shape, dtype=dtype, memptr=cupy.cuda.MemoryPointer(memory, 0))


def clocks_of(cfg, switches: list[str], tensors: tuple, p, scale: float) -> tuple[np.ndarray, float, np.ndarray]:
    """Every block's marks (rows of 8: marks 0..5, SM << 32 | query tiles, the global timer at mark 0) from one call
    of cfg compiled with PROBE_CLOCKS and `switches` on, that call's wall time in us, and every block's cycles a
    phase (SLOTS x (2 consumer warpgroups, the producer) x 13 slots)."""
    with switched(["PROBE_CLOCKS"] + switches):
        kernel = LoadedKernel(compile_kernel(cfg))
    impl, _ = plan_impl(cfg.name, kernel, p, scale, tensors)
    table = device_table(kernel, "block_clocks", (SLOTS, 8), np.uint64)
    phase = device_table(kernel, "phase_clocks", (SLOTS, 3, 13), np.uint32)
    for _ in range(5):  # warm: compiled, clocks up
        impl.kernel()
    table.fill(0)
    phase.fill(0)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    impl.kernel()
    end.record()
    torch.cuda.synchronize()
    return cupy.asnumpy(table).astype(np.int64), start.elapsed_time(end) * 1e3, cupy.asnumpy(phase).astype(np.int64)


def phase_ns(marks: np.ndarray, phase: np.ndarray, mhz: float) -> np.ndarray:
    """ns a query tile in each phase, per warpgroup (3 x 13): medians over the whole blocks; slot 9: the mean ns from
    issue to the end of a waited-for tile's wait, slot 10: the share of tiles waited for."""
    whole = (marks[:, 0] > 0) & (marks[:, 4] > 0)
    tiles = np.maximum(marks[whole, 6] & 0xFFFFFFFF, 1)[:, None, None]
    ns = np.median(phase[whole] / tiles, axis=0) * 1e3 / mhz
    waited = phase[whole][:, :, 10].sum(axis=0)
    ns[:, 9] = phase[whole][:, :, 9].sum(axis=0) / np.maximum(waited, 1) * 1e3 / mhz
    ns[:, 10] = waited / tiles.sum()
    return ns


def phases(marks: np.ndarray, call_us: float) -> dict:
    """Median us of each phase over the whole blocks, the launch gap per SM, and each phase's share of the call."""
    rows = marks[marks[:, 0] > 0]
    sm, n_iter = rows[:, 6] >> 32, rows[:, 6] & 0xFFFFFFFF
    whole = rows[rows[:, 4] > 0]  # (a part that is not its unit's last returns before mark 4)
    whole_iter = n_iter[rows[:, 4] > 0]
    sms = np.unique(sm)
    span = [rows[sm == s] for s in sms]
    mhz = statistics.median([1e3 * (r[:, 0].max() - r[:, 0].min()) / max(r[:, 7].max() - r[:, 7].min(), 1)
                             for r in span if len(r) > 1])  # cycles a us
    gaps = []
    for r in span:
        r = r[np.argsort(r[:, 0])]
        gaps += list(r[1:, 0] - np.maximum(r[:-1, 4], r[:-1, 5]))
    tiles = np.maximum(whole_iter - 1, 1)
    out = {"mhz": mhz, "blocks": len(rows), "sms": len(sms), "tiles": float(np.median(whole_iter)),
           "kv_wait": whole[:, 1] - whole[:, 0], "first_tile": whole[:, 2] - whole[:, 1],
           "per_tile": (whole[:, 3] - whole[:, 2]) / tiles, "epilogue": whole[:, 4] - whole[:, 3],
           "producer_after": whole[:, 5] - whole[:, 4], "launch_gap": np.array(gaps)}
    total = len(sms) * call_us * mhz  # (the call: its preprocess and dQ conversion too)
    shares = {k: out[k].sum() / total for k in ("kv_wait", "first_tile", "epilogue", "launch_gap")}
    med = {k: float(np.median(out[k])) / mhz for k in ("kv_wait", "first_tile", "per_tile", "epilogue",
                                                           "producer_after", "launch_gap")}
    return {**{k: out[k] for k in ("mhz", "blocks", "sms", "tiles")}, "us": med, "share": shares}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="bf16:128:4096:false,bf16:128:4096:true,bf16:128:16384:false",
                    help="dtype:head_dim:seq:causal, comma-separated")
    ap.add_argument("--switches", default="", help="ops/backward_wgmma switches for a second build, A+B (-A: off)")
    ap.add_argument("--stages", type=int, default=0, help="the second build's stages (a tile variant under a switch)")
    args = ap.parse_args()
    arch = device_arch(torch.cuda.current_device())[0]
    builds = [[]] + ([args.switches.split("+")] if args.switches else [])
    print(f"# {torch.cuda.get_device_name()}: us a block phase (medians over whole blocks); share = the phase summed "
          "over the blocks / (SMs x the call)")
    print(f"{'row':<22} {'build':<14} {'MHz':>5} {'blocks':>6} {'tiles':>5} {'kv_wait':>8} {'1st_tile':>8} "
          f"{'per_tile':>8} {'epilog':>7} {'prod+':>6} {'gap':>6} | share: kv_wait 1st_tile epilog gap  call_us")
    splits = []
    for row in args.rows.split(","):
        dtype, d, n, causal = row.split(":")
        key = dict(dtype=dtype, head_dim=int(d), causal=causal == "true", deterministic=False)
        q, k, v, dout, out, lse, scale, p = row_inputs(dtype, int(d), int(n), key["causal"])
        cfg = served_config(arch, key, int(n))
        for sw in builds:
            built = cfg.replace(stages=args.stages) if sw and args.stages else cfg
            marks, call_us, phase = clocks_of(built, sw, (q, k, v, out, lse, dout), p, scale)
            r = phases(marks, call_us)
            splits.append((row, "+".join(sw) or "served", phase_ns(marks, phase, r["mhz"])))
            us, sh = r["us"], r["share"]
            print(f"{row:<22} {'+'.join(sw) or 'served':<14} {r['mhz']:5.0f} {r['blocks']:6d} {r['tiles']:5.0f} "
                  f"{us['kv_wait']:8.2f} {us['first_tile']:8.2f} {us['per_tile']:8.2f} {us['epilogue']:7.2f} "
                  f"{us['producer_after']:6.2f} {us['launch_gap']:6.2f} | {sh['kv_wait']:.3f} {sh['first_tile']:.3f} "
                  f"{sh['epilogue']:.3f} {sh['launch_gap']:.3f}  {call_us:7.0f}")
    print(f"# served tiles: {cfg.name} (last row)")
    print(f"# ns a query tile in each phase, per consumer warpgroup (medians over whole blocks)\n{'row':<22} "
          f"{'build':<14} wg " + " ".join(f"{k:>7}" for k in PHASES) + "     sum")
    for row, build, ns in splits:
        for wg in range(2):
            cells = ns[wg][:len(PHASES)]
            print(f"{row:<22} {build:<14} {wg:2d} " + " ".join(f"{x:7.0f}" for x in cells) + f" {cells.sum():7.0f}")
    print(f"# the producer (the walk), ns a query tile\n{'row':<22} {'build':<14}    "
          + " ".join(f"{k:>7}" for k in PRODUCER_PHASES) + "     sum")
    for row, build, ns in splits:
        cells = ns[2][:len(PRODUCER_PHASES)]
        print(f"{row:<22} {build:<14}    " + " ".join(f"{x:7.0f}" for x in cells) + f" {cells.sum():7.0f}")
    print("# tiles a consumer waited for (share), and the mean ns from their copies' issue to the wait's end")
    for row, build, ns in splits:
        waited = "  ".join(f"wg{wg}: {ns[wg][10]:.2f} of tiles, {ns[wg][9]:5.0f} ns" for wg in range(2))
        print(f"{row:<22} {build:<14} {waited}  (waits again, phase complete: wg0 dq_empty {ns[0][11]:.0f}, full "
              f"{ns[0][12]:.0f}; wg1 full {ns[1][12]:.0f} ns)")


if __name__ == "__main__":
    main()
