"""Instruction census of a kernel's main loop, read from its SASS (CPU only: NVRTC + cuobjdump).

    python benchmarks/sass_census.py --template flash_fwd_wgmma --head-dim 128 --causal yes --variant plain alibi
    python benchmarks/sass_census.py --head-dim 64 --causal no --variant softcap --tiles 128x128x3
    python benchmarks/sass_census.py --template flash_bwd_wgmma --head-dim 64 128 --causal no

Configs: the one served on the H200 (tuned_configs/sm_90.json through serve.dispatch for the forward,
ops.backward_wgmma.serving_config for the backward), unless --tiles BMxBNxSTAGES replaces the tile.

How the main loop is found: the SASS is split into basic blocks (leaders: branch targets and the
instruction after a branch or EXIT). Every backward branch (target <= its own address) closes a loop
spanning [target, branch]; the main loop is the smallest such span one of whose iterations issues an
HGMMA: the consumer's per-key-tile body (forward) or per-query-tile body (backward). Spin-wait loops
issue no HGMMA; the item loop around the main loop is larger; an out-of-line wait-retry block that
jumps back into the body spans [target, branch] too, but no forward path from its target reaches it.
One iteration is a path through the span's blocks along forward edges only (inner loops' back edges
and exits out of the span are not taken: waits that succeed at once). Warp-uniform branches (masked or unmasked tile, ALiBi's column form) make several paths, so
two are reported: the one with the fewest instructions ("min": the steady-state tile) and the one with
the most ("max": a masked edge tile). Counts are per warp per iteration (each of a warpgroup's 4 warps
issues the same stream on its own SM sub-partition).

Unit model per warp-tile, in clocks of one SM sub-partition (SMSP; 4 per SM), H100/H200 rates:
tensor 4096 dense bf16/fp16 FLOP/clk/SM (an HGMMA 64xNx16 is 2*64*N*16 FLOP of its warpgroup, spread
over the 4 SMSPs), MUFU 16/clk/SM (8 clk a warp instruction), FP32 FFMA/FMUL/FADD 128/clk/SM (1 clk),
integer/logic/compare/select/conversion 64/clk/SM (2 clk), issue 1 instruction/clk/SMSP. The largest is
the tile's lower bound if everything else overlaps with it; each consumer warpgroup adds one such tile
per SMSP per step, so the bound per tile holds for any consumer count. They do not overlap in practice:
H200 kernel-level rates of 6 forward configs fit FIT_CLK = 1.02 tensor + 1.31 issue (SM clocks at
1.83 GHz per warpgroup-tile, residuals -4..+11 %; benchmarks/NOTES.md, helper SA), printed as "fit".
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

GROUPS = (  # (column, opcode prefixes) in print order; the first match wins
    ("hgmma", ("HGMMA",)),
    ("ex2", ("MUFU.EX2",)),
    ("mufu_other", ("MUFU",)),
    ("fp32", ("FFMA", "FMUL", "FADD")),
    ("fmnmx", ("FMNMX",)),
    ("conv", ("F2FP", "F2F", "I2F", "F2I", "FRND")),
    ("int", ("IMAD", "IADD", "LOP3", "SHF.", "LEA", "IMNMX", "VIMNMX", "PRMT", "IABS", "POPC", "FLO", "BMSK")),
    ("cmp_sel", ("ISETP", "FSETP", "FSEL", "SEL", "PLOP3", "P2R", "R2P")),
    ("shfl", ("SHFL",)),
    ("sync", ("BAR", "SYNCS", "WARPGROUP", "WARPSYNC", "DEPBAR", "BSSY", "BSYNC", "MEMBAR", "FENCE", "NANOSLEEP")),
    ("smem", ("LDS", "STS", "LDSM", "STSM", "ATOMS")),
    ("gmem", ("LDG", "STG", "RED", "ATOM", "UTMA", "UBLKCP", "UBLKRED", "LDC", "ULDC", "CCTL")),
    ("uniform", ("U", "R2UR", "S2UR")),
    ("move", ("MOV", "CS2R", "S2R")),
    ("branch", ("BRA", "EXIT", "BRX", "JMP", "CALL", "RET")),
)
COLUMNS = [name for name, _ in GROUPS] + ["other", "total"]
CLK = {"ex2": 8, "mufu_other": 8, "fp32": 1, "fmnmx": 2, "conv": 2, "int": 2, "cmp_sel": 2}  # per warp instruction
TENSOR_FLOP_PER_CLK = 4096
FIT = {"tensor": 1.02, "issue": 1.31}  # SM clocks per warpgroup-tile (module docstring)
LINE = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Za-z0-9_.]*)\s*([^;]*);")


def group(opcode: str) -> str:
    for name, prefixes in GROUPS:
        if opcode.startswith(prefixes):
            return name
    return "other"


def parse(sass: str) -> list[tuple[int, str, str, bool]]:
    """(address, opcode, operands, predicated) of the first function holding an HGMMA."""
    for function in sass.split("Function : ")[1:]:
        ins = [(int(m[1], 16), m[3], m[4], bool(m[2]) and "PT" not in m[2]) for m in LINE.finditer(function)]
        if any(op.startswith("HGMMA") for _, op, _, _ in ins):
            return [i for i in ins if i[1] != "NOP"]
    raise SystemExit("no function with an HGMMA in this SASS")


def target(operands: str) -> int | None:
    found = re.findall(r"0x([0-9a-f]+)", operands)
    return int(found[-1], 16) if found else None


def blocks(ins) -> tuple[list[list], dict]:
    """Basic blocks (lists of instructions) and each block's successor addresses."""
    leaders = {ins[0][0]}
    for i, (addr, op, operands, _) in enumerate(ins):
        if op.startswith(("BRA", "EXIT", "JMP", "RET", "BRX")):
            if op.startswith("BRA") and target(operands) is not None:
                leaders.add(target(operands))
            if i + 1 < len(ins):
                leaders.add(ins[i + 1][0])
    out, succ = [], {}
    for i, instr in enumerate(ins):
        if instr[0] in leaders or not out:
            out.append([])
        out[-1].append(instr)
    for bi, b in enumerate(out):
        addr, op, operands, pred = b[-1]
        nxt = [out[bi + 1][0][0]] if bi + 1 < len(out) else []
        if op.startswith("BRA"):  # BRA.DIV Rx, target: taken only when the warp has diverged
            conditional = pred or ".DIV" in op or "," in operands
            succ[b[0][0]] = [target(operands)] + (nxt if conditional else [])
        elif op.startswith(("EXIT", "RET", "JMP", "BRX")):
            succ[b[0][0]] = nxt if pred else []
        else:
            succ[b[0][0]] = nxt
    return out, succ


