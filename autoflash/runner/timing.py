"""Time kernel launches with CUDA events: warm-up, a probe launch that sizes the
number of repeats to a time budget, the median of the repeats, input sets rotated
so a small problem is not timed out of L2, and an early stop for a config that is
already far slower than the best one seen.

The arithmetic is separate from the clock: every function takes a `clock` with
record() / elapsed_ms(a, b) / synchronize(ev), CudaClock on a GPU and a fake one
in the tests, so the logic is checked without a GPU.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Callable

DEFAULT_BUDGET_MS = 60.0  # GPU time spent on the repeats of one config at one length
MIN_REPEATS = 3
MAX_REPEATS = 100
SLOWER_FACTOR = 2.0  # a probe this many times slower than the best so far ends the config


@dataclass
class Timing:
    """What time_launches measured for one kernel at one problem size (milliseconds)."""

    ms: float  # median of the repeats (of the probe alone when stopped early)
    min_ms: float
    max_ms: float
    repeats: int
    sets: int  # input sets rotated through
    probe_ms: float
    stopped_early: bool = False
    samples: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"ms": self.ms, "min_ms": self.min_ms, "max_ms": self.max_ms, "repeats": self.repeats,
                "sets": self.sets, "probe_ms": self.probe_ms, "stopped_early": self.stopped_early}


def median(values: list[float]) -> float:
    return statistics.median(values)  # StatisticsError (a ValueError) when empty


def spread(values: list[float]) -> float:
    """Relative spread (max - min) / min of positive timings."""
    if not values:
        return 0.0
    lo = min(values)
    return (max(values) - lo) / lo if lo > 0 else math.inf


def plan_repeats(probe_ms: float, budget_ms: float = DEFAULT_BUDGET_MS, min_repeats: int = MIN_REPEATS,
                 max_repeats: int = MAX_REPEATS) -> int:
    """Repeats that fit the budget at the probe's speed, within [min_repeats, max_repeats]."""
    if probe_ms <= 0 or not math.isfinite(probe_ms):
        return max_repeats if probe_ms <= 0 else min_repeats
    return max(min_repeats, min(max_repeats, int(budget_ms / probe_ms)))


def input_sets(set_bytes: int, l2_bytes: int, max_sets: int = 8) -> int:
    """Distinct input sets to rotate through so that consecutive launches find their
    inputs evicted from L2: enough sets to cover twice the L2 size."""
    if set_bytes <= 0:
        return 1
    return max(1, min(max_sets, math.ceil(2 * l2_bytes / set_bytes)))


def far_slower(ms: float, best_ms: float | None, factor: float = SLOWER_FACTOR) -> bool:
    return best_ms is not None and best_ms > 0 and ms > factor * best_ms


class CudaClock:
    """CUDA events on the current stream."""

    def __init__(self):
        import cupy

        self._cupy = cupy

    def record(self):
        ev = self._cupy.cuda.Event()
        ev.record()
        return ev

    def elapsed_ms(self, start, stop) -> float:
        return float(self._cupy.cuda.get_elapsed_time(start, stop))

    def synchronize(self, ev) -> None:
        ev.synchronize()


def time_launches(launch: Callable[[int], None], sets: int = 1, *, budget_ms: float = DEFAULT_BUDGET_MS,
                  warmup: int = 1, min_repeats: int = MIN_REPEATS, max_repeats: int = MAX_REPEATS,
                  best_ms: float | None = None, slower_factor: float = SLOWER_FACTOR, clock=None) -> Timing:
    """Time launch(i) (i = the input set to use) with CUDA events around each launch.

    Warm-up launches first (module load, caches, clocks), then one probe launch,
    timed: if it is over slower_factor x best_ms the config stops there
    (stopped_early); otherwise the repeats that fit budget_ms run back to back,
    each timed by its own pair of events, rotating through the input sets, and the
    median is the result.
    """
    clock = clock or CudaClock()
    sets = max(1, sets)
    i = 0
    for _ in range(warmup):
        launch(i % sets)
        i += 1
    start = clock.record()
    launch(i % sets)
    i += 1
    stop = clock.record()
    clock.synchronize(stop)
    probe = clock.elapsed_ms(start, stop)
    if far_slower(probe, best_ms, slower_factor):
        return Timing(probe, probe, probe, 1, sets, probe, stopped_early=True, samples=[probe])
    repeats = plan_repeats(probe, budget_ms, min_repeats, max_repeats)
    events = []
    for _ in range(repeats):
        start = clock.record()
        launch(i % sets)
        i += 1
        events.append((start, clock.record()))
    clock.synchronize(events[-1][1])
    samples = [clock.elapsed_ms(a, b) for a, b in events]
    return Timing(median(samples), min(samples), max(samples), repeats, sets, probe, samples=samples)


def time_interleaved(launches: list[Callable[[int], None]], sets: int = 1, *, rounds: int = 5,
                     launches_per_round: int = 5, clock=None) -> list[list[float]]:
    """Re-time several kernels in interleaved order: each round times every kernel
    (the order rotated each round, so no kernel always goes first), each kernel's
    round result is the median of its launches in that round. Returns, per kernel,
    its round medians; clock drift and thermal changes hit all kernels alike."""
    clock = clock or CudaClock()
    n = len(launches)
    results: list[list[float]] = [[] for _ in range(n)]
    i = 0
    for launch in launches:  # warm every kernel first
        launch(0)
    for r in range(rounds):
        for j in range(n):
            k = (j + r) % n
            events = []
            for _ in range(launches_per_round):
                start = clock.record()
                launches[k](i % max(1, sets))
                i += 1
                events.append((start, clock.record()))
            clock.synchronize(events[-1][1])
            results[k].append(median([clock.elapsed_ms(a, b) for a, b in events]))
    return results
