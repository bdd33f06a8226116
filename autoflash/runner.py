"""The GPU runner: the only part of a tuning run that owns a CUDA context.

The tuner's main process (Optuna study, storage, progress) never touches CUDA: a
kernel that faults poisons its whole context. It sends plain-data messages to a
runner and gets plain-data replies:

    {"op": "info"}
        -> {"ok": True, "arch", "device_name", "driver", "runtime", "nvrtc", "l2_bytes"}
           or {"ok": False, "error"}  (no usable GPU)
    {"op": "trial", "id", "config": {...}, "cubin": bytes, "report": {...},
     "checks": [PROBLEM, ...], "buckets": [{"bucket", "problem": PROBLEM, "best_ms"}, ...],
     "timing": {"budget_ms", "slower_factor", ...}, "seed"}
        -> {"id", "status": "ok" | "pruned" | "fail", "reason", "rel_error",
            "ms": {bucket: ms}, "timings": {bucket: {...}}, "seconds": {"verify", "time"}, "fatal"}
    {"op": "retime", "id", "kernels": [{"config", "cubin", "report"}, ...], "problem": PROBLEM,
     "rounds", "launches_per_round"}
        -> {"id", "status": "ok" | "fail", "rounds": [[ms per round] per kernel], "reason"}
    {"op": "stop"}

PROBLEM is launch.Problem as a dict. Buckets are sent as strings in replies'
dict keys to keep them JSON-friendly ("4096").

Backends: GpuBackend (CuPy, one GPU) and StandInBackend, a deterministic stand-in
whose timings come from a formula or a table, so every path of the tuner is
tested without a GPU. RunnerProcess runs a backend in a spawned subprocess and
restarts it when it dies, times out, or reports a fault that poisons its CUDA
context; InlineRunner calls a backend in-process (tests).
"""
from __future__ import annotations

import hashlib
import logging
import math
import multiprocessing
import os
import time
from collections import OrderedDict

from autoflash import timing
from autoflash.config import KernelConfig

log = logging.getLogger("autoflash")


def _version(v: int) -> str:
    """CUDA's 13000 -> '13.0'."""
    return f"{v // 1000}.{(v % 1000) // 10}"


