"""What the tuner and a runner say to each other: typed plain data (dataclasses that
pickle across the process pipe), and the Backend protocol the GPU and the stand-in
runners implement.

    InfoRequest   -> DeviceInfo     what GPU is here (ok=False + error: none usable)
    TrialRequest  -> TrialResult    verify a compiled kernel on the op's check problems, then time
                                    it at every bucket (stopping early when far slower than the best)
    RetimeRequest -> RetimeResult   re-time finalists in interleaved rounds on one problem
    Stop                            end the runner process

Problems are the operation's plain dicts; bucket keys of result dicts are strings
("4096") so results stay JSON-friendly.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from autoflash.runner import timing


@dataclass
class InfoRequest:
    id: int = 0


@dataclass
class DeviceInfo:
    ok: bool
    arch: str = ""
    device_name: str = ""
    driver: str = "0"
    runtime: str = "0"
    nvrtc: str = "0"
    l2_bytes: int = 0
    device: int = 0
    error: str = ""


@dataclass
class KernelBinary:
    """A compiled candidate: its config (a dict), cubin, ptxas resource report (a dict) and the template values it
    was rendered with (a dict, empty if unknown: kernels/loaded.rendered then reads the runner's own switches)."""

    config: dict
    cubin: bytes = b""
    report: dict = field(default_factory=dict)
    values: dict = field(default_factory=dict)


@dataclass
class BucketRequest:
    bucket: int
    problem: dict
    best_ms: float | None = None  # the best time at this bucket so far: a far slower probe stops early


@dataclass
class TimingOptions:
    budget_ms: float = timing.DEFAULT_BUDGET_MS
    slower_factor: float = timing.SLOWER_FACTOR
    min_repeats: int = timing.MIN_REPEATS
    max_repeats: int = timing.MAX_REPEATS


@dataclass
class TrialRequest:
    id: int
    kernel: KernelBinary
    checks: list = field(default_factory=list)  # problems (dicts) to verify on
    buckets: list = field(default_factory=list)  # BucketRequest per bucket to time
    timing: TimingOptions = field(default_factory=TimingOptions)
    seed: int = 0


@dataclass
class TrialResult:
    id: int
    status: str = "ok"  # ok | pruned (stopped early) | fail
    reason: str = ""
    rel_error: float | None = None
    ms: dict = field(default_factory=dict)  # bucket (str) -> median ms
    timings: dict = field(default_factory=dict)  # bucket (str) -> timing.Timing.to_dict()
    seconds: dict = field(default_factory=lambda: {"verify": 0.0, "time": 0.0})
    fatal: bool = False  # the runner's CUDA context is poisoned: it exits and is restarted


@dataclass
class RetimeRequest:
    id: int
    kernels: list  # KernelBinary per finalist
    problem: dict
    rounds: int = 5
    launches_per_round: int = 5


@dataclass
class RetimeResult:
    id: int
    status: str = "ok"  # ok | fail
    rounds: list = field(default_factory=list)  # per kernel, its round medians (ms)
    reason: str = ""
    fatal: bool = False


@dataclass
class Stop:
    id: int = 0


class Backend(Protocol):
    """A runner: the GPU one (runner.gpu) or the stand-in (runner.standin)."""

    def info(self) -> DeviceInfo: ...

    def trial(self, request: TrialRequest) -> TrialResult: ...

    def retime(self, request: RetimeRequest) -> RetimeResult: ...


def handle(backend: Backend, msg):
    """The reply of a backend to one message."""
    if isinstance(msg, InfoRequest):
        return backend.info()
    if isinstance(msg, TrialRequest):
        return backend.trial(msg)
    if isinstance(msg, RetimeRequest):
        return backend.retime(msg)
    return failure(msg, f"unknown message {type(msg).__name__}")


def failure(msg, reason: str, fatal: bool = False):
    """The reply that says `msg` failed, of the type its sender waits for."""
    if isinstance(msg, InfoRequest):
        return DeviceInfo(ok=False, error=reason)
    if isinstance(msg, RetimeRequest):
        return RetimeResult(msg.id, status="fail", reason=reason, fatal=fatal)
    return TrialResult(getattr(msg, "id", 0), status="fail", reason=reason, fatal=fatal)


def record_bucket(result: TrialResult, bucket: BucketRequest, t: timing.Timing, opts: TimingOptions) -> bool:
    """Put one bucket's timing into a trial result; False (and the trial pruned) when it stopped early."""
    result.timings[str(bucket.bucket)] = t.to_dict()
    if t.stopped_early:
        result.status = "pruned"
        result.reason = (f"stopped early at N={bucket.bucket}: probe {t.probe_ms:.3f} ms is over "
                         f"{opts.slower_factor}x the best so far ({bucket.best_ms:.3f} ms)")
        return False
    result.ms[str(bucket.bucket)] = t.ms
    return True


def time_bucket(launch, sets: int, bucket: BucketRequest, opts: TimingOptions, clock=None) -> timing.Timing:
    """time_launches with a trial's timing options and its bucket's best time so far."""
    return timing.time_launches(launch, sets, budget_ms=opts.budget_ms, min_repeats=opts.min_repeats,
                                max_repeats=opts.max_repeats, best_ms=bucket.best_ms,
                                slower_factor=opts.slower_factor, clock=clock)
