"""The compile pool: configs rendered and compiled by NVRTC in N spawned CPU processes
(or inline), plain data in and out, so the GPU never waits for the compiler."""
from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import os
import time
from collections import deque

from autoflash.kernels.compile import compile_kernel
from autoflash.kernels.config import OpConfig
from autoflash.kernels.registry import TEMPLATES
from autoflash.runner.process import die_with_parent
from autoflash.runner.standin import standin_compile


def compile_candidate(config: dict, standin: dict | None = None) -> dict:
    """Compile-pool job: plain data in, plain data out (never raises)."""
    if standin is not None:
        return standin_compile(config, standin)
    t0 = time.perf_counter()
    try:
        cfg = OpConfig.from_dict(config)
        ck = compile_kernel(cfg)
        return {"ok": True, "cubin": ck.cubin, "report": dataclasses.asdict(ck.report),
                "smem": TEMPLATES[cfg.template].smem_bytes(cfg), "seconds": time.perf_counter() - t0,
                "cached": ck.cached, "values": ck.values}
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "seconds": time.perf_counter() - t0}


class CompilePool:
    """Compile jobs in N spawned processes (workers=0: inline, for tests)."""

    def __init__(self, workers: int, standin: dict | None = None):
        self.workers = workers
        self.standin = standin
        self._pool = None
        self._done: deque = deque()
        self._futures: dict = {}

    def submit(self, cfg: OpConfig, tag) -> None:
        if self.workers <= 0:
            self._done.append((tag, compile_candidate(cfg.to_dict(), self.standin)))
            return
        if self._pool is None:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=die_with_parent)
        self._futures[self._pool.submit(compile_candidate, cfg.to_dict(), self.standin)] = tag

    def pending(self) -> int:
        return len(self._futures) + len(self._done)

    def collect(self, timeout: float = 0.0) -> list[tuple]:
        """(tag, result) of every finished job."""
        out = list(self._done)
        self._done.clear()
        if self._futures:
            done, _ = concurrent.futures.wait(list(self._futures), timeout=0 if out else timeout,
                                              return_when=concurrent.futures.FIRST_COMPLETED)
            for fut in done:
                tag = self._futures.pop(fut)
                try:
                    out.append((tag, fut.result()))
                except Exception as exc:  # a worker that died (e.g. killed by the OS)
                    out.append((tag, {"ok": False, "error": f"compile worker failed: {type(exc).__name__}: {exc}"}))
        return out

    def map(self, configs: list[OpConfig]) -> list[dict]:
        for i, cfg in enumerate(configs):
            self.submit(cfg, i)
        results: dict = {}
        while len(results) < len(configs):
            for tag, res in self.collect(timeout=0.5):
                results[tag] = res
        return [results[i] for i in range(len(configs))]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def default_workers(reserve: int = 1) -> int:
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, n - reserve)


