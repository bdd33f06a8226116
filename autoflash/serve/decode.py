"""decode_attention(): the split-KV decode call (autoflash/ops/decode*.py) for PyTorch tensors, contiguous or paged
caches, with every input checked before anything is launched: check_decode (the checks) then launch_decode (no
checks; a caller that checked its inputs itself, like autoflash.attention()'s decode route, may call it directly).
autoflash.attention_with_kvcache (serve/kvcache.py) and autoflash.attention's decode route (serve/api.py) call
decode_attention. torch and CuPy are imported where used, so `import autoflash` needs neither."""
from __future__ import annotations

import contextlib
import dataclasses
import functools

import numpy as np

from autoflash import store
from autoflash.kernels.compile import compile_kernel
from autoflash.kernels.device import device_arch
from autoflash.kernels.loaded import LoadedKernel, stream_handle
from autoflash.kernels.template import spell_values
from autoflash.ops import decode_kernels, decode_launch
from autoflash.ops.decode import DECODE
from autoflash.ops.decode_kernels import (DEFAULT_L2_PREFETCH, HEAD_DIMS, MAX_SPLITS, MMA, DecodeConfig,
                                         m_blocks, m_tiles_for)
from autoflash.ops.decode_launch import DecodeProblem
from autoflash.serve import dispatch
from autoflash.serve.errors import InputError
from autoflash.serve.operands import check_scale
from autoflash.serve.variants import VARIANTS_DOC, Variants, check_variants

LAYOUTS = ("bshd", "bhsd")  # (batch, tokens, heads, D) as flash-attn's kv cache; (batch, heads, tokens, D)
_DTYPES = {"torch.float16": "fp16", "torch.bfloat16": "bf16"}


