"""Timing and SDPA baselines shared by the benchmark scripts (GPU machine, PyTorch present)."""
import statistics

import torch

from autoflash.bench import sdpa_backends, sdpa_runner  # noqa: F401  (the benchmark scripts take them from here)

SDPA_BACKENDS = sdpa_backends()


def time_ms(fn, warmup=5, reps=30, max_seconds=5.0):
    """Median time of fn() in ms with CUDA events, after warm-up; fewer reps for slow functions."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record(); fn(); end.record(); end.synchronize()
    probe = start.elapsed_time(end)
    reps = max(3, min(reps, int(max_seconds * 1000 / max(probe, 1e-3))))
    times = []
    for _ in range(reps):
        start.record(); fn(); end.record(); end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def tflops(b, h, nq, nk, d, causal, ms):
    flops = 4.0 * b * h * nq * nk * d / (2 if causal else 1)
    return flops / (ms * 1e-3) / 1e12


def time_interleaved(fns: dict, rounds: int, reps: int, warmup: int = 3) -> dict:
    """name -> (median ms of all calls, spread of the round medians as a fraction): every function
    warmed up, then `rounds` rounds that each time `reps` calls of every function in turn (CUDA
    events per call), so a drift of the GPU's clocks reaches every function alike."""
    start, end = _events()
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    torch.cuda.synchronize()
    samples, medians = {n: [] for n in fns}, {n: [] for n in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times = event_times(fn, reps, (start, end))
            samples[name] += times
            medians[name].append(statistics.median(times))
    return {n: (statistics.median(samples[n]), (max(medians[n]) - min(medians[n])) / statistics.median(medians[n]))
            for n in fns}


def _events():
    return torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)


def event_times(fn, reps: int, events=None) -> list[float]:
    """reps CUDA-event timings of fn() in ms, each synchronised (warm-up is the caller's)."""
    start, end = events or _events()
    times = []
    for _ in range(reps):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return times
