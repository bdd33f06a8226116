"""Packed launches: a fixed sequence of kernel launches (the forward's one, the backward's preprocess, main
kernel and dQ conversion) whose arguments are packed once into host buffers as cuLaunchKernel takes them:
each launch keeps an 8-byte slot per scalar argument and the kernelParams array of their addresses; a call
writes only the device pointers (struct.pack_into, one call per run of adjacent pointer slots) and calls
cuLaunchKernel. This replaces CuPy's per-argument conversion of the whole tuple on every launch.

Built from launches whose pointer arguments are Slot markers (their index in the pointer tuple a call
passes), whose other arguments are numpy scalars of at most 8 bytes or by-value structs (objects with .ptr,
the address of their bytes: TMA maps, which embed pointers and are rebuilt when those move); CuPy imported
where used.
"""
from __future__ import annotations

import ctypes
import functools
import operator
import struct
import threading

import numpy as np

from autoflash.kernels.loaded import LaunchError, ensure_context

_SLOT = 8  # bytes per argument slot (every argument but a struct is a 4- or 8-byte scalar or a pointer)


PROGRAMMATIC_STREAM_SERIALIZATION = 6  # CUlaunchAttributeID: the launch may overlap the kernel before it


class _AttributeValue(ctypes.Union):  # CUlaunchAttributeValue: a 64-byte union
    _fields_ = [("pad", ctypes.c_char * 64), ("align", ctypes.c_uint64), ("flag", ctypes.c_int)]


class _Attribute(ctypes.Structure):  # CUlaunchAttribute
    _fields_ = [("id", ctypes.c_int), ("pad", ctypes.c_char * 4), ("value", _AttributeValue)]


class _LaunchConfig(ctypes.Structure):  # CUlaunchConfig
    _fields_ = [("grid", ctypes.c_uint * 3), ("block", ctypes.c_uint * 3), ("shared_mem_bytes", ctypes.c_uint),
                ("stream", ctypes.c_void_p), ("attrs", ctypes.POINTER(_Attribute)), ("num_attrs", ctypes.c_uint)]


