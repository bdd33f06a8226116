"""decode_attention(): the split-KV decode call (autoflash/ops/decode*.py) for PyTorch tensors,
with every input checked before anything is launched. autoflash.attention_with_kvcache
(serve/kvcache.py) and autoflash.attention's decode route (serve/api.py) call it. torch and CuPy
are imported where used, so `import autoflash` needs neither."""
from __future__ import annotations

import functools
import math

from autoflash.kernels.compile import compile_kernel
from autoflash.kernels.device import device_arch
from autoflash.kernels.loaded import LoadedKernel, stream_handle
from autoflash.ops import decode_launch
from autoflash.ops.decode import DECODE
from autoflash.ops.decode_kernels import HEAD_DIMS, MAX_SPLITS, MMA, DecodeConfig, m_tiles_for
from autoflash.ops.decode_launch import DecodeProblem
from autoflash.serve import dispatch
from autoflash.serve.errors import InputError

LAYOUTS = ("bshd", "bhsd")  # (batch, tokens, heads, D) as flash-attn's kv cache; (batch, heads, tokens, D)
_DTYPES = {"torch.float16": "fp16", "torch.bfloat16": "bf16"}


def decode_attention(q, k_cache, v_cache, cache_seqlens=None, *, causal: bool = True, softmax_scale=None,
                     return_lse: bool = False, num_splits: int | None = None, layout: str = "bshd",
                     config: DecodeConfig | dict | None = None):
    """Attention of the last Nq query tokens of each sequence over its KV cache.

    q: (B, Nq, Hq, D) for layout "bshd", (B, Hq, Nq, D) for "bhsd"; k_cache, v_cache:
    (B, Nk, Hkv, D) or (B, Hkv, Nk, D); any strides with D contiguous (16-byte aligned rows).
    Query head j reads KV head j // (Hq / Hkv). cache_seqlens: int32 (B,), the valid length of
    each sequence (<= Nk; None: all Nk); the queries are its last Nq positions, so with causal
    query i sees keys 0 .. L - Nq + i (bottom-right). A sequence of length 0 (or a query that
    sees no key) gives output 0 and LSE -inf. The split count depends on shapes only (never on
    the cache_seqlens values), so a CUDA graph captured once replays correctly with new lengths;
    outside capture the lengths are checked on the host, inside it the kernel clamps them to
    [0, Nk] (no address outside the cache is ever formed).

    Returns O (the layout and dtype of q), and with return_lse the LSE (B, Hq, Nq), fp32, natural log.
    """
    p, layout_strides, dtype = _check_arrays(q, k_cache, v_cache, layout, causal)  # before importing torch
    import cupy
    import torch

    seqlens = _check_seqlens(cache_seqlens, p.batch, p.seq_k, q.device)
    scale = 1.0 / math.sqrt(p.head_dim) if softmax_scale is None else _check_scale(softmax_scale)
    if num_splits is not None and (type(num_splits) is not int or not 1 <= num_splits <= MAX_SPLITS):
        raise InputError(f"num_splits must be an int in 1..{MAX_SPLITS} (or None for the heuristic), got {num_splits!r}")

    kernel = _kernel_for(_choose_config(config, dtype, p, q.device.index), q.device.index)
    splits = decode_launch.choose_splits(kernel, p, num_splits)
    o = torch.empty(q.shape, dtype=q.dtype, device=q.device)  # q's layout, contiguous
    lse = torch.empty((p.batch, p.heads_q, p.seq_q), dtype=torch.float32, device=q.device)
    n_o, n_l = decode_launch.workspace_sizes(p, splits)
    o_part = torch.empty(n_o, dtype=torch.float32, device=q.device) if n_o else None
    lse_part = torch.empty(n_l, dtype=torch.float32, device=q.device) if n_l else None
    strides = layout_strides + _token_head_strides(o, layout)
    plan = decode_launch.plan_for(kernel, p, strides, splits, scale)
    with cupy.cuda.Device(q.device.index):
        plan(q.data_ptr(), k_cache.data_ptr(), v_cache.data_ptr(), o.data_ptr(), lse.data_ptr(),
             o_part.data_ptr() if n_o else 0, lse_part.data_ptr() if n_l else 0,
             seqlens.data_ptr() if seqlens is not None else 0, _current_stream(q.device.index))
    return (o, lse) if return_lse else o


def _token_head_strides(x, layout: str) -> tuple[int, int, int]:
    """(batch, token, head) element strides of a 4-D tensor in `layout`."""
    s = x.stride()
    return (s[0], s[1], s[2]) if layout == "bshd" else (s[0], s[2], s[1])


def _current_stream(device_index: int):
    """torch's current stream on that device (the capture stream inside a CUDA graph capture).
    torch._C._cuda_getCurrentRawStream is what compiled code calls; current_stream() builds a
    Stream object per call (several us), so it is only the fallback."""
    import torch

    raw = getattr(torch._C, "_cuda_getCurrentRawStream", None)
    ptr = raw(device_index) if raw is not None else torch.cuda.current_stream(device_index).cuda_stream
    return stream_handle(ptr)