def main_loop(ins) -> tuple[int, int, dict[str, Counter]]:
    """The smallest loop span [start, end] one of whose iterations issues an HGMMA, and its two paths.
    (A back edge from an out-of-line wait retry block also spans [target, branch], but no forward
    path from its target reaches it: skipped.)"""
    spans = sorted((addr - t, t, addr) for addr, op, operands, _ in ins
                   if op.startswith("BRA") and (t := target(operands)) is not None and t <= addr)
    bl, succ = blocks(ins)
    for _, start, end in spans:
        found = paths(bl, succ, start, end)
        if found and any(op.startswith("HGMMA") for op in found["max"]):
            return start, end, found
    raise SystemExit("no loop issues an HGMMA")


def paths(bl, succ, start: int, end: int) -> dict[str, Counter] | None:
    """Opcode counts of the fewest- and most-instruction paths from start to the back edge at end
    (None when no forward path gets there)."""
    inside = [b for b in bl if start <= b[0][0] <= end]
    best = {"min": {start: Counter()}, "max": {start: Counter()}}
    for b in inside:  # address order is a topological order of the forward edges
        head = b[0][0]
        for kind, pick in (("min", min), ("max", max)):
            if head not in best[kind]:
                continue
            here = best[kind][head] + Counter(op for _, op, _, _ in b)
            best[kind][head] = here
            for s in succ[head]:
                if s is None or not head < s <= end:
                    continue  # back edge of an inner loop, or an exit from the span
                old = best[kind].get(s)
                if old is None or pick(here.total(), old.total()) != old.total():
                    best[kind][s] = here.copy()
    last = inside[-1][0][0]
    if last not in best["min"]:
        return None
    return {kind: best[kind][last] for kind in best}


def census(counts: Counter) -> Counter:
    out = Counter()
    for op, n in counts.items():
        out[group(op)] += n
        out["total"] += n
    return out


def tensor_clk(counts: Counter) -> float:
    """SMSP clocks of the tensor work of one warpgroup's HGMMAs (each counted once per warp)."""
    flop = 0
    for op, n in counts.items():
        m = re.match(r"HGMMA\.(\d+)x(\d+)x(\d+)", op)
        if m:
            flop += n * 2 * int(m[1]) * int(m[2]) * int(m[3])
    return flop / TENSOR_FLOP_PER_CLK


