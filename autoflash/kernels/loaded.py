"""A compiled kernel loaded on a GPU: its module, its functions, its shared-memory
opt-in, a cache of the launch plans its operation builds (CuPy, imported where used), and
PackedLaunch: a launch whose arguments are packed once, so a call writes only the pointers
and goes straight to cuLaunchKernel.

A template's source may define several kernels (e.g. split-KV and its combine step):
the main one is named cfg.name, the others cfg.name + suffix; function(suffix) finds them.
"""
from __future__ import annotations

import struct
import threading

import numpy as np

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


POINTER_ARGS = 5  # every forward kernel starts with (q, k, v, o, lse)
_POINTERS = struct.Struct(f"{POINTER_ARGS}Q")
_SLOT = 8  # bytes per argument slot: every scalar argument is 4 or 8 bytes


class PackedLaunch:
    """One kernel launch of fixed grid, block, shared memory and arguments, except the first
    POINTER_ARGS (device pointers) and the by-value structs that embed them (TMA maps), packed
    once into host buffers as cuLaunchKernel takes them: `values` holds one 8-byte slot per
    scalar argument, `params` the address of each argument's bytes (its slot, or a struct's
    own memory). A call writes the pointers into their slots and, only when q, k or v differ
    from the last call's, asks `build` (the template's argument builder) for the structs again;
    then one driver call. This replaces CuPy's per-argument conversion of the whole tuple on
    every launch. A lock makes write-and-launch atomic (the driver copies the values at the call).

    function: a CuPy Function (its .ptr is the CUfunction); build(q, k, v, o, lse): the tuple
    CuPy would take (numpy scalars, and CPointer-like objects with .ptr for structs)."""

    def __init__(self, function, grid, block, smem: int, build, pointers: tuple):
        args = build(*pointers)
        if len(args) < POINTER_ARGS:
            raise LaunchError(f"a packed launch needs the {POINTER_ARGS} pointer arguments first, got {len(args)}")
        n = len(args)
        self.values = np.zeros(n, dtype=np.uint64)
        self.params = np.zeros(n, dtype=np.uint64)
        self._values_view = memoryview(self.values).cast("B")
        self._params_view = memoryview(self.params).cast("B")
        base = self.values.ctypes.data
        self.struct_slots = []  # argument positions passed by address (rebuilt when q, k or v change)
        for i, a in enumerate(args):
            if isinstance(a, np.generic):
                raw = a.tobytes()
                if len(raw) > _SLOT:
                    raise LaunchError(f"argument {i} is {len(raw)} bytes; a packed slot holds {_SLOT}")
                self._values_view[i * _SLOT:i * _SLOT + len(raw)] = raw
                self.params[i] = base + i * _SLOT
            elif i >= POINTER_ARGS and hasattr(a, "ptr"):
                self.struct_slots.append(i)
            else:
                raise LaunchError(f"argument {i} ({type(a).__name__}) cannot be packed")
        from cupy.cuda import driver

        self._launch = driver.launchKernel
        self.function_ptr = function.ptr
        self._params_ptr = self.params.ctypes.data
        self.grid, self.block, self.smem = tuple(grid), tuple(block), smem
        self._build = build
        # leading pointers the structs embed: q, k, v (a build may say 4: flash_fwd_wgmma's O map embeds o)
        self._struct_key = getattr(build, "struct_pointers", 3)
        self._last_qkv = None
        self._structs = ()  # keeps the last structs alive while their addresses are in params
        self._lock = threading.Lock()
        self._set_structs(pointers, args)

    def _set_structs(self, pointers: tuple, args: tuple) -> None:
        if self.struct_slots:
            self._structs = tuple(args[i] for i in self.struct_slots)
            for i, a in zip(self.struct_slots, self._structs):
                struct.pack_into("Q", self._params_view, i * _SLOT, a.ptr)
        self._last_qkv = tuple(pointers[:self._struct_key])

    def __call__(self, q: int, k: int, v: int, o: int, lse: int, stream_ptr: int) -> None:
        """Launch on a raw stream (0: the legacy default stream)."""
        ensure_context()
        with self._lock:
            if self.struct_slots and (q, k, v, o)[:self._struct_key] != self._last_qkv:
                self._set_structs((q, k, v, o), self._build(q, k, v, o, lse))
            _POINTERS.pack_into(self._values_view, 0, q, k, v, o, lse)
            self._launch(self.function_ptr, *self.grid, *self.block, self.smem, stream_ptr, self._params_ptr, 0)


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
