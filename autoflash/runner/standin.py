"""A deterministic stand-in for the GPU and the compiler: same messages, no CUDA, so
every path of the tuner (and any operation's tuning) is tested without a GPU.

spec = {"kind": "standin", "arch": "sm_90", "device_name": ..., "overrides": {config name: {...}},
        "hook": "path/to/file.py:function"}
A config's speed is a fixed formula of its knobs (or overrides[name]["speed"], in the
op's work units per ns: TFLOP/s or GB/s), so the fastest config is known in advance;
overrides can also make a config give a wrong answer ("wrong": rel error), fail to
launch ("launch_error"), fault its context ("fatal"), or, at compile time
(standin_compile), fail to compile ("compile_error") or spill ("spills"). A hook
(the tests' own: logging trials, hanging, crashing the runner) is called as
hook(spec, config_name, seed) at every trial.
Timings go through timing.time_launches with a simulated clock, so early stopping is
exercised too.
"""
from __future__ import annotations

import hashlib
import importlib.util
import math

from autoflash.kernels.config import OpConfig
from autoflash.kernels.registry import OPERATIONS, TEMPLATES
from autoflash.ops.base import METRIC_SCALE
from autoflash.ops.reference import TOLERANCE
from autoflash.runner.protocol import (DeviceInfo, RetimeRequest, RetimeResult, TrialRequest, TrialResult,
                                       record_bucket, time_bucket)

DEVICE_NAME = "Stand-in GPU"


class StandInBackend:
    """The stand-in runner (see the module's docstring)."""

    def __init__(self, spec: dict):
        self.spec = spec
        self.overrides = spec.get("overrides", {})
        self.hook = load_hook(spec["hook"]) if spec.get("hook") else None

    def info(self) -> DeviceInfo:
        return DeviceInfo(ok=True, arch=self.spec.get("arch", "sm_90"),
                          device_name=self.spec.get("device_name", DEVICE_NAME), driver="13.0", runtime="13.0",
                          nvrtc="13.0", l2_bytes=50 * 2**20, device=self.spec.get("device", 0))

    def ms(self, cfg: OpConfig, problem: dict) -> float:
        op = OPERATIONS[cfg.op]  # standin_speed is in the op's metric: TFLOP/s or GB/s
        return op.work(problem) / (standin_speed(cfg, self.overrides) * METRIC_SCALE[op.metric]) * 1e3

    def trial(self, req: TrialRequest) -> TrialResult:
        cfg = OpConfig.from_dict(req.kernel.config)
        over = self.overrides.get(cfg.name, {})
        result = TrialResult(req.id)
        if self.hook is not None:
            self.hook(self.spec, cfg.name, req.seed)
        if "launch_error" in over:
            result.status, result.fatal = "fail", bool(over.get("fatal"))
            result.reason = f"verify error: {over['launch_error']}"
            return result
        rel = float(over.get("wrong", 1e-7))
        if rel > TOLERANCE[cfg.dtype]:
            result.status, result.rel_error = "fail", rel
            result.reason = f"wrong answer: rel err {rel:.2e} (tol {TOLERANCE[cfg.dtype]:.0e})"
            return result
        result.rel_error = rel
        for b in req.buckets:
            clock = SimulatedClock()
            t = time_bucket(clock.launcher(self.ms(cfg, b.problem)), 1, b, req.timing, clock=clock)
            if not record_bucket(result, b, t, req.timing):
                break
        return result

    def retime(self, req: RetimeRequest) -> RetimeResult:
        out = []
        for item in req.kernels:
            ms = self.ms(OpConfig.from_dict(item.config), req.problem)
            # a small deterministic wobble, so the recorded spread is not trivially zero
            out.append([ms * (1 + 0.002 * ((r * 7) % 3)) for r in range(int(req.rounds))])
        return RetimeResult(req.id, rounds=out)


def load_hook(ref: str):
    """'path/to/file.py:function' -> the function (a test's hook; tests live outside the package)."""
    path, _, name = ref.rpartition(":")
    spec = importlib.util.spec_from_file_location(f"autoflash_standin_hook_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def standin_speed(cfg: OpConfig, overrides: dict | None = None) -> float:
    """The stand-in's speed of a config (work units per ns): a smooth function of each
    knob's position in its template's range, peaking inside it, and a fixed factor per
    template so templates differ; or overrides[name]["speed"]."""
    over = (overrides or {}).get(cfg.name, {})
    if "speed" in over:
        return float(over["speed"])
    template = TEMPLATES[cfg.template]
    score = 10.0 * (1.0 + int(hashlib.sha256(cfg.template.encode()).hexdigest(), 16) % 7 / 20)
    for i, (knob, values) in enumerate(template.knobs.items()):
        lo, hi = min(values), max(values)
        if hi <= lo or lo <= 0:
            continue
        u = math.log2(getattr(cfg, knob) / lo) / math.log2(hi / lo)  # 0..1 across the knob's range
        peak = 0.55 + 0.05 * (i % 3)  # knobs peak at different places, so one config is best
        score *= 1.0 + 0.5 * u - 0.5 / (2 * peak) * u * u
    return max(score, 0.1)


def standin_compile(config: dict, spec: dict) -> dict:
    """The stand-in compiler: a fake cubin and a resource report from a formula."""
    cfg = OpConfig.from_dict(config)
    over = spec.get("overrides", {}).get(cfg.name, {})
    if "compile_error" in over:
        return {"ok": False, "error": f"NVRTC failed for {cfg.name} (stand-in): {over['compile_error']}"}
    regs = int(over.get("registers", 64))
    report = {"registers": regs, "spill_stores": int(over.get("spills", 0)), "spill_loads": 0, "stack_frame": 0,
              "static_smem": 0}
    cubin = hashlib.sha256(cfg.name.encode()).digest()
    return {"ok": True, "cubin": cubin, "report": report, "smem": TEMPLATES[cfg.template].smem_bytes(cfg),
            "seconds": 0.0, "cached": False}


class SimulatedClock:
    """A clock for timing.time_launches: each launch advances time by its duration."""

    def __init__(self):
        self.now = 0.0

    def launcher(self, ms: float):
        def launch(_i: int) -> None:
            self.now += ms

        return launch

    def record(self):
        return self.now

    def elapsed_ms(self, start, stop) -> float:
        return stop - start

    def synchronize(self, ev) -> None:
        pass