@functools.lru_cache(maxsize=1)
def _launch_kernel_ex():
    """The driver's cuLaunchKernelEx (CuPy's driver module has no binding for it)."""
    fn = ctypes.CDLL("libcuda.so.1").cuLaunchKernelEx
    fn.argtypes = [ctypes.POINTER(_LaunchConfig), ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    fn.restype = ctypes.c_int
    return fn


class _ProgrammaticLaunch:
    """A launch function with cuLaunchKernel's arguments that launches with programmatic stream serialization
    (sm_90): the kernel may be scheduled before the previous kernel on the stream ends, and must itself wait
    (griddepcontrol.wait) before it reads that kernel's results. One config, built once and filled per call (a
    fresh one cost ~2.4 us of host time a call): a PackedSequence's own, called under its lock."""

    def __init__(self):
        self._attr = _Attribute(id=PROGRAMMATIC_STREAM_SERIALIZATION)
        self._attr.value.flag = 1
        self._config = _LaunchConfig(attrs=ctypes.pointer(self._attr), num_attrs=1)

    def __call__(self, function, gx, gy, gz, bx, by, bz, smem, stream, params, extra) -> None:
        config = self._config
        config.grid[:] = gx, gy, gz
        config.block[:] = bx, by, bz
        config.shared_mem_bytes, config.stream = smem, stream
        status = _launch_kernel_ex()(ctypes.byref(config), function, params, extra or None)
        if status:
            raise LaunchError(f"cuLaunchKernelEx (programmatic dependent launch) failed with CUresult {status}")


class Slot(int):
    """A pointer argument in a launch being packed: the index of its value in a call's pointers."""


class _Launch:
    __slots__ = ("head", "values", "params", "view", "params_ptr", "runs", "reads", "struct_slots", "structs")

    def __init__(self, function, grid, block, smem: int, args: tuple):
        n = len(args)
        self.values = np.zeros(max(n, 1), dtype=np.uint64)
        self.params = np.zeros(max(n, 1), dtype=np.uint64)
        self.view = memoryview(self.values).cast("B")
        base = self.values.ctypes.data
        slots = []  # (argument position, pointer index)
        self.struct_slots = []  # argument positions passed by the address of their own bytes
        for i, a in enumerate(args):
            if type(a) is Slot:
                slots.append((i, int(a)))
            elif isinstance(a, np.generic) and a.nbytes <= _SLOT:
                self.view[i * _SLOT:i * _SLOT + a.nbytes] = a.tobytes()
            elif hasattr(a, "ptr"):  # a struct: params holds its own address (set_structs)
                self.struct_slots.append(i)
            else:
                raise LaunchError(f"argument {i} ({type(a).__name__}) cannot be packed")
            self.params[i] = base + i * _SLOT
        self.structs = ()
        self.set_structs(args)
        self.runs = []  # (byte offset, Struct of n pointers, getter of their values from a call's tuple)
        start = 0
        while start < len(slots):
            end = start + 1
            while end < len(slots) and slots[end][0] == slots[end - 1][0] + 1:
                end += 1
            run = [p for _, p in slots[start:end]]
            getter = operator.itemgetter(*run) if len(run) > 1 else (lambda ptrs, i=run[0]: (ptrs[i],))
            self.runs.append((slots[start][0] * _SLOT, struct.Struct(f"{len(run)}Q"), getter))
            start = end
        self.reads = {p for _, p in slots}
        self.head = (function.ptr, *(int(x) for x in grid), *(int(x) for x in block), int(smem))
        self.params_ptr = self.params.ctypes.data

    def set_structs(self, args: tuple) -> None:
        """Pass the structs of `args` (this launch's arguments built anew) by address; they are kept alive
        while their addresses are in params."""
        self.structs = tuple(args[i] for i in self.struct_slots)
        for i, a in zip(self.struct_slots, self.structs):
            self.params[i] = a.ptr


class PackedSequence:
    """launches: (function, grid, block, smem, args) in launch order; pointer arguments as Slot.
    __call__(pointers, stream_ptr, start, stop) writes pointers[slot] into each slot of launches
    start..stop-1 and launches them in order on the raw stream (0: the legacy default stream).
    A lock makes each write-and-launch atomic (the driver copies the values at the call). programmatic: every
    launch is a programmatic dependent launch (_ProgrammaticLaunch).

    Launches with structs that embed pointers (the forward's TMA maps embed q, k, v, and o with a TMA O
    store) take rebuild(pointers): every launch's arguments built for these pointers (only their structs
    are used), called when one of the first `embedded` pointers differs from those of the last build;
    `pointers`: those the launches' structs were built from."""

    def __init__(self, launches: list, rebuild=None, embedded: int = 0, pointers: tuple = (),
                 programmatic: bool = False):
        from cupy.cuda import driver

        self.launches = [_Launch(*launch) for launch in launches]
        self._launch = _ProgrammaticLaunch() if programmatic else driver.launchKernel
        self._lock = threading.Lock()
        self._rebuild = rebuild if any(launch.struct_slots for launch in self.launches) else None
        self._embedded = embedded
        self._built_for = tuple(pointers[:embedded])

    def leading(self, slots) -> int:
        """How many launches, from the first, read none of these pointer slots (they can be
        launched before those pointers exist, e.g. before the outputs are allocated)."""
        n = 0
        for launch in self.launches:
            if launch.reads & set(slots):
                break
            n += 1
        return n

    def __call__(self, pointers: tuple, stream_ptr: int, start: int = 0, stop: int | None = None) -> None:
        ensure_context()
        launch_kernel = self._launch
        with self._lock:
            if self._rebuild is not None and pointers[:self._embedded] != self._built_for:
                for launch, args in zip(self.launches, self._rebuild(pointers)):
                    launch.set_structs(args)
                self._built_for = tuple(pointers[:self._embedded])
            for launch in self.launches[start:stop]:
                view = launch.view
                for offset, packer, getter in launch.runs:
                    packer.pack_into(view, offset, *getter(pointers))
                launch_kernel(*launch.head, stream_ptr, launch.params_ptr, 0)


def param_bytes(sequence: PackedSequence, launch: int, index: int) -> bytes:
    """The 8-byte slot of argument `index` of launch `launch` as packed now (tests)."""
    return bytes(sequence.launches[launch].view[index * _SLOT:(index + 1) * _SLOT])
