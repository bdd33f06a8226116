"""A compiled kernel loaded on a GPU: its module, its functions, its shared-memory
opt-in, a cache of the launch plans its operation builds (CuPy, imported where used), and
what a launch outside CuPy's launcher needs (streams of other frameworks, a bound context;
kernels/packed_sequence.py packs launches).

A template's source may define several kernels (e.g. split-KV and its combine step):
the main one is named cfg.name, the others cfg.name + suffix; function(suffix) finds them.
"""
from __future__ import annotations

from autoflash.kernels.compile import CompiledKernel
from autoflash.kernels.registry import TEMPLATES

SMEM_OPT_IN = 48 * 1024  # above this a kernel must opt in to more dynamic shared memory


class LaunchError(RuntimeError):
    """A kernel that could not be launched (resources, grid limits)."""


class LoadedKernel:
    """A compiled kernel loaded into the current device's context."""

    MAX_PLANS = 256  # launch plans kept per kernel (one per problem shape and scale)

    def __init__(self, compiled: CompiledKernel):
        import cupy

        self.compiled = compiled
        self.config = compiled.config
        self.values = compiled.values  # what it was rendered with (None: from a given source); see rendered()
        self.template = TEMPLATES[self.config.template]
        self.smem = self.template.smem_bytes(self.config)
        self.device_id = cupy.cuda.Device().id
        self.module = cupy.cuda.function.Module()
        self.module.load(compiled.cubin)
        self.function = self.module.get_function(self.config.name)
        self.allow_smem(self.function, self.smem)
        self._functions = {"": self.function}
        self._plans: dict = {}

    @staticmethod
    def allow_smem(function, smem: int) -> None:
        if smem > SMEM_OPT_IN:  # above 48 KB a block must opt in to dynamic shared memory
            from cupy.cuda import driver

            driver.funcSetAttribute(function.ptr, driver.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, smem)

    def function_named(self, suffix: str = ""):
        """The kernel cfg.name + suffix of this module ("" is the main one)."""
        if suffix not in self._functions:
            self._functions[suffix] = self.module.get_function(self.config.name + suffix)
        return self._functions[suffix]

    def cached_plan(self, key, build):
        """The operation's launch plan for `key`, built by build() on first use; bounded cache."""
        plan = self._plans.get(key)
        if plan is None:
            plan = build()
            if len(self._plans) >= self.MAX_PLANS:
                self._plans.clear()  # rare (many distinct shapes): rebuilding a plan is cheap
            self._plans[key] = plan
        return plan


def rendered(kernel, name: str, now):
    """The value `name` a kernel was rendered with, for a launch choice that must agree with its code (a grid's
    order): a switch may have changed since it was compiled (tests and A/B scripts set them). `now`: the value
    the switch gives today, for kernels compiled from a given source or stand-ins without values."""
    values = getattr(kernel, "values", None)
    return values[name] if values and name in values else now


class _StreamHandle:
    """A raw cudaStream_t seen through the CUDA stream protocol."""

    def __init__(self, ptr: int):
        self.ptr = ptr

    def __cuda_stream__(self):
        return (0, self.ptr)


def external_stream(ptr: int):
    """A CuPy stream object for a stream another framework (e.g. PyTorch) owns."""
    import cupy

    if hasattr(cupy.cuda.Stream, "from_external"):  # CuPy 14+
        return cupy.cuda.Stream.from_external(_StreamHandle(ptr))
    return cupy.cuda.ExternalStream(ptr)  # CuPy 13 (the cu12 extra)


_STREAMS: dict[int, object] = {}


def stream_handle(ptr: int):
    """external_stream(ptr), made once per pointer. The object holds nothing but the
    pointer (it never destroys the stream), so a pointer reused by a new stream is
    still served correctly."""
    stream = _STREAMS.get(ptr)
    if stream is None:
        if len(_STREAMS) >= 256:
            _STREAMS.clear()
        stream = _STREAMS[ptr] = external_stream(ptr)
    return stream


_context_calls: list = []  # (cuCtxGetCurrent, cudaFree), looked up once


def ensure_context() -> None:
    """Bind the current device's primary context to this thread if no context is bound: a thread
    that has made no CUDA runtime call yet has none, and the driver calls of a launch
    (cuLaunchKernel, cuTensorMapEncodeTiled) need one (CUDA_ERROR_INVALID_CONTEXT otherwise)."""
    if not _context_calls:
        from cupy.cuda import driver, runtime

        _context_calls[:] = [driver.ctxGetCurrent, runtime.free]
    if not _context_calls[0]():
        _context_calls[1](0)  # cudaFree(0): the runtime binds the primary context of the current device