# ====================================================================== GPU
class GpuBackend:
    """Verifies and times compiled kernels on one GPU."""

    MAX_INPUT_SETS_CACHED = 12  # (dtype, problem) input sets kept on the device, least recently used dropped

    def __init__(self, spec: dict):
        import cupy

        self.cupy = cupy
        self.device_id = int(spec.get("device", 0))
        n = cupy.cuda.runtime.getDeviceCount()  # raises without a driver
        if self.device_id >= n:
            raise RuntimeError(f"GPU {self.device_id} requested, {n} present")
        cupy.cuda.Device(self.device_id).use()
        self._inputs: OrderedDict = OrderedDict()

    def handle(self, msg: dict) -> dict:
        op = msg.get("op")
        if op == "info":
            return self.info()
        if op == "trial":
            return self.trial(msg)
        if op == "retime":
            return self.retime(msg)
        return {"id": msg.get("id"), "status": "fail", "reason": f"unknown op {op!r}"}

    def info(self) -> dict:
        from autoflash.api import device_arch
        from autoflash.compile import nvrtc_version

        rt = self.cupy.cuda.runtime
        props = rt.getDeviceProperties(self.device_id)
        arch, name = device_arch(self.device_id)
        return {"ok": True, "arch": arch, "device_name": name, "driver": _version(rt.driverGetVersion()),
                "runtime": _version(rt.runtimeGetVersion()), "nvrtc": nvrtc_version(),
                "l2_bytes": int(props.get("l2CacheSize", 50 * 2**20)), "device": self.device_id}

    # ------------------------------------------------------------ inputs
    def input_sets(self, dtype: str, p) -> list[tuple]:
        """Random (q, k, v, o, lse) sets for one problem, enough of them to rotate
        out of L2; cached, since every trial of a study times the same shapes."""
        from autoflash.config import DTYPE_BYTES
        from autoflash.verify import random_inputs

        key = (dtype, p.batch, p.heads_q, p.heads_kv, p.seq_q, p.seq_k, p.head_dim)
        if key in self._inputs:
            self._inputs.move_to_end(key)
            return self._inputs[key]
        cp = self.cupy
        elem = DTYPE_BYTES[dtype]
        set_bytes = elem * p.head_dim * (2 * p.batch * p.heads_q * p.seq_q + 2 * p.batch * p.heads_kv * p.seq_k)
        l2 = int(cp.cuda.runtime.getDeviceProperties(self.device_id).get("l2CacheSize", 50 * 2**20))
        n = timing.input_sets(set_bytes, l2)
        sets = []
        for i in range(n):
            q, k, v = random_inputs(p, dtype, seed=1234 + i)
            o = cp.empty_like(q)
            lse = cp.empty((p.batch, p.heads_q, p.seq_q), dtype=cp.float32)
            sets.append((q, k, v, o, lse))
        self._inputs[key] = sets
        while len(self._inputs) > self.MAX_INPUT_SETS_CACHED:
            self._inputs.popitem(last=False)
        return sets

    def _load(self, item: dict):
        from autoflash.compile import CompiledKernel, ResourceReport
        from autoflash.launch import LoadedKernel

        cfg = KernelConfig.from_dict(item["config"])
        return LoadedKernel(CompiledKernel(cfg, item["cubin"], ResourceReport(**item["report"]), ""))

    def _launcher(self, kernel, p, sets):
        """launch(i) on input set i, with everything the host computes per launch
        (grid, kernel arguments, a TMA descriptor) prepared beforehand: only the
        launch itself sits between a timing pair of events."""
        import cupy

        from autoflash.launch import default_scale

        scale = default_scale(p.head_dim)
        grid = kernel.grid(p)
        block = (kernel.config.threads, 1, 1)
        stream = cupy.cuda.get_current_stream()
        prepared = [kernel.variant.kernel_args(kernel.config, tuple(x.data.ptr for x in s), p, scale) for s in sets]

        def launch(i: int) -> None:
            kernel.function(grid, block, prepared[i], shared_mem=kernel.smem, stream=stream)

        return launch

    # ------------------------------------------------------------ ops
    def trial(self, msg: dict) -> dict:
        from autoflash.launch import Problem
        from autoflash.verify import run_checked

        reply = {"id": msg.get("id"), "status": "ok", "reason": "", "ms": {}, "timings": {},
                 "seconds": {"verify": 0.0, "time": 0.0}, "rel_error": None}
        stage = "load"
        try:
            kernel = self._load(msg)
            stage = "verify"
            t0 = time.perf_counter()
            worst = 0.0
            for i, pd in enumerate(msg.get("checks", [])):
                p = Problem(**pd)
                check = run_checked(kernel, p, seed=int(msg.get("seed", 0)) + i)
                worst = max(worst, check.rel_error)
                if not check.passed:
                    reply.update(status="fail", reason=f"wrong answer at {_shape(p)}: {check.describe()}",
                                 rel_error=check.rel_error)
                    return reply
            reply["rel_error"] = worst
            reply["seconds"]["verify"] = time.perf_counter() - t0
            stage = "time"
            t0 = time.perf_counter()
            tm = msg.get("timing", {})
            for b in msg.get("buckets", []):
                p = Problem(**b["problem"])
                sets = self.input_sets(kernel.config.dtype, p)
                t = timing.time_launches(self._launcher(kernel, p, sets), len(sets),
                                         budget_ms=tm.get("budget_ms", timing.DEFAULT_BUDGET_MS),
                                         min_repeats=tm.get("min_repeats", timing.MIN_REPEATS),
                                         max_repeats=tm.get("max_repeats", timing.MAX_REPEATS),
                                         best_ms=b.get("best_ms"),
                                         slower_factor=tm.get("slower_factor", timing.SLOWER_FACTOR))
                if not record_bucket(reply, b, t, tm):
                    break
            reply["seconds"]["time"] = time.perf_counter() - t0
        except Exception as exc:  # a launch that fails is data, not a crash
            fatal = _is_cuda_fault(exc)
            reply.update(status="fail", reason=f"{stage} error: {type(exc).__name__}: {str(exc)[:500]}", fatal=fatal)
        return reply

    def retime(self, msg: dict) -> dict:
        from autoflash.launch import Problem

        try:
            p = Problem(**msg["problem"])
            kernels = [self._load(item) for item in msg["kernels"]]
            sets = self.input_sets(kernels[0].config.dtype, p)
            rounds = timing.time_interleaved([self._launcher(k, p, sets) for k in kernels], len(sets),
                                             rounds=int(msg.get("rounds", 5)),
                                             launches_per_round=int(msg.get("launches_per_round", 5)))
            return {"id": msg.get("id"), "status": "ok", "rounds": rounds, "reason": ""}
        except Exception as exc:
            return {"id": msg.get("id"), "status": "fail", "rounds": [], "fatal": _is_cuda_fault(exc),
                    "reason": f"retime error: {type(exc).__name__}: {str(exc)[:500]}"}