def decode_attention(q, k_cache, v_cache, cache_seqlens=None, *, block_table=None, causal: bool = True,
                     softmax_scale=None, return_lse: bool = False, num_splits: int | None = None,
                     layout: str = "bshd", config: DecodeConfig | dict | None = None, window_size=(-1, -1),
                     softcap=None, sinks=None, alibi_slopes=None):
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

    Paged caches (block_table given, layout "bshd"): k_cache, v_cache are (num_pages, page_size,
    Hkv, D), page_size a multiple of 16 (any: 16, 32, 48, ..., 256, ...), and block_table an int32
    CUDA tensor (B, max_pages) on the caches' device whose row b lists sequence b's pages in key
    order (Nk = max_pages * page_size; pages may be shared between sequences). See check_decode
    for what is checked where.

    Variants (autoflash.attention()'s arguments, decode's diagonal: query i of Nq at L - Nq + i):
{variants}
    With a window the splits share only the keys the window covers, [L - Nq - left, L): a
    4096-key window over a 128k cache reads about 4096 keys per sequence.

    Returns O (the layout and dtype of q), and with return_lse the LSE (B, Hq, Nq), fp32, natural log.
    """
    checked = check_decode(q, k_cache, v_cache, cache_seqlens, block_table=block_table, causal=causal,
                           softmax_scale=softmax_scale, num_splits=num_splits, layout=layout, config=config,
                           window_size=window_size, softcap=softcap, sinks=sinks, alibi_slopes=alibi_slopes)
    return launch_decode(q, k_cache, v_cache, return_lse=return_lse, **checked)


decode_attention.__doc__ = decode_attention.__doc__.replace("{variants}", VARIANTS_DOC)


def check_decode(q, k_cache, v_cache, cache_seqlens=None, *, block_table=None, causal: bool = True,
                 softmax_scale=None, num_splits: int | None = None, layout: str = "bshd",
                 config: DecodeConfig | dict | None = None, window_size=(-1, -1), softcap=None, sinks=None,
                 alibi_slopes=None) -> dict:
    """Every check of decode_attention, nothing launched; returns launch_decode's keyword
    arguments, normalised (cache_seqlens an int32 tensor on q's device, the scale a float, the
    config a validated DecodeConfig or None).

    Checked on the host: shapes, dtypes, devices, strides and alignment; cache_seqlens in
    [0, Nk]; a paged cache's page size (a multiple of 16) and block table (int32, (B, max_pages),
    on the caches' device, rows contiguous), and every table entry a sequence uses (the first
    ceil(L / page_size) of its row) in [0, num_pages): the table (and cache_seqlens) is copied to
    the host for that, a small synchronous copy. While a CUDA graph is being captured no copy is
    possible: the values are not checked then, and the kernel guards instead: lengths are clamped
    to [0, Nk] and a page number outside [0, num_pages) reads page 0, so no address outside the
    caches is ever formed (a bad table gives wrong values, never a wild read). The variants:
    serve/variants.check_variants, the checks of autoflash.attention()."""
    p, _, dtype = _check_arrays(q, k_cache, v_cache, layout, causal, block_table)  # before importing torch
    variants = check_variants(window_size, softcap, sinks, alibi_slopes, causal=causal, kind="torch",
                              device=q.device.index, batch=p.batch, heads_q=p.heads_q)
    p = _with_variants(p, variants)
    seqlens, host_seqlens = _check_seqlens(cache_seqlens, p.batch, p.seq_k, q.device)
    if block_table is not None:  # the lengths' one host copy serves the table check too
        _check_table_entries(block_table, seqlens if host_seqlens is None else host_seqlens, p)
    scale = check_scale(softmax_scale, p.head_dim, "softmax_scale")
    if num_splits is not None and (type(num_splits) is not int or not 1 <= num_splits <= MAX_SPLITS):
        raise InputError(f"num_splits must be an int in 1..{MAX_SPLITS} (or None for the heuristic), got {num_splits!r}")
    return dict(cache_seqlens=seqlens, block_table=block_table, causal=causal, softmax_scale=scale,
                num_splits=num_splits, layout=layout, config=_checked_config(config, dtype, p),
                variants=variants if variants.any else None)


def launch_decode(q, k_cache, v_cache, *, cache_seqlens=None, block_table=None, causal: bool,
                  softmax_scale: float, return_lse: bool = False, num_splits: int | None = None,
                  layout: str = "bshd", config: DecodeConfig | None = None, variants: Variants | None = None):
    """The launch half of decode_attention, with no input checks: for inputs check_decode has
    normalised, or ones the caller checked itself (autoflash.attention()'s check_inputs and
    route_attention establish the same facts for its (B, H, N, D) tensors: call this with
    layout="bhsd" and a float softmax_scale). A pinned config is still matched to the inputs'
    dtype and head dim (a few comparisons). variants: check_variants' result (None: plain), the
    diagonal decode's own (bottom-right)."""
    import torch

    p, layout_strides, dtype = _problem(q, k_cache, v_cache, layout, causal, block_table)
    if variants is not None:
        p = _with_variants(p, variants)
    device = q.device.index
    kernel = _kernel_for(_choose_config(config, dtype, p, device), device)
    splits = decode_launch.choose_splits(kernel, p, num_splits)
    o = torch.empty(q.shape, dtype=q.dtype, device=q.device)  # q's layout, contiguous
    lse = torch.empty((p.batch, p.heads_q, p.seq_q), dtype=torch.float32, device=q.device)
    n_o, n_l = decode_launch.workspace_sizes(p, splits)
    o_part = torch.empty(n_o, dtype=torch.float32, device=q.device) if n_o else None
    lse_part = torch.empty(n_l, dtype=torch.float32, device=q.device) if n_l else None
    strides = layout_strides + _token_head_strides(o, layout)
    table_stride = block_table.stride(0) if block_table is not None else 0
    args = (q.data_ptr(), k_cache.data_ptr(), v_cache.data_ptr(), o.data_ptr(), lse.data_ptr(),
            o_part.data_ptr() if n_o else 0, lse_part.data_ptr() if n_l else 0,
            cache_seqlens.data_ptr() if cache_seqlens is not None else 0, _current_stream(device),
            block_table.data_ptr() if block_table is not None else 0)
    if variants is not None:
        args += (variants.sinks_ptr, variants.alibi_ptr)
    with _on_device(device):  # the plan reads the SM count and allocates on the kernel's device
        decode_launch.plan_for(kernel, p, strides, splits, softmax_scale, table_stride)(*args)
    return (o, lse) if return_lse else o


