"""The load-balance model behind the varlen scheduling prediction (benchmarks/NOTES.md, flash_fwd_wgmma
varlen items per sequence): 132 persistent CTAs take work items round-robin (CTA c: items c, c + 132,
...); an item costs its key tiles plus one tile-equivalent per query tile (fill and epilogue). Printed:
each numbering's balance, mean CTA load / max CTA load (1.0 = perfect), static as the kernel runs it and
with a dynamic scheduler (next free CTA takes the next item) for comparison. No GPU; bench_varlen's
lengths (16 sequences of 128..8192, seed 0), 16 heads, 128 x 128 tiles, causal.

    python benchmarks/wgmma_schedule_model.py
"""
import heapq
import math

import numpy as np

HEADS, BLOCK, CTAS, PER_TILE = 16, 128, 132, 1.0


def key_tiles(t: int, n: int) -> int:
    """Key tiles of query tile t of a causal length-n sequence (at least one)."""
    return max(1, math.ceil(min(n, (t + 1) * BLOCK) / BLOCK))


def cost(tiles: list[int], n: int) -> float:
    return sum(key_tiles(t, n) + PER_TILE for t in tiles)


def pairs(tiles: int) -> list[list[int]]:
    """Causal items (T-1-u, u) of a sequence of `tiles` query tiles."""
    return [[tiles - 1 - u] + ([u] if u != tiles - 1 - u else []) for u in range((tiles + 1) // 2)]


def longest_numbering(lengths: list[int]) -> list[float]:
    """Before: pairs of the longest sequence's tile count T for every sequence; tiles past a
    sequence's end are skipped but keep their slot."""
    t_max = math.ceil(max(lengths) / BLOCK)
    return [cost([t for t in pair if t * BLOCK < n], n) for n in lengths for _ in range(HEADS) for pair in pairs(t_max)]


def per_sequence_numbering(lengths: list[int]) -> list[float]:
    """After: each sequence's own pairs (its spare slot, at most one, costs nothing and is left out)."""
    return [cost(pair, n) for n in lengths for _ in range(HEADS) for pair in pairs(math.ceil(n / BLOCK))]


def static_balance(items: list[float]) -> float:
    loads = np.zeros(CTAS)
    for i, c in enumerate(items):
        loads[i % CTAS] += c
    return loads.mean() / loads.max()


def dynamic_balance(items: list[float]) -> float:
    heap = [(0.0, c) for c in range(CTAS)]
    for c in items:
        t, cta = heapq.heappop(heap)
        heapq.heappush(heap, (t + c, cta))
    return sum(items) / CTAS / max(t for t, _ in heap)


def main() -> None:
    lengths = np.random.default_rng(0).integers(128, 8193, 16).tolist()
    mean = sum(lengths) // len(lengths)
    rows = {"varlen, longest T (before)": longest_numbering(lengths),
            "varlen, per sequence (now)": per_sequence_numbering(lengths),
            "varlen, per sequence, longest first": per_sequence_numbering(sorted(lengths, reverse=True)),
            "dense, 16 x the mean length": per_sequence_numbering([mean] * len(lengths))}
    print(f"lengths {lengths}")
    print("| numbering | items | static balance | dynamic balance |\n|---|---|---|---|")
    for name, items in rows.items():
        print(f"| {name} | {len(items)} | {static_balance(items):.3f} | {dynamic_balance(items):.3f} |")


if __name__ == "__main__":
    main()