def bounds(counts: Counter) -> dict[str, float]:
    c = census(counts)
    out = {"tensor": tensor_clk(counts), "issue": float(c["total"])}
    out["mufu"] = CLK["ex2"] * (c["ex2"] + c["mufu_other"])
    out["fp32"] = float(c["fp32"])
    out["alu"] = 2.0 * (c["fmnmx"] + c["conv"] + c["int"] + c["cmp_sel"])
    out["fit"] = FIT["tensor"] * out["tensor"] + FIT["issue"] * out["issue"]
    return out


def sass_of(cubin: bytes) -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from sass import cuobjdump  # tests/sass.py: finds the tool (PATH, toolkit or PyPI wheel)

    tool = cuobjdump()
    if tool is None:
        raise SystemExit("no cuobjdump (pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "k.cubin"
        path.write_bytes(cubin)
        env = dict(os.environ, PATH=str(Path(tool).parent) + os.pathsep + os.environ.get("PATH", ""))
        return subprocess.run([tool, "-sass", str(path)], capture_output=True, text=True, env=env, check=True).stdout


def served_config(template: str, dtype: str, head_dim: int, causal: bool, variant: str, tiles: str | None):
    from autoflash.ops.forward_base import VARIANT_FLAGS

    key = {"dtype": dtype, "head_dim": head_dim, "causal": causal}
    if template == "flash_bwd_wgmma":
        from autoflash.ops.backward_wgmma import serving_config

        cfg = serving_config("sm_90", {**key, "deterministic": False, **{f: f == variant for f in VARIANT_FLAGS}})
        if cfg is None:
            raise SystemExit(f"flash_bwd_wgmma does not serve {key} {variant}")
    else:
        from autoflash.serve import dispatch

        logging.disable(logging.WARNING)  # the untuned-key warning
        cfg, _ = dispatch.explain("sm_90", "NVIDIA H200", "forward", {**key, **{f: f == variant for f in VARIANT_FLAGS}},
                                  4096, template=template)
    if tiles:
        bm, bn, st = (int(x) for x in tiles.split("x"))
        warps = 4 * (bm // 64 + 1) if template == "flash_fwd_wgmma" else cfg.warps
        cfg = cfg.replace(block_m=bm, block_n=bn, stages=st, warps=warps)
    problems = cfg.problems()
    if problems:
        raise SystemExit(f"{cfg.name}: {problems}")
    return cfg


def run(cfg) -> dict:
    from autoflash.kernels.compile import compile_kernel

    ins = parse(sass_of(compile_kernel(cfg).cubin))
    start, end, found = main_loop(ins)
    return {"name": cfg.name, "span": (start, end), "paths": found,
            "hgmma": sorted({op for op in found["max"] if op.startswith("HGMMA")})}


def report(result: dict) -> None:
    print(f"{result['name']}  main loop 0x{result['span'][0]:x}-0x{result['span'][1]:x}  "
          f"{', '.join(result['hgmma'])}")
    print("  path " + "".join(f"{c:>11s}" for c in COLUMNS) + "   | clk/SMSP: tensor  issue   mufu   fp32    alu    fit")
    for kind, counts in result["paths"].items():
        c, b = census(counts), bounds(counts)
        print(f"  {kind:4s} " + "".join(f"{c[col]:11d}" for col in COLUMNS) + "   |        "
              + "".join(f"{b[u]:7.0f}" for u in ("tensor", "issue", "mufu", "fp32", "alu", "fit")))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--template", default="flash_fwd_wgmma", choices=("flash_fwd_wgmma", "flash_bwd_wgmma"))
    ap.add_argument("--dtype", default="bf16", choices=("bf16", "fp16"))
    ap.add_argument("--head-dim", type=int, nargs="+", default=[128])
    ap.add_argument("--causal", nargs="+", default=["no"], choices=("yes", "no"))
    ap.add_argument("--variant", nargs="+", default=["plain"], choices=("plain", "window", "softcap", "sinks", "alibi"))
    ap.add_argument("--tiles", help="BMxBNxSTAGES instead of the served tile (forward: warps follow BM)")
    ap.add_argument("--opcodes", action="store_true", help="also list each opcode's count on the min path")
    args = ap.parse_args(argv)
    for d in args.head_dim:
        for causal in args.causal:
            for variant in args.variant:
                result = run(served_config(args.template, args.dtype, d, causal == "yes", variant, args.tiles))
                report(result)
                if args.opcodes:
                    for op, n in sorted(result["paths"]["min"].items(), key=lambda kv: -kv[1]):
                        print(f"      {n:5d} {op}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
