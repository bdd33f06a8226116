"""Short per-kernel summary of an `ncu --page raw --csv` export: time, throughputs, tensor pipe,
issue/eligibility, and the largest warp-stall reasons (per issued instruction).

    python3 benchmarks/ncu_summary.py raw.csv
"""
import csv
import re
import sys

KEEP = [r"^gpu__time_duration\.sum$", r"^sm__throughput\.avg\.pct_of_peak_sustained_elapsed$",
        r"pipe_tensor.*pct", r"gmma.*pct", r"pipe_shared.*pct", r"^sm__inst_executed_pipe_.*gmma",
        r"^smsp__issue_active\.avg\.pct_of_peak_sustained_active$",
        r"^smsp__inst_executed\.avg\.per_cycle_active$",
        r"^smsp__warps_active\.avg\.per_cycle_active$", r"^smsp__warps_eligible\.avg\.per_cycle_active$",
        r"^smsp__issue_inst0\.avg\.pct_of_peak_sustained_active$",
        r"^l1tex__throughput\.avg\.pct_of_peak_sustained_active$", r"^lts__throughput\.avg\.pct_of_peak_sustained_elapsed$",
        r"^dram__throughput\.avg\.pct_of_peak_sustained_elapsed$", r"^lts__t_sector_hit_rate\.pct$",
        r"^dram__bytes_(read|write)\.sum$", r"^launch__registers_per_thread$", r"^launch__grid_size$",
        r"^launch__shared_mem_per_block_dynamic$", r"^sm__cycles_elapsed\.avg\.per_second$",
        r"^smsp__cycles_active\.avg$", r"^l1tex__data_bank_conflicts_pipe_lsu_mem_shared.*sum$",
        r"^smsp__inst_executed\.sum$", r"^sm__warps_active\.avg\.pct_of_peak_sustained_active$"]
STALL = re.compile(r"^smsp__average_warps_issue_stalled_(\w+)_per_issue_active\.ratio$")


def main(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    head, units, data = rows[0], rows[1], rows[2:]
    for r in data:
        rec = dict(zip(head, r))
        print(f"\n=== {rec.get('Kernel Name', '?')[:110]}  grid {rec.get('Grid Size')} block {rec.get('Block Size')}")
        for i, h in enumerate(head):
            if any(re.search(p, h) for p in KEEP):
                print(f"  {h:<72} {r[i]:>14} {units[i]}")
        stalls = []
        for i, h in enumerate(head):
            m = STALL.match(h)
            if m:
                try:
                    stalls.append((float(r[i].replace(",", "")), m.group(1)))
                except ValueError:
                    pass
        stalls.sort(reverse=True)
        print("  stalls (warp-cycles per issued instruction): "
              + ", ".join(f"{n} {v:.2f}" for v, n in stalls[:10]))


if __name__ == "__main__":
    main(sys.argv[1])