def _check_arrays(q, k, v, layout: str, causal):
    for name, x in (("q", q), ("k_cache", k), ("v_cache", v)):
        if not type(x).__module__.startswith("torch") or not hasattr(x, "is_cuda"):
            raise InputError(f"{name} is a {type(x).__name__}; the decode path takes PyTorch CUDA tensors")
        if not x.is_cuda:
            raise InputError(f"{name} is on {x.device}; the decode path runs on CUDA tensors")
        if x.dim() != 4:
            raise InputError(f"{name} has {x.dim()} dimensions (shape {tuple(x.shape)}); expected 4")
    if layout not in LAYOUTS:
        raise InputError(f"layout {layout!r} is not one of {LAYOUTS}")
    if type(causal) is not bool:
        raise InputError(f"causal must be True or False, got {causal!r}")
    if not (q.device == k.device == v.device):
        raise InputError(f"q, k_cache, v_cache are on different devices ({q.device}, {k.device}, {v.device})")
    dtype = _DTYPES.get(str(q.dtype))
    if dtype is None:
        raise InputError(f"q has dtype {q.dtype}; decode supports float16 and bfloat16")
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise InputError(f"dtypes differ: q {q.dtype}, k_cache {k.dtype}, v_cache {v.dtype}")
    if tuple(k.shape) != tuple(v.shape):
        raise InputError(f"k_cache {tuple(k.shape)} and v_cache {tuple(v.shape)} differ in shape")
    b, nq, hq, d = q.shape if layout == "bshd" else (q.shape[0], q.shape[2], q.shape[1], q.shape[3])
    bk, nk, hkv, dk = k.shape if layout == "bshd" else (k.shape[0], k.shape[2], k.shape[1], k.shape[3])
    if bk != b:
        raise InputError(f"q has batch {b}, the caches {bk}")
    if dk != d:
        raise InputError(f"q has head dim {d}, the caches {dk}")
    if d not in HEAD_DIMS:
        raise InputError(f"head dim {d} is not supported by decode (supported: {list(HEAD_DIMS)})")
    if b < 1 or nq < 1 or hq < 1 or hkv < 1:
        raise InputError(f"empty problem: batch {b}, query tokens {nq}, query heads {hq}, KV heads {hkv}")
    if hq % hkv:
        raise InputError(f"query heads {hq} are not a multiple of KV heads {hkv}")
    if nk >= 2**31 or hq * nq >= 2**31:
        raise InputError(f"cache length {nk} or query rows {hq * nq} exceed the kernel's int32 indices")
    for name, x in (("q", q), ("k_cache", k), ("v_cache", v)):
        if x.stride(3) != 1:
            raise InputError(f"{name} is not contiguous in D (strides {tuple(x.stride())}); the kernel copies "
                             f"16-byte chunks of a row")
        if any(s % 8 for s in x.stride()[:3]) or x.data_ptr() % 16:
            raise InputError(f"{name}'s rows are not 16-byte aligned (strides {tuple(x.stride())} elements, "
                             f"address {x.data_ptr():#x}); strides must be multiples of 8 elements")
    p = DecodeProblem(b, hq, hkv, nq, nk, d, causal)
    return p, _token_head_strides(q, layout) + _token_head_strides(k, layout) + _token_head_strides(v, layout), dtype


def _check_seqlens(seqlens, batch: int, cache_len: int, device):
    """cache_seqlens -> an int32 tensor on q's device, its values in [0, cache_len] (checked on the
    host, except while a CUDA graph is being captured, where no host copy is possible and the
    kernel clamps instead)."""
    import torch

    if seqlens is None:
        return None
    if not isinstance(seqlens, torch.Tensor):
        raise InputError(f"cache_seqlens is a {type(seqlens).__name__}; pass an int32 torch tensor of shape ({batch},)")
    if seqlens.dtype != torch.int32:
        raise InputError(f"cache_seqlens has dtype {seqlens.dtype}; expected torch.int32")
    if tuple(seqlens.shape) != (batch,):
        raise InputError(f"cache_seqlens has shape {tuple(seqlens.shape)}; expected ({batch},)")
    if seqlens.device.type == "cuda" and seqlens.device != device:
        raise InputError(f"cache_seqlens is on {seqlens.device}, q on {device}")
    if not (seqlens.device.type == "cuda" and torch.cuda.is_current_stream_capturing()):
        lo, hi = int(seqlens.min()), int(seqlens.max())
        if lo < 0 or hi > cache_len:
            bad = lo if lo < 0 else hi
            raise InputError(f"cache_seqlens holds {bad}, outside [0, {cache_len}] (the cache length)")
    return seqlens.to(device).contiguous()


def _check_scale(scale) -> float:
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise InputError(f"softmax_scale must be a finite number, got {scale!r}")
    return float(scale)


def _choose_config(config, dtype: str, p, device_id: int) -> DecodeConfig:
    """The caller's config (checked against the problem), else the heuristic default for this GPU."""
    key = {"dtype": dtype, "head_dim": p.head_dim, "m_tiles": m_tiles_for(p.rows, p.head_dim)}
    if config is None:  # a tuned entry for this GPU and cache length, else the heuristic default
        arch, name = device_arch(device_id)
        return dispatch.select(arch, name, DECODE.name, key, p.seq_k)
    if isinstance(config, dict):
        config = DecodeConfig.from_dict(config)
    if not isinstance(config, DecodeConfig):
        raise InputError(f"config must be a DecodeConfig or a dict, got {type(config).__name__}")
    config.validate()
    if (config.dtype, config.head_dim) != (dtype, p.head_dim):
        raise InputError(f"config {config.name} is for {config.dtype} d{config.head_dim}, "
                         f"the inputs are {dtype} d{p.head_dim}")
    return config


@functools.lru_cache(maxsize=64)
def _kernel_for(cfg: DecodeConfig, device_id: int):
    import cupy

    with cupy.cuda.Device(device_id):
        return LoadedKernel(compile_kernel(cfg))


__all__ = ["decode_attention", "LAYOUTS", "MMA"]