def _with_variants(p: DecodeProblem, v: Variants) -> DecodeProblem:
    """The problem with the checked variants' values (the pointers go with each launch)."""
    return dataclasses.replace(p, window_left=v.window_left, window_right=v.window_right, softcap=v.softcap,
                               sinks=v.sinks is not None, alibi=v.alibi is not None,
                               alibi_per_batch=v.alibi_batch_stride > 0)


def _on_device(index: int):
    """cupy.cuda.Device(index) only when it is not already current (entering it costs a few us)."""
    import cupy

    return contextlib.nullcontext() if cupy.cuda.runtime.getDevice() == index else cupy.cuda.Device(index)


def _problem(q, k, v, layout: str, causal: bool, block_table):
    """(DecodeProblem, (q, k, v) element strides (batch|page, token, head), dtype name) from
    shapes and strides alone."""
    b, nq, hq, d = q.shape if layout == "bshd" else (q.shape[0], q.shape[2], q.shape[1], q.shape[3])
    nk, hkv = (k.shape[1], k.shape[2]) if layout == "bshd" else (k.shape[2], k.shape[1])
    if block_table is None:
        p = DecodeProblem(b, hq, hkv, nq, nk, d, causal)
    else:  # nk is the page size; the capacity is what a table row addresses
        p = DecodeProblem(b, hq, hkv, nq, block_table.shape[1] * nk, d, causal, page_size=nk, num_pages=k.shape[0])
    strides = _token_head_strides(q, layout) + _token_head_strides(k, layout) + _token_head_strides(v, layout)
    return p, strides, _DTYPES.get(str(q.dtype))


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


def _check_arrays(q, k, v, layout: str, causal, block_table):
    for name, x in (("q", q), ("k_cache", k), ("v_cache", v)):
        if not type(x).__module__.startswith("torch") or not hasattr(x, "is_cuda"):
            raise InputError(f"{name} is a {type(x).__name__}; the decode path takes PyTorch CUDA tensors")
        if not x.is_cuda:
            raise InputError(f"{name} is on {x.device}; the decode path runs on CUDA tensors")
        if x.dim() != 4:
            raise InputError(f"{name} has {x.dim()} dimensions (shape {tuple(x.shape)}); expected 4")
    if layout not in LAYOUTS:
        raise InputError(f"layout {layout!r} is not one of {LAYOUTS}")
    if block_table is not None and layout != "bshd":
        raise InputError("a paged cache is (num_pages, page_size, heads_kv, head_dim): block_table needs layout 'bshd'")
    if type(causal) is not bool:
        raise InputError(f"causal must be True or False, got {causal!r}")
    if not (q.device == k.device == v.device):
        raise InputError(f"q, k_cache, v_cache are on different devices ({q.device}, {k.device}, {v.device})")
    dtype = _DTYPES.get(str(q.dtype))
    if dtype is None:
        raise InputError(f"q has dtype {q.dtype}; decode supports float16 and bfloat16 (float32 decode has no "
                         "kernel yet: autoflash.attention() serves float32 with the forward kernel)")
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise InputError(f"dtypes differ: q {q.dtype}, k_cache {k.dtype}, v_cache {v.dtype}")
    if tuple(k.shape) != tuple(v.shape):
        raise InputError(f"k_cache {tuple(k.shape)} and v_cache {tuple(v.shape)} differ in shape")
    b, nq, hq, d = q.shape if layout == "bshd" else (q.shape[0], q.shape[2], q.shape[1], q.shape[3])
    bk, nk, hkv, dk = k.shape if layout == "bshd" else (k.shape[0], k.shape[2], k.shape[1], k.shape[3])
    if block_table is None and bk != b:
        raise InputError(f"q has batch {b}, the caches {bk}")
    if dk != d:
        raise InputError(f"q has head dim {d}, the caches {dk}")
    if d not in HEAD_DIMS:
        raise InputError(f"head dim {d} is not supported by decode (supported: {spell_values(HEAD_DIMS)})")
    if b < 1 or nq < 1 or hq < 1 or hkv < 1:
        raise InputError(f"empty problem: batch {b}, query tokens {nq}, query heads {hq}, KV heads {hkv}")
    if hq % hkv:
        raise InputError(f"query heads {hq} are not a multiple of KV heads {hkv}")
    if block_table is not None:
        _check_table(block_table, b, bk, nk, k.device)
        nk *= block_table.shape[1]  # the capacity a table row addresses
    if nk >= 2**31 or hq * nq >= 2**31:
        raise InputError(f"cache length {nk} or query rows {hq * nq} exceed the kernel's int32 indices")
    for name, x in (("q", q), ("k_cache", k), ("v_cache", v)):
        if x.stride(3) != 1:
            raise InputError(f"{name} is not contiguous in D (strides {tuple(x.stride())}); the kernel copies "
                             f"16-byte chunks of a row")
        if any(s % 8 for s, n in zip(x.stride()[:3], x.shape[:3]) if n > 1) or x.data_ptr() % 16:
            # (a dim of size 1 is never stepped along: index 0 times any stride)
            raise InputError(f"{name}'s rows are not 16-byte aligned (strides {tuple(x.stride())} elements, "
                             f"address {x.data_ptr():#x}); strides must be multiples of 8 elements")
    return _problem(q, k, v, layout, causal, block_table)


