"""The GPU backend: verifies and times compiled kernels on one GPU (the only part of
a tuning run that owns a CUDA context). Everything operation-specific (inputs,
reference check, what one call launches) comes from the kernel's Operation."""
from __future__ import annotations

import time
from collections import OrderedDict

from autoflash.kernels.compile import CompiledKernel, ResourceReport, nvrtc_version
from autoflash.kernels.config import OpConfig
from autoflash.kernels.device import device_arch
from autoflash.kernels.loaded import LoadedKernel
from autoflash.kernels.registry import OPERATIONS
from autoflash.runner import timing
from autoflash.runner.protocol import (DeviceInfo, KernelBinary, RetimeRequest, RetimeResult, TrialRequest,
                                       TrialResult, record_bucket, time_bucket)

DEFAULT_L2_BYTES = 50 * 2**20


def cuda_version(v: int) -> str:
    """CUDA's 13000 -> '13.0'."""
    return f"{v // 1000}.{(v % 1000) // 10}"


class GpuBackend:
    """Verifies and times compiled kernels on one GPU."""

    MAX_INPUT_SETS_CACHED = 12  # (op, dtype, problem) input sets kept on the device, least recently used dropped

    def __init__(self, spec: dict):
        import cupy

        self.cupy = cupy
        self.device_id = int(spec.get("device", 0))
        n = cupy.cuda.runtime.getDeviceCount()  # raises without a driver
        if self.device_id >= n:
            raise RuntimeError(f"GPU {self.device_id} requested, {n} present")
        cupy.cuda.Device(self.device_id).use()
        self._inputs: OrderedDict = OrderedDict()

    def info(self) -> DeviceInfo:
        rt = self.cupy.cuda.runtime
        arch, name = device_arch(self.device_id)
        return DeviceInfo(ok=True, arch=arch, device_name=name, driver=cuda_version(rt.driverGetVersion()),
                          runtime=cuda_version(rt.runtimeGetVersion()), nvrtc=nvrtc_version(),
                          l2_bytes=self._l2_bytes(), device=self.device_id)

    def _l2_bytes(self) -> int:
        props = self.cupy.cuda.runtime.getDeviceProperties(self.device_id)
        return int(props.get("l2CacheSize", DEFAULT_L2_BYTES))

    # ------------------------------------------------------------ inputs
    def input_sets(self, op, dtype: str, problem: dict) -> list:
        """Input sets for one problem, enough of them to rotate out of L2; cached, since
        every trial of a study times the same shapes."""
        key = (op.name, dtype, tuple(sorted(problem.items())))
        if key in self._inputs:
            self._inputs.move_to_end(key)
            return self._inputs[key]
        n = timing.input_sets(op.input_bytes(problem, dtype), self._l2_bytes())
        sets = [op.make_inputs(problem, dtype, seed=1234 + i) for i in range(n)]
        self._inputs[key] = sets
        while len(self._inputs) > self.MAX_INPUT_SETS_CACHED:
            self._inputs.popitem(last=False)
        return sets

    @staticmethod
    def _load(item: KernelBinary) -> LoadedKernel:
        cfg = OpConfig.from_dict(item.config)
        report = ResourceReport(**item.report)
        return LoadedKernel(CompiledKernel(cfg, item.cubin, report, "", values=item.values))

    def _launcher(self, op, kernel: LoadedKernel, problem: dict):
        """launch(i) on input set i, everything the host computes per launch prepared beforehand."""
        sets = self.input_sets(op, kernel.config.dtype, problem)
        calls = [op.launcher(kernel, problem, s) for s in sets]
        return (lambda i: calls[i]()), len(sets)

    # ------------------------------------------------------------ ops
    def trial(self, req: TrialRequest) -> TrialResult:
        result = TrialResult(req.id)
        stage = "load"
        try:
            kernel = self._load(req.kernel)
            op = OPERATIONS[kernel.template.op]
            stage = "verify"
            t0 = time.perf_counter()
            worst = 0.0
            for i, problem in enumerate(req.checks):
                check = op.verify(kernel, problem, int(req.seed) + i)
                worst = max(worst, check.rel_error)
                if not check.passed:
                    result.status, result.rel_error = "fail", check.rel_error
                    result.reason = f"wrong answer at {_shape(problem)}: {check.describe()}"
                    return result
            result.rel_error = worst
            result.seconds["verify"] = time.perf_counter() - t0
            stage = "time"
            t0 = time.perf_counter()
            for b in req.buckets:
                launch, n = self._launcher(op, kernel, b.problem)
                if not record_bucket(result, b, time_bucket(launch, n, b, req.timing), req.timing):
                    break
            result.seconds["time"] = time.perf_counter() - t0
        except Exception as exc:  # a launch that fails is data, not a crash
            result.status, result.fatal = "fail", is_cuda_fault(exc)
            result.reason = f"{stage} error: {type(exc).__name__}: {str(exc)[:500]}"
        return result

    def retime(self, req: RetimeRequest) -> RetimeResult:
        try:
            kernels = [self._load(item) for item in req.kernels]
            op = OPERATIONS[kernels[0].template.op]
            launchers = [self._launcher(op, k, req.problem) for k in kernels]
            rounds = timing.time_interleaved([launch for launch, _ in launchers], launchers[0][1],
                                             rounds=int(req.rounds), launches_per_round=int(req.launches_per_round))
            return RetimeResult(req.id, rounds=rounds)
        except Exception as exc:
            return RetimeResult(req.id, status="fail", fatal=is_cuda_fault(exc),
                                reason=f"retime error: {type(exc).__name__}: {str(exc)[:500]}")


def _shape(problem: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in problem.items())


def is_cuda_fault(exc: Exception) -> bool:
    """Errors after which the CUDA context cannot be trusted (the runner restarts)."""
    name = type(exc).__name__
    text = str(exc)
    return name in ("CUDADriverError", "CUDARuntimeError") and not ("INVALID_VALUE" in text or "OUT_OF_RESOURCES" in text)