def _shape(p) -> str:
    return f"B={p.batch} Hq={p.heads_q} Hkv={p.heads_kv} Nq={p.seq_q} Nk={p.seq_k} D={p.head_dim}"


def _is_cuda_fault(exc: Exception) -> bool:
    """Errors after which the CUDA context cannot be trusted (the runner restarts)."""
    name = type(exc).__name__
    text = str(exc)
    return name in ("CUDADriverError", "CUDARuntimeError") and not ("INVALID_VALUE" in text or "OUT_OF_RESOURCES" in text)


# ================================================================ stand-in
class StandInBackend:
    """A deterministic stand-in for the GPU: same messages, no CUDA.

    spec = {"kind": "standin", "arch": "sm_90", "device_name": ..., "overrides": {config name: {...}}}
    A config's speed is a fixed formula of its knobs (or overrides[name]["tflops"]),
    so the fastest config is known in advance; overrides can also make a config
    give a wrong answer ("wrong": rel error), fail to launch ("launch_error"),
    fault its context ("fatal"), or, at compile time (standin_compile),
    fail to compile ("compile_error") or spill ("spills"). Timings go through
    timing.time_launches with a simulated clock, so early stopping is exercised too.
    """

    def __init__(self, spec: dict):
        self.spec = spec
        self.overrides = spec.get("overrides", {})

    def handle(self, msg: dict) -> dict:
        op = msg.get("op")
        if op == "info":
            return {"ok": True, "arch": self.spec.get("arch", "sm_90"),
                    "device_name": self.spec.get("device_name", "Stand-in GPU"), "driver": "13.0",
                    "runtime": "13.0", "nvrtc": "13.0", "l2_bytes": 50 * 2**20, "device": self.spec.get("device", 0)}
        if op == "trial":
            return self.trial(msg)
        if op == "retime":
            return self.retime(msg)
        return {"id": msg.get("id"), "status": "fail", "reason": f"unknown op {op!r}"}

    def tflops(self, cfg: KernelConfig) -> float:
        return standin_tflops(cfg, self.overrides)

    def ms(self, cfg: KernelConfig, p) -> float:
        return p.flops() / (self.tflops(cfg) * 1e9)

    def trial(self, msg: dict) -> dict:
        from autoflash.launch import Problem

        cfg = KernelConfig.from_dict(msg["config"])
        over = self.overrides.get(cfg.name, {})
        reply = {"id": msg.get("id"), "status": "ok", "reason": "", "ms": {}, "timings": {},
                 "seconds": {"verify": 0.0, "time": 0.0}, "rel_error": None}
        self._record_or_hang(cfg.name, msg.get("seed"))
        if "crash" in over:  # the process dies mid-trial, as a kernel that takes the driver down would
            os._exit(int(over["crash"]))
        if "launch_error" in over:
            reply.update(status="fail", reason=f"verify error: {over['launch_error']}", fatal=bool(over.get("fatal")))
            return reply
        rel = float(over.get("wrong", 1e-7))
        from autoflash.reference import TOLERANCE

        if rel > TOLERANCE[cfg.dtype]:
            reply.update(status="fail", rel_error=rel,
                         reason=f"wrong answer: rel err {rel:.2e} (tol {TOLERANCE[cfg.dtype]:.0e})")
            return reply
        reply["rel_error"] = rel
        tm = msg.get("timing", {})
        for b in msg.get("buckets", []):
            p = Problem(**b["problem"])
            clock = SimulatedClock()
            ms = self.ms(cfg, p)
            t = timing.time_launches(clock.launcher(ms), 1, budget_ms=tm.get("budget_ms", timing.DEFAULT_BUDGET_MS),
                                     best_ms=b.get("best_ms"),
                                     slower_factor=tm.get("slower_factor", timing.SLOWER_FACTOR), clock=clock)
            if not record_bucket(reply, b, t, tm):
                break
        return reply

    def _record_or_hang(self, config_name: str, trial_number) -> None:
        """For tests of several workers: spec["record"] is a file that gets a line per trial
        ("pid device config trial"); spec["hang"] = "DEVICE:MARKER" makes the first trial on that
        device that creates MARKER (it holds "pid config") hang, as a worker whose machine is lost."""
        device = self.spec.get("device", 0)
        if self.spec.get("record"):
            with open(self.spec["record"], "a") as f:  # one short append per line: atomic between processes
                f.write(f"{os.getpid()} {device} {config_name} {trial_number}\n")
        hang_device, _, marker = self.spec.get("hang", "").partition(":")
        if marker and hang_device == str(device):
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return
            os.write(fd, f"{os.getpid()} {config_name}".encode())
            os.close(fd)
            while True:
                time.sleep(3600)

    def retime(self, msg: dict) -> dict:
        from autoflash.launch import Problem

        p = Problem(**msg["problem"])
        rounds = int(msg.get("rounds", 5))
        out = []
        for item in msg["kernels"]:
            ms = self.ms(KernelConfig.from_dict(item["config"]), p)
            # a small deterministic wobble, so the recorded spread is not trivially zero
            out.append([ms * (1 + 0.002 * ((r * 7) % 3)) for r in range(rounds)])
        return {"id": msg.get("id"), "status": "ok", "rounds": out, "reason": ""}


