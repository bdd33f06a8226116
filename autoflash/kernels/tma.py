"""Host-side TMA tensor maps (CUtensorMap), encoded with the driver's
cuTensorMapEncodeTiled through ctypes on libcuda.so.1 (CuPy 14 does not wrap it).

A tensor map is a 128-byte, 64-byte-aligned opaque struct that the kernel takes
by value as a `const __grid_constant__` parameter. CuPy passes every kernel
argument as a pointer in cuLaunchKernel's kernelParams array, so a
`cupy.cuda.function.CPointer` holding the address of our host copy makes the
driver copy the 128 bytes into the parameter space at launch.

flash_fwd_wgmma views each (B, H, N, D) tensor as a 4-D tensor (D, N, H, B)
(innermost first) with the tensor's own strides, so any layout with a contiguous
head dim and 16-byte-multiple strides (e.g. a transposed (B, N, H, D) view) is read
in place, and the sequence bound is per head: rows past N are zero-filled by the
copy engine, never read from the next head.
"""
from __future__ import annotations

import ctypes
import functools
import threading
from collections import OrderedDict

from autoflash.kernels.elements import DTYPE_BYTES

TENSOR_MAP_BYTES = 128
TENSOR_MAP_ALIGN = 64

# CUtensorMapDataType (cuda.h)
DATA_TYPES = {"fp16": 6, "bf16": 9}
# CUtensorMapSwizzle
SWIZZLE = {0: 0, 32: 1, 64: 2, 128: 3}
INTERLEAVE_NONE = 0
L2_PROMOTION_256B = 3  # CU_TENSOR_MAP_L2_PROMOTION_L2_256B
OOB_FILL_ZERO = 0  # CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE: out-of-bounds elements read as zero


class TmaError(RuntimeError):
    """The driver refused to encode a tensor map."""


@functools.cache
def _encode_fn():
    lib = ctypes.CDLL("libcuda.so.1")
    fn = lib.cuTensorMapEncodeTiled
    u32, u64 = ctypes.c_uint32, ctypes.c_uint64
    fn.argtypes = [
        ctypes.c_void_p,  # CUtensorMap* tensorMap
        ctypes.c_int,  # CUtensorMapDataType
        u32,  # tensorRank
        ctypes.c_void_p,  # globalAddress
        ctypes.POINTER(u64),  # globalDim[rank]
        ctypes.POINTER(u64),  # globalStrides[rank-1] (bytes)
        ctypes.POINTER(u32),  # boxDim[rank]
        ctypes.POINTER(u32),  # elementStrides[rank]
        ctypes.c_int,  # interleave
        ctypes.c_int,  # swizzle
        ctypes.c_int,  # l2Promotion
        ctypes.c_int,  # oobFill
    ]
    fn.restype = ctypes.c_int
    return fn


class TensorMap:
    """One encoded CUtensorMap in 64-byte-aligned host memory."""

    __slots__ = ("_buf", "address")

    def __init__(self):
        self._buf = ctypes.create_string_buffer(TENSOR_MAP_BYTES + TENSOR_MAP_ALIGN)
        base = ctypes.addressof(self._buf)
        self.address = (base + TENSOR_MAP_ALIGN - 1) // TENSOR_MAP_ALIGN * TENSOR_MAP_ALIGN

    def raw(self) -> bytes:
        return ctypes.string_at(self.address, TENSOR_MAP_BYTES)

    def kernel_arg(self):
        """What CuPy's launcher accepts for a by-value struct parameter: a pointer to its
        bytes (a CPointer that also keeps this map alive until the launch is done)."""
        return _map_arg_class()(self)


@functools.lru_cache(maxsize=256)
def _encode_params(dtype: str, dims: tuple, strides_bytes: tuple, box: tuple, swizzle_bytes: int) -> tuple:
    """The checks and the ctypes arrays of one geometry, done once: Q, K and V maps of
    one shape, and every later pointer set of that shape, differ only in the pointer."""
    rank = len(dims)
    if len(box) != rank or len(strides_bytes) != rank - 1:
        raise TmaError(f"rank mismatch: dims {dims}, strides {strides_bytes}, box {box}")
    if any(s % 16 for s in strides_bytes):
        raise TmaError(f"global strides {strides_bytes} must be multiples of 16 bytes")
    if any(b < 1 or b > 256 for b in box):
        raise TmaError(f"box {box}: each extent must be in 1..256")
    if swizzle_bytes and box[0] * DTYPE_BYTES[dtype] > swizzle_bytes:
        raise TmaError(f"inner box extent {box[0]} x {DTYPE_BYTES[dtype]} B exceeds the {swizzle_bytes} B swizzle span")
    u32, u64 = ctypes.c_uint32, ctypes.c_uint64
    return (DATA_TYPES[dtype], rank, (u64 * rank)(*dims), (u64 * max(1, rank - 1))(*strides_bytes),
            (u32 * rank)(*box), (u32 * rank)(*([1] * rank)), SWIZZLE[swizzle_bytes])


