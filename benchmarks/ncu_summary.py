"""Short per-kernel summary of an `ncu --page raw --csv` export: time, throughputs, tensor pipe,
issue/eligibility, and the largest warp-stall reasons (per issued instruction); or, with --source,
of an `ncu --page source --csv --print-source sass` export (stall samples by SASS opcode).

    python3 benchmarks/ncu_summary.py raw.csv
    python3 benchmarks/ncu_summary.py --source source.csv
"""
import csv
import re
import sys

KEEP = [r"^gpu__time_duration\.sum$", r"^sm__throughput\.avg\.pct_of_peak_sustained_elapsed$",
        r"pipe_tensor.*pct", r"gmma.*pct", r"pipe_shared.*pct", r"^sm__inst_executed_pipe_.*gmma", r"^sm__inst_executed_pipe_(xu|fma|alu)\.avg\.pct_of_peak_sustained_active$",
        r"^sm__pipe_(fma|alu|xu)_cycles_active\.avg\.pct_of_peak_sustained_active$",
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


def opcode(sass: str) -> str:
    """'@!P0 FMNMX.FTZ R0, ...' -> 'FMNMX'"""
    toks = [t for t in sass.replace(";", " ").split() if not t.startswith("@")]
    return toks[0].split(".")[0] if toks else "?"


def num(x):
    try:
        return float(x.replace(",", ""))
    except ValueError:
        return 0.0


def source_summary(path, top=14):
    """`ncu --page source --csv --print-source sass` export: per kernel, the warp-stall sample columns
    summed by SASS opcode (largest first), and the instructions with the most samples."""
    with open(path, newline="") as f:
        lines = f.read().splitlines()
    # one table per kernel; the header row repeats at each table (lines before it: kernel titles)
    first = next((i for i, ln in enumerate(lines) if "Source" in ln and ln.startswith('"')), None)
    if first is None:
        print("no Source column in", path, lines[:5])
        return
    header_line = lines[first]
    blocks, cur = [], []
    for ln in lines[first:]:
        if ln == header_line:
            if cur:
                blocks.append(cur)
            cur = [ln]
        elif ln.startswith('"Kernel Name"'):
            print("  (kernel)", ln[:150])
        elif ln.startswith('"'):
            cur.append(ln)
        elif ln.strip():
            print("  (title)", ln[:150])
    if cur:
        blocks.append(cur)
    for bi, block in enumerate(blocks):
        rows = list(csv.reader(block))
        if len(rows) < 2:
            continue
        head, data = rows[0], rows[1:]
        src = next((i for i, h in enumerate(head) if h.strip() == "Source"), None)
        cols = [i for i, h in enumerate(head) if "ampl" in h or "stall" in h.lower()]
        print(f"\n=== source table {bi}: {len(data)} rows; sample columns: {[head[i] for i in cols]}")
        if src is None or not cols:
            print("  header:", head)
            continue

        # the all-samples column, then the per-reason columns with the most samples
        totals = {c: sum(num(r[c]) for r in data if len(r) > c) for c in cols}
        reasons = sorted((c for c in cols if head[c].startswith("stall_")), key=lambda c: -totals[c])
        for c in cols[:1] + reasons[:8]:
            by_op = {}
            total = 0.0
            for r in data:
                if len(r) <= max(src, c):
                    continue
                v = num(r[c])
                total += v
                by_op[opcode(r[src])] = by_op.get(opcode(r[src]), 0.0) + v
            if total <= 0:
                continue
            tops = sorted(by_op.items(), key=lambda kv: -kv[1])[:top]
            print(f"  {head[c]} (total {total:.0f}): " + ", ".join(f"{k} {100 * v / total:.1f}%" for k, v in tops))
        c = cols[0]
        best = sorted((r for r in data if len(r) > max(src, c)), key=lambda r: -num(r[c]))[:top]
        print(f"  top instructions by {head[c]}:")
        for r in best:
            print(f"    {num(r[c]):8.0f}  {r[0][:8]}  {r[src][:70]}")


if __name__ == "__main__":
    if sys.argv[1] == "--source":
        source_summary(sys.argv[2])
    else:
        main(sys.argv[1])