def _check_table(table, batch: int, num_pages: int, page_size: int, device) -> None:
    """The block table's type, shape, device and layout, and the page size the kernel supports."""
    import torch

    if not isinstance(table, torch.Tensor):
        raise InputError(f"block_table is a {type(table).__name__}; pass an int32 torch CUDA tensor "
                         f"(batch, max_pages)")
    if table.dtype != torch.int32:
        raise InputError(f"block_table has dtype {table.dtype}; expected torch.int32")
    if table.dim() != 2 or table.shape[0] != batch or table.shape[1] < 1:
        raise InputError(f"block_table has shape {tuple(table.shape)}; expected ({batch}, max_pages) with "
                         "max_pages >= 1")
    if table.device != device:
        raise InputError(f"block_table is on {table.device}, the caches on {device}: the kernel reads it there")
    if table.shape[1] > 1 and table.stride(1) != 1:
        raise InputError(f"block_table's rows are not contiguous (strides {tuple(table.stride())})")
    if page_size < 16 or page_size % 16:
        raise InputError(f"page_size {page_size} (k_cache.shape[1]) is not supported: the paged decode kernel "
                         "takes page sizes that are multiples of 16 (16, 32, 48, 64, ..., 256, ...)")
    if num_pages < 1:
        raise InputError("the paged caches hold no page (k_cache.shape[0] == 0)")


def _check_table_entries(table, seqlens, p: DecodeProblem) -> None:
    """Every entry a sequence uses (its first ceil(L / page_size)) names a page of the cache.
    A host copy of the table (and of cache_seqlens); skipped during CUDA graph capture, where
    the kernel's own guard (out-of-range pages read page 0) keeps every read inside the cache."""
    import torch

    if table.is_cuda and torch.cuda.is_current_stream_capturing():
        return
    rows = table.cpu().numpy()  # NumPy from here: a torch CPU op costs several us, this runs every call
    lengths = seqlens.cpu().numpy().astype(np.int64) if seqlens is not None else np.full(p.batch, p.seq_k)
    used = (lengths + p.page_size - 1) // p.page_size
    in_use = np.arange(p.max_pages)[None, :] < used[:, None]
    bad = in_use & ((rows < 0) | (rows >= p.num_pages))
    if bad.any():
        b, j = (int(x) for x in np.argwhere(bad)[0])
        raise InputError(f"block_table[{b}, {j}] = {int(rows[b, j])} is not a page of the cache (0..{p.num_pages - 1}); "
                         f"sequence {b} holds {int(lengths[b])} keys, so it uses its first {int(used[b])} entries")