def encode_tiled(ptr: int, dtype: str, dims: tuple[int, ...], strides_bytes: tuple[int, ...],
                 box: tuple[int, ...], swizzle_bytes: int = 128) -> TensorMap:
    """cuTensorMapEncodeTiled for a dense tensor; dims/box innermost first."""
    data_type, rank, dims_a, strides_a, box_a, elem_strides_a, swizzle = _encode_params(
        dtype, tuple(dims), tuple(strides_bytes), tuple(box), swizzle_bytes)
    if ptr % 16:
        raise TmaError(f"global address {ptr:#x} is not 16-byte aligned")
    tmap = TensorMap()
    res = _encode_fn()(tmap.address, data_type, rank, ptr, dims_a, strides_a, box_a, elem_strides_a,
                       INTERLEAVE_NONE, swizzle, L2_PROMOTION_256B, OOB_FILL_ZERO)
    if res != 0:
        raise TmaError(f"cuTensorMapEncodeTiled failed with CUresult {res}{_context_note(res)} "
                       f"(dims {dims}, strides {strides_bytes}, box {box}, dtype {dtype})")
    return tmap


def _context_note(res: int) -> str:
    """For CUDA_ERROR_INVALID_CONTEXT (201), what this thread had bound: the test suite saw it once in a worker
    thread (benchmarks/NOTES.md, fifteenth session) and the next one should say which case it was."""
    if res != 201:
        return ""
    ctx = ctypes.c_void_p()
    got = ctypes.CDLL("libcuda.so.1").cuCtxGetCurrent(ctypes.byref(ctx))
    bound = f"context {ctx.value:#x}" if ctx.value else "no context"
    return (f" (CUDA_ERROR_INVALID_CONTEXT: thread {threading.current_thread().name!r} has {bound} current, "
            f"cuCtxGetCurrent returned {got})")


def attention_operand_map(ptr: int, dtype: str, batch: int, heads: int, rows_per_head: int, head_dim: int,
                          strides: tuple[int, int, int], box_rows: int, box_cols: int = 64) -> TensorMap:
    """A (B, H, N, D) tensor with element strides (batch, head, token) and a contiguous head
    dim, as 4-D (D, N, H, B); box = box_cols x box_rows x 1 x 1, swizzled 128 B (box_cols *
    element size must be 128 B)."""
    eb = DTYPE_BYTES[dtype]
    sb, sh, sn = strides
    return encode_tiled(ptr, dtype, (head_dim, rows_per_head, heads, batch), (sn * eb, sh * eb, sb * eb),
                        (box_cols, box_rows, 1, 1), 128)


@functools.cache
def _map_arg_class():
    from cupy.cuda.function import CPointer

    class TensorMapArg(CPointer):
        def __init__(self, tmap: "TensorMap"):
            super().__init__(tmap.address)
            self.tmap = tmap

    return TensorMapArg


class _MapCache:
    """A bounded least-recently-used cache of tensor maps. A map embeds a raw device
    pointer, so every key holds the pointer and the whole geometry the map encodes:
    a freed pointer reused by a tensor of another shape or dtype gets a new key, and
    one reused with the same geometry is served the same (identical) map."""

    def __init__(self, size: int = 256):
        self.size = size
        self.lock = threading.Lock()
        self.items: OrderedDict = OrderedDict()

    def get(self, key, make, *args):
        """The item for key, built as make(*args) on a miss (no closure per call)."""
        with self.lock:
            item = self.items.get(key)
            if item is not None:
                self.items.move_to_end(key)
                return item
        item = make(*args)  # outside the lock: encoding calls the driver
        with self.lock:
            self.items[key] = item
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return item

    def clear(self) -> None:
        with self.lock:
            self.items.clear()


_CACHE = _MapCache()


def cached_operand_map(ptr: int, dtype: str, batch: int, heads: int, rows_per_head: int, head_dim: int,
                       strides: tuple[int, int, int], box_rows: int, box_cols: int = 64) -> TensorMap:
    key = (ptr, dtype, batch, heads, rows_per_head, head_dim, tuple(strides), box_rows, box_cols)
    return _CACHE.get(key, attention_operand_map, *key)


def _qkv_map_args(q: int, k: int, v: int, dtype: str, batch: int, heads_q: int, heads_kv: int, seq_q: int,
                  seq_k: int, head_dim: int, q_strides: tuple, k_strides: tuple, v_strides: tuple, block_m: int,
                  block_n: int, head_dim_v: int = 0) -> tuple:
    dim_v = head_dim_v or head_dim  # V's own head dim (Dv != Dqk), else Q/K's
    tq = attention_operand_map(q, dtype, batch, heads_q, seq_q, head_dim, q_strides, block_m)
    tk = attention_operand_map(k, dtype, batch, heads_kv, seq_k, head_dim, k_strides, block_n)
    tv = (tk if (v, v_strides, dim_v) == (k, k_strides, head_dim)
          else attention_operand_map(v, dtype, batch, heads_kv, seq_k, dim_v, v_strides, block_n))
    return tq.kernel_arg(), tk.kernel_arg(), tv.kernel_arg()


_QKV_CACHE = _MapCache()


def qkv_map_args(q: int, k: int, v: int, dtype: str, batch: int, heads_q: int, heads_kv: int, seq_q: int,
                 seq_k: int, head_dim: int, q_strides: tuple, k_strides: tuple, v_strides: tuple, block_m: int,
                 block_n: int, head_dim_v: int = 0) -> tuple:
    """The kernel arguments of the Q, K and V tensor maps of one launch, from one cache
    look-up (the per-call path of flash_fwd_wgmma). The key holds the pointers and the whole
    geometry, element strides included. head_dim_v: V's head dim when it differs (0: head_dim).
    Each argument keeps its map alive."""
    key = (q, k, v, dtype, batch, heads_q, heads_kv, seq_q, seq_k, head_dim, tuple(q_strides), tuple(k_strides),
           tuple(v_strides), block_m, block_n, head_dim_v if head_dim_v != head_dim else 0)
    return _QKV_CACHE.get(key, _qkv_map_args, *key)
