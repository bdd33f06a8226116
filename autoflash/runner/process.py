"""Running a backend: in a spawned subprocess (RunnerProcess, restarted when it dies,
times out, or reports a fault that poisons its CUDA context) or in this process
(InlineRunner, for stand-in runs and tests). Both take one message at a time.

spec = {"kind": "gpu" | "standin", "device": N, ...}. Operations registered outside the
package reach a runner process through $AUTOFLASH_PLUGINS (autoflash.ops), which it
inherits.
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import time

from autoflash.runner.gpu import GpuBackend
from autoflash.runner.protocol import InfoRequest, Stop, failure, handle
from autoflash.runner.standin import StandInBackend


def make_backend(spec: dict):
    kind = spec.get("kind", "gpu")
    if kind == "gpu":
        return GpuBackend(spec)
    if kind == "standin":
        return StandInBackend(spec)
    raise ValueError(f"unknown runner kind {kind!r}")


def die_with_parent() -> None:
    """Ask Linux to kill this child process when its parent dies. A `tune` killed with
    SIGKILL must not leave runner or compile processes behind (holding a GPU, or the
    terminal's output pipe). Elsewhere a no-op."""
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
        if isinstance(msg, Stop):
            return
        if backend is None:
            conn.send(failure(msg, f"no usable GPU runner: {init_error}"))
            continue
        try:
            reply = handle(backend, msg)
        except Exception as exc:  # a bug in a backend must not hang the tuner
            reply = failure(msg, f"runner error: {type(exc).__name__}: {exc}", fatal=True)
        conn.send(reply)
        if getattr(reply, "fatal", False):
            return  # the CUDA context is no longer trustworthy: exit, the client starts a fresh runner


class InlineRunner:
    """A backend called in this process (stand-in runs, tests). Same interface as RunnerProcess."""

    def __init__(self, backend):
        self.backend = backend
        self._reply = None
        self.restarts = 0

    @property
    def busy(self) -> bool:
        return self._reply is not None

    def submit(self, msg, timeout_s: float | None = None) -> None:
        if self._reply is not None:
            raise RuntimeError("runner is busy")
        self._reply = handle(self.backend, msg)

    def poll(self, timeout: float = 0.0):
        reply, self._reply = self._reply, None
        return reply

    def call(self, msg, timeout: float | None = None):
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

    def submit(self, msg, timeout_s: float | None = None) -> None:
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

    def _lost(self, why: str):
        """The in-flight message's reply when the process is gone; a fresh one starts next time."""
        msg, self._inflight = self._inflight, None
        self._stop_proc(kill=True)
        self.restarts += 1
        return failure(msg, why.format(op=type(msg).__name__), fatal=True)

    def poll(self, timeout: float = 0.0):
        if self._inflight is None:
            return None
        try:
            ready = self.conn.poll(timeout)
            reply = self.conn.recv() if ready else None
        except (EOFError, OSError):
            ready, reply = True, None
        if reply is not None:
            self._inflight = None
            if getattr(reply, "fatal", False):
                self._stop_proc()
                self.restarts += 1
            return reply
        if ready or not self.proc.is_alive():
            self.proc.join(timeout=5)
            return self._lost(f"runner process died (exit code {self.proc.exitcode}) during {{op}}")
        if time.monotonic() > self._deadline:
            return self._lost(f"runner timed out after {self._limit:.0f} s during {{op}}; restarted")
        return None

    def call(self, msg, timeout: float | None = None):
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
                self.conn.send(Stop())
        except OSError:
            pass
        self._stop_proc(kill=self._inflight is not None)


__all__ = ["InlineRunner", "RunnerProcess", "InfoRequest", "die_with_parent", "make_backend", "serve"]