def _check_seqlens(seqlens, batch: int, cache_len: int, device):
    """cache_seqlens -> (an int32 tensor on q's device, its host copy), its values in [0, cache_len]
    (checked on the host, one copy, except while a CUDA graph is being captured, where no host
    copy is possible (host copy None) and the kernel clamps instead). (None, None) without lengths."""
    import torch

    if seqlens is None:
        return None, None
    if not isinstance(seqlens, torch.Tensor):
        raise InputError(f"cache_seqlens is a {type(seqlens).__name__}; pass an int32 torch tensor of shape ({batch},)")
    if seqlens.dtype != torch.int32:
        raise InputError(f"cache_seqlens has dtype {seqlens.dtype}; expected torch.int32")
    if tuple(seqlens.shape) != (batch,):
        raise InputError(f"cache_seqlens has shape {tuple(seqlens.shape)}; expected ({batch},)")
    if seqlens.device.type == "cuda" and seqlens.device != device:
        raise InputError(f"cache_seqlens is on {seqlens.device}, q on {device}")
    host = None
    if not (seqlens.device.type == "cuda" and torch.cuda.is_current_stream_capturing()):
        host = seqlens.cpu()
        lo, hi = int(host.min()), int(host.max())
        if lo < 0 or hi > cache_len:
            bad = lo if lo < 0 else hi
            raise InputError(f"cache_seqlens holds {bad}, outside [0, {cache_len}] (the cache length)")
    return seqlens.to(device).contiguous(), host


def _checked_config(config, dtype: str, p: DecodeProblem) -> DecodeConfig | None:
    """The caller's config validated and matched to the problem (None: chosen at launch)."""
    if config is None:
        return None
    if isinstance(config, dict):
        config = DecodeConfig.from_dict(config)
    if not isinstance(config, DecodeConfig):
        raise InputError(f"config must be a DecodeConfig or a dict, got {type(config).__name__}")
    config.validate()
    _match(config, dtype, p)
    return config


def _match(config: DecodeConfig, dtype: str, p: DecodeProblem) -> None:
    want = {"paged": bool(p.page_size), **p.variant_flags()}
    have = {f: getattr(config, f) for f in want}
    if (config.dtype, config.head_dim, have) != (dtype, p.head_dim, want):
        def flags(d):
            return "".join(f" {f}" for f, on in d.items() if on)
        raise InputError(f"config {config.name} is for {config.dtype} d{config.head_dim}{flags(have)}, the inputs "
                         f"are {dtype} d{p.head_dim}{flags(want)}")


def _choose_config(config, dtype: str, p: DecodeProblem, device_id: int) -> DecodeConfig:
    """The caller's config (matched to the problem), else a tuned entry for this GPU and cache length, else the
    heuristic default (_for_grid). A paged cache serves what the same cache held contiguously would (same knobs
    and split count, paged set: bit-equal outputs), unless a paged entry was timed on this very grid (_paged_config)."""
    if config is None:
        arch, name = device_arch(device_id)
        key = {"dtype": dtype, "head_dim": p.head_dim, "m_tiles": m_tiles_for(p.rows, p.head_dim), "paged": False,
               **{f: on for f, on in p.variant_flags().items() if on}}  # plain keys stay as before
        tuned, stamp = dispatch.select(arch, name, DECODE.name, key, p.seq_k), dispatch.recent_files_stamp(arch)
        unpaged = _for_grid(tuned, arch, name, tuple(key.items()), p, device_id, stamp)
        if not p.page_size:
            return unpaged
        return _paged_config(arch, name, tuple(key.items()), p.seq_k, p.split_blocks(unpaged.m_tiles), unpaged, stamp)
    if isinstance(config, dict):  # attention() hands a validated config object; a dict is checked here
        return _checked_config(config, dtype, p)
    _match(config, dtype, p)
    return config


