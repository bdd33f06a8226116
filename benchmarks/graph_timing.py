"""Kernel-level timing by CUDA-graph replay, with the host cost of the same call measured apart
(benchmarks/bench_kvcache.py): an Impl is captured once, replayed in interleaved rounds."""
from __future__ import annotations

import random
import re
import statistics
import time
import warnings

import torch


def events():
    """Two timing events, the first recorded now (elapsed: seconds from it to now)."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    return start, end


def elapsed(start, end) -> float:
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3


class Impl:
    """One implementation: `kernel` (capturable) captured `calls` times in one CUDA graph and replayed;
    `eager` (default: kernel) for the host cost. A first call outside the capture warms up (compiles)
    and finds refusals: na then holds why."""

    def __init__(self, name: str, kernel, eager=None, calls: int = 1, work: float = 0.0):
        self.name, self.kernel, self.eager, self.calls, self.work = name, kernel, eager or kernel, calls, work
        self.times, self.na, self.graph, self.host, self.eager_s = [], None, None, None, None

    def capture(self) -> None:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                self.kernel()
                torch.cuda.synchronize()
        except Exception as exc:  # a backend refusing the problem: n/a, with why
            why = [re.sub(r"\s*\(Triggered internally at [^)]*\)\.?", "", str(w.message)).strip() for w in caught]
            why = sorted({w for w in why if w and not w.endswith(":")}, key=lambda w: "mask" not in w)  # SDPA's why
            self.na = "; ".join(why[:2] or [f"{type(exc).__name__}: {str(exc).splitlines()[0]}"])[:160]
            return
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            self.kernel()
        torch.cuda.current_stream().wait_stream(s)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            for _ in range(self.calls):
                self.kernel()
        self.graph.replay()
        torch.cuda.synchronize()

    def replay(self, replays: int = 3) -> None:
        """One round: the median of `replays` replays, seconds per call."""
        if self.graph is None:
            return
        ts = []
        for _ in range(replays):
            start, end = events()
            self.graph.replay()
            ts.append(elapsed(start, end) / self.calls)
        self.times.append(statistics.median(ts))

    def host_cost(self, calls: int = 20) -> None:
        if self.graph is None:
            return
        self.eager()
        torch.cuda.synchronize()
        start, end = events()
        t0 = time.perf_counter()
        for _ in range(calls):
            self.eager()
        self.host = (time.perf_counter() - t0) / calls
        self.eager_s = elapsed(start, end) / calls

    def result(self) -> dict:
        if not self.times:
            return dict(na=self.na)
        med = statistics.median(self.times)
        return dict(s=med, spread=(max(self.times) - min(self.times)) / med, host_s=self.host, eager_s=self.eager_s,
                    rate=self.work / med if self.work else None)


def measure(impls: list[Impl], rounds: int) -> dict:
    for impl in impls:
        impl.capture()
    order = random.Random(0)
    for _ in range(rounds):  # interleaved: every implementation once per round, in a new order each round: neither a
        for impl in order.sample(impls, len(impls)):  # column's position nor the one before it may bias it (s21a:
            impl.replay()  # a rotation kept each column's predecessor, and a copy after FA2 read 3-11 % faster)
    for impl in impls:
        impl.host_cost()
    out = {impl.name: impl.result() for impl in impls}
    for impl in impls:
        impl.graph = None
    torch.cuda.empty_cache()
    return out