def standin_tflops(cfg: KernelConfig, overrides: dict | None = None) -> float:
    """The stand-in's speed of a config: a smooth formula of the knobs with a single
    best point, or overrides[name]["tflops"]."""
    over = (overrides or {}).get(cfg.name, {})
    if "tflops" in over:
        return float(over["tflops"])
    score = 10.0
    score *= 1.0 + 0.25 * math.log2(cfg.block_m / 16) - 0.06 * math.log2(cfg.block_m / 16) ** 2
    score *= 1.0 + 0.2 * math.log2(cfg.block_n / 16) - 0.05 * math.log2(cfg.block_n / 16) ** 2
    score *= 1.0 - 0.08 * abs(math.log2(cfg.warps / 4))
    if cfg.thread_m:
        score *= 1.0 - 0.05 * abs(math.log2(cfg.thread_m / 4))
    score *= 1.0 + 0.05 * (cfg.stages - 1)
    if cfg.template != "flash_fwd_simt":
        score *= 4.0  # tensor-core templates are faster, as on a real GPU
    if cfg.causal:
        score *= 0.8
    return max(score, 0.1)


def standin_compile(config: dict, spec: dict) -> dict:
    """The stand-in compiler: a fake cubin and a resource report from a formula."""
    cfg = KernelConfig.from_dict(config)
    over = spec.get("overrides", {}).get(cfg.name, {})
    if "compile_error" in over:
        return {"ok": False, "error": f"NVRTC failed for {cfg.name} (stand-in): {over['compile_error']}"}
    from autoflash.variants import VARIANTS

    regs = int(over.get("registers", min(255, 40 + 4 * (cfg.thread_m or 4) * 8)))
    report = {"registers": regs, "spill_stores": int(over.get("spills", 0)), "spill_loads": 0, "stack_frame": 0,
              "static_smem": 0}
    cubin = hashlib.sha256(cfg.name.encode()).digest()
    return {"ok": True, "cubin": cubin, "report": report, "smem": VARIANTS[cfg.template].smem_bytes(cfg),
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


def make_backend(spec: dict):
    kind = spec.get("kind", "gpu")
    if kind == "gpu":
        return GpuBackend(spec)
    if kind == "standin":
        return StandInBackend(spec)
    raise ValueError(f"unknown runner kind {kind!r}")


# ================================================================ processes
def die_with_parent() -> None:
    """Ask Linux to kill this child process when its parent dies. A `tune` killed with
    SIGKILL must not leave runner or compile processes behind (holding a GPU, or the
    terminal's output pipe). Elsewhere a no-op."""
    import ctypes
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return
    PR_SET_PDEATHSIG = 1
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def serve(conn, spec: dict) -> None:
    """Entry point of the runner subprocess: one message in, one reply out."""
    die_with_parent()
    try:
        backend, init_error = make_backend(spec), None
    except Exception as exc:
        backend, init_error = None, f"{type(exc).__name__}: {exc}"
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg.get("op") == "stop":
            return
        if backend is None:
            conn.send({"id": msg.get("id"), "ok": False, "status": "fail", "error": init_error,
                       "reason": f"no usable GPU runner: {init_error}"})
            continue
        try:
            reply = backend.handle(msg)
        except Exception as exc:  # a bug in a backend must not hang the tuner
            reply = {"id": msg.get("id"), "ok": False, "status": "fail", "fatal": True,
                     "reason": f"runner error: {type(exc).__name__}: {exc}", "error": str(exc)}
        conn.send(reply)
        if reply.get("fatal"):
            return  # the CUDA context is no longer trustworthy: exit, the client starts a fresh runner


class InlineRunner:
    """A backend called in this process (stand-in tests). Same interface as RunnerProcess."""

    def __init__(self, backend):
        self.backend = backend
        self._reply = None
        self.restarts = 0

    @property
    def busy(self) -> bool:
        return self._reply is not None

    def submit(self, msg: dict) -> None:
        if self._reply is not None:
            raise RuntimeError("runner is busy")
        self._reply = self.backend.handle(msg)

    def poll(self, timeout: float = 0.0) -> dict | None:
        reply, self._reply = self._reply, None
        return reply

    def call(self, msg: dict, timeout: float | None = None) -> dict:
        self.submit(msg)
        return self.poll()

    def close(self) -> None:
        pass


class RunnerProcess:
    """A backend in a spawned subprocess, fed one message at a time.

    If the process dies, runs past its deadline, or reports a fault that poisons
    its CUDA context, the message in flight gets a "fail" reply with the reason
    and a fresh process is started for the next one."""

    def __init__(self, spec: dict, timeout_s: float = 300.0):
        self.spec = spec
        self.timeout_s = timeout_s
        self.proc = None
        self.conn = None
        self._inflight = None
        self._deadline = 0.0
        self._limit = timeout_s  # of the message in flight
        self.restarts = 0

    def _start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=serve, args=(child, self.spec), daemon=True, name="autoflash-runner")
        self.proc.start()
        child.close()
        self.conn = parent

    def _stop_proc(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill and self.proc.is_alive():
            self.proc.kill()
        self.proc.join(timeout=10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout=10)
        self.conn.close()
        self.proc = self.conn = None

    @property
    def busy(self) -> bool:
        return self._inflight is not None

    def submit(self, msg: dict, timeout_s: float | None = None) -> None:
        if self._inflight is not None:
            raise RuntimeError("runner is busy")
        if self.proc is None or not self.proc.is_alive():
            if self.proc is not None:
                self._stop_proc()
                self.restarts += 1
            self._start()
        self._inflight = msg
        self._limit = timeout_s or self.timeout_s
        self._deadline = time.monotonic() + self._limit
        self.conn.send(msg)

    def poll(self, timeout: float = 0.0) -> dict | None:
        if self._inflight is None:
            return None
        msg = self._inflight
        try:
            ready = self.conn.poll(timeout)
            reply = self.conn.recv() if ready else None
        except (EOFError, OSError):
            ready, reply = True, None
        if reply is not None:
            self._inflight = None
            if reply.get("fatal"):
                self._stop_proc()
                self.restarts += 1
            return reply
        if ready or not self.proc.is_alive():
            self.proc.join(timeout=5)
            code = self.proc.exitcode
            self._inflight = None
            self._stop_proc(kill=True)
            self.restarts += 1
            return {"id": msg.get("id"), "status": "fail", "ok": False, "fatal": True,
                    "reason": f"runner process died (exit code {code}) during {msg.get('op')}"}
        if time.monotonic() > self._deadline:
            self._inflight = None
            self._stop_proc(kill=True)
            self.restarts += 1
            return {"id": msg.get("id"), "status": "fail", "ok": False, "fatal": True,
                    "reason": f"runner timed out after {self._limit:.0f} s during {msg.get('op')}; restarted"}
        return None

    def call(self, msg: dict, timeout: float | None = None) -> dict:
        self.submit(msg, timeout)
        while True:
            reply = self.poll(0.05)
            if reply is not None:
                return reply

    def close(self) -> None:
        if self.proc is None:
            return
        try:
            if self._inflight is None:
                self.conn.send({"op": "stop"})
        except OSError:
            pass
        self._stop_proc(kill=self._inflight is not None)


def record_bucket(reply: dict, bucket: dict, t, tm: dict) -> bool:
    """Put one bucket's timing into a trial reply; False (and the trial pruned) when it stopped early."""
    reply["timings"][str(bucket["bucket"])] = t.to_dict()
    if t.stopped_early:
        reply.update(status="pruned", reason=(
            f"stopped early at N={bucket['bucket']}: probe {t.probe_ms:.3f} ms is over "
            f"{tm.get('slower_factor', timing.SLOWER_FACTOR)}x the best so far ({bucket['best_ms']:.3f} ms)"))
        return False
    reply["ms"][str(bucket["bucket"])] = t.ms
    return True