def _for_grid(cfg: DecodeConfig, arch: str, device_name: str, key: tuple, p: DecodeProblem, device_id: int,
              stamp: tuple) -> DecodeConfig:
    """Entries are found by cache length alone, their knobs timed on their own grid (batch x KV heads x m-blocks). On
    another grid a fixed split count gives way to the heuristic (the H200 d64 N=1024 entry's 1 split, from batch 256,
    left batch 1 0.73-0.78x cuDNN) and one-split grids may take decode_kernels.lighter_buffers."""
    blocks = p.split_blocks(cfg.m_tiles)
    if _entry_blocks(arch, device_name, key, p.seq_k, cfg.m_tiles, stamp) == blocks:
        return cfg
    cfg = cfg.replace(num_splits=0) if cfg.num_splits else cfg
    return decode_kernels.lighter_buffers(cfg, p.key_span, blocks, decode_launch.sm_count(device_id))


@functools.lru_cache(maxsize=256)
def _entry_blocks(arch: str, device_name: str, key: tuple, seq_k: int, m_tiles: int, stamp: tuple = ()) -> int | None:
    """Blocks of one split of the timed problem of the entry serving this key (None: no entry or problem). `stamp`
    (dispatch.recent_files_stamp) keys the cache by the tuned files' state, as dispatch.explain's answers are."""
    entry, _ = store.lookup(store.entries_for_arch(arch), device_name, DECODE.name, dict(key), seq_k)
    return _timed_blocks(entry, m_tiles) if entry is not None else None


def _timed_blocks(entry: dict, m_tiles: int) -> int | None:
    e = entry.get("problem", {})
    try:
        return e["batch"] * e["heads_kv"] * m_blocks(e["group"] * e["seq_q"], m_tiles)
    except KeyError:
        return None


@functools.lru_cache(maxsize=256)
def _paged_config(arch: str, device_name: str, unpaged_key: tuple, seq_k: int, blocks: int,
                  unpaged: DecodeConfig, stamp: tuple = ()) -> DecodeConfig:
    """A paged problem's config: a tuned paged entry if it was timed on this grid (`blocks` blocks a split; it keeps
    its split count), else `unpaged` (the config, split count included, that the same cache held contiguously gets)
    with paged set: the kernels differ only in their K/V addresses, so the outputs are bit-equal. (H200: the
    bucket-65536 paged entry, 2 warps x 16 keys x 16 splits timed on 32 blocks, ran batch 1 (8 blocks) at 0.67x
    contiguous.) Cached per tuned files' state, as _entry_blocks."""
    key = {**dict(unpaged_key), "paged": True}
    entry, _ = store.lookup(store.entries_for_arch(arch), device_name, DECODE.name, key, seq_k)
    if entry is not None and _timed_blocks(entry, unpaged.m_tiles) == blocks:
        tuned = DecodeConfig.from_dict(entry["config"])
        if tuned.m_tiles == unpaged.m_tiles and not tuned.problems():
            return tuned
    twin = unpaged.replace(paged=True)
    if unpaged.bulk_copy:  # paged kernels copy with cp.async (bulk copies had no prefetch hint)
        twin = twin.replace(bulk_copy=False, l2_prefetch=DEFAULT_L2_PREFETCH)
    return twin if not twin.problems() else DECODE.default(arch, key)


@functools.lru_cache(maxsize=64)
def _kernel_for(cfg: DecodeConfig, device_id: int):
    import cupy

    with cupy.cuda.Device(device_id):
        return LoadedKernel(compile_kernel(cfg))


__all__ = ["check_decode", "decode_attention", "launch_decode", "LAYOUTS", "MMA"]
