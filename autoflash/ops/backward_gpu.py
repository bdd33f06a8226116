"""The backward's GPU side (runner process and serve/autograd.py; CuPy imported where used): the launch plan of the
three kernels, the float64 reference gradients, checked launches, and the timing inputs of the op contract."""
from __future__ import annotations

import dataclasses

import numpy as np

from autoflash.kernels.arrays import poisoned, random_normal, to_float64, to_storage
from autoflash.kernels.device import sm_count
from autoflash.kernels.elements import LOG2E
from autoflash.kernels.loaded import rendered
from autoflash.kernels.packed_sequence import PackedSequence, Slot
from autoflash.ops import backward_wgmma
from autoflash.ops.backward_kernels import TEMPLATE as MMA, PAD_M, TOLERANCE, BackwardProblem, default_scale, tile_dim
from autoflash.ops.backward_wgmma import heavy_first, takes_strides
from autoflash.ops.backward_wgmma import tile_dim as wgmma_tile_dim
from autoflash.ops.forward_base import contiguous_strides
from autoflash.ops.reference import Check, array_module, slopes_per_batch, visible_keys

ZERO_FLOOR = 1e-3  # see compare_gradients


def tail_parts(left: int, sms: int, overhead: float = 0.05) -> int:
    """(TAIL_WAVES) Parts a tile for `left` K/V tiles past the last whole wave of `sms` blocks: k parts take ceil(left k
    / sms) waves of 1 / k tile plus a part's own cost (`overhead`); the k of 2..16 ending soonest, else 1 (no split)."""
    cost = {k: -(-left * k // sms) * (1 / k + overhead) for k in range(2, 17)}
    best = min(cost, key=cost.get)
    return best if cost[best] < 1 else 1


class BackwardLaunch:
    """The three launches of one problem on one loaded module (four with sinks: <name>_sink, the sinks' gradient):
    grids, fixed arguments and the workspace layout, computed once; __call__ takes only pointers and a stream.
    Variants: the window bounds and softcap are the problem's (fixed per plan, as its shape); the sinks, ALiBi slopes
    and dsinks pointers come with each call."""

    def __init__(self, kernel, p: BackwardProblem, scale: float):
        cfg = kernel.config
        if (p.head_dim, p.head_dim_v, p.causal) != (cfg.head_dim, cfg.head_dim_v, cfg.causal):
            raise ValueError(f"kernel {cfg.name} cannot run head_dim={p.head_dim} head_dim_v={p.head_dim_v} "
                             f"causal={p.causal}")
        needs = p.variant_flags()
        if any(needs[f] != getattr(cfg, f) for f in ("window", "softcap")):
            raise ValueError(f"kernel {cfg.name} cannot run window={needs['window']} softcap={needs['softcap']}")
        if cfg.varlen != bool(p.total_q or p.total_k):
            raise ValueError(f"kernel {cfg.name} is for {'packed' if cfg.varlen else 'dense'} inputs, the problem "
                             f"{'is not' if cfg.varlen else 'is'} packed (total_q / total_k)")
        bh = p.batch * p.heads_q
        if max(bh, p.heads_kv, p.batch) > 65535:
            raise ValueError(f"batch x heads_q = {bh} exceeds the kernels' grid limit (65535)")
        self.pre, self.main, self.conv = kernel.function_named("_pre"), kernel.function, kernel.function_named("_dq")
        self.smem = kernel.smem
        seq_q_pad = -(-p.seq_q // PAD_M) * PAD_M
        n_q_tiles = -(-p.seq_q // cfg.block_m)
        # varlen: the workspace rows stay (sequences x heads_q, seq_q_pad of the longest); the dQ accumulator is packed
        q_rows = p.total_q * p.heads_q if cfg.varlen else bh * p.seq_q
        tile = tile_dim(p.head_dim, p.head_dim_v) if cfg.template == MMA.name else wgmma_tile_dim(p.head_dim)
        self.tile = tile  # (a padded head dim: the kernels' rows of the accumulator and of the small kernels' lanes)
        self.main_grid = (-(-p.seq_k // cfg.block_n), p.heads_kv, p.batch)
        self.tail_split = rendered(kernel, "tail_split", False)
        ctas = rendered(kernel, "min_blocks", 1)  # (CTAs an SM: a wave is that many x the SMs)
        self.causal_walk = rendered(kernel, "causal_walk", False)
        walks = rendered(kernel, "persistent", False)  # (its block counter: a word after TAIL_SPLIT's tail buffer)
        tail_words = self._split_tail(cfg, tile, ctas * sm_count(kernel.device_id)) if self.tail_split else 0
        tail_words += int(walks)
        sizes = [bh * seq_q_pad * 4, bh * seq_q_pad * 4, q_rows * tile * 4,  # lse2, delta, dQ accumulator, counters
                 bh * n_q_tiles * 4 if cfg.deterministic else tail_words * 4]  # (or TAIL_SPLIT's tail buffer)
        self.offsets, total = [], 0
        for size in sizes:
            self.offsets.append(total)
            total += -(-size // 256) * 256
        self.workspace_bytes = total
        pre_rows = 256 // ((p.head_dim_v or tile) // 8)  # the preprocess: a lane per 16-byte chunk of an O tile row
        self.pre_grid = (seq_q_pad // pre_rows, bh, 1)
        # HEAVY_FIRST: a 1-D grid the kernel maps to (K/V tile, pair) heaviest first, or (mma HEAVY_BY_BATCH) heads in
        # x, K/V tiles in y, as rendered (a grid read in another order ran the deterministic waits past the workspace)
        if rendered(kernel, "heavy_by_batch", False):
            self.main_grid = (p.heads_kv, self.main_grid[0], p.batch)
        elif rendered(kernel, "heavy_first", heavy_first(cfg)):
            self.main_grid = (self.main_grid[0] * p.heads_kv * p.batch, 1, 1)
        if self.main_grid[0] >= 2**31 or self.main_grid[1] > 65535:
            raise ValueError(f"the main kernel's grid {self.main_grid} exceeds CUDA's (2^31 - 1 in x, 65535 in y)")
        self.block = (cfg.threads, 1, 1)
        self.n_vec8 = np.uint64(q_rows * p.head_dim // 8)
        self.conv_grid = (max(1, min(-(-int(self.n_vec8) // 256), 8192)), 1, 1)
        i32, f32 = np.int32, np.float32
        self.pre_tail = (i32(p.seq_q), i32(seq_q_pad), f32(LOG2E))
        self.tail_words = i32(tail_words)
        self.main_tail = (i32(p.heads_q), i32(p.heads_kv), i32(p.seq_q), i32(p.seq_k), i32(seq_q_pad),
                          f32(scale), f32(scale * LOG2E),
                          i32(p.causal_offset if p.causal or cfg.window or cfg.alibi else 0))
        # the variant tail: window bounds (causal kernels take 0 for the right), softcap; sinks and slopes at call time
        self.window = (i32(p.window_left), i32(p.window_right))
        self.softcap = f32(p.softcap)
        self.alibi_batch_stride = i32(p.alibi_batch_stride)
        self.sinks, self.alibi = cfg.sinks, cfg.alibi
        self.sink = kernel.function_named("_sink") if cfg.sinks else None
        self.sink_tail = (i32(p.batch), i32(p.heads_q), i32(seq_q_pad), f32(LOG2E))
        self.heads_q = p.heads_q
        self.scale = f32(scale)
        self.strided = takes_strides(cfg)
        if self.strided:
            self._stride_tails(p, cfg, scale)
        if self.tail_split or self.causal_walk:  # (after the stride tails: the kernels' last arguments)
            self.pre_tail += (self.tail_words,)
        if self.tail_split:
            self.main_stride_tail += (i32(self.full_blocks), i32(self.parts))
        if walks:  # (ops/backward_wgmma.PERSISTENT) one CTA an SM walks the blocks
            n_blocks = self.main_grid[0]
            self.main_grid = (min(n_blocks, sm_count(kernel.device_id)), 1, 1)
            self.main_stride_tail += (i32(n_blocks),)
        self.deterministic = cfg.deterministic
        self.varlen = cfg.varlen
        self._packed = None

    def _split_tail(self, cfg, tile: int, sms: int) -> int:
        """(ops/backward_wgmma.TAIL_SPLIT) the 1-D grid: the K/V tiles past the last whole wave (`sms` blocks) split
        into sms // that many parts each, when that is two or more (else, TAIL_WAVES, tail_parts' count over more
        waves); returns the tail buffer's words (dK, dV fp32 sums and a counter per split tile)."""
        blocks = self.main_grid[0] * self.main_grid[1] * self.main_grid[2]
        left = blocks % sms if blocks > sms else 0
        self.parts = sms // left if left else 1
        if self.parts < 2 and left and backward_wgmma.TAIL_WAVES:
            self.parts = tail_parts(left, sms)
        if self.parts < 2:
            self.parts, left = 1, 0
        self.full_blocks = blocks - left
        self.main_grid = (self.full_blocks + left * self.parts, 1, 1)
        return left * (2 * cfg.block_n * tile + 1)

    def _stride_tails(self, p: BackwardProblem, cfg, scale: float) -> None:
        """(STRIDED kernels) the tails of the (batch, head, token) strides: p.strides holds q, k, v, out, dout, dq,
        dk, dv's (None: all contiguous). The preprocess takes heads_q and out's, dout's; the main kernel q's, k's,
        v's, dout's, dk's, dv's; the dQ conversion, now a row a lane group as the preprocess, dq's."""
        q_shape, kv_shape = (p.batch, p.heads_q, p.seq_q, p.head_dim), (p.batch, p.heads_kv, p.seq_k, p.head_dim)
        strides = p.strides or tuple(contiguous_strides(*s) for s in (q_shape, kv_shape, kv_shape, q_shape, q_shape,
                                                                     q_shape, kv_shape, kv_shape))
        if len(strides) != 8:
            raise ValueError(f"a strided backward takes 8 stride triples (q, k, v, out, dout, dq, dk, dv), got "
                             f"{len(strides)}")
        packed = [(np.int64(sb), np.int64(sh), np.int32(sn)) for sb, sh, sn in strides]
        q, k, v, o, do, dq, dk, dv = packed
        self.pre_tail += (np.int32(p.heads_q),) + o + do
        self.main_stride_tail = q + k + v + do + dk + dv
        conv_rows = 256 // (self.tile // 8)
        self.conv_grid = (-(-p.seq_q // conv_rows), p.batch * p.heads_q, 1)
        self.conv_tail = (np.int32(p.seq_q), np.int32(p.heads_q), np.float32(scale)) + dq

    def variant_tail(self, sinks: int = 0, alibi_slopes: int = 0) -> tuple:
        """The main kernel's last arguments, the forward's variant tail less its varlen pointers:
        (window_left, window_right, softcap, sinks, alibi_slopes, alibi_batch_stride)."""
        return self._variant_tail(np.uint64(sinks), np.uint64(alibi_slopes))

    def _variant_tail(self, sinks, alibi_slopes) -> tuple:
        return self.window + (self.softcap, sinks, alibi_slopes, self.alibi_batch_stride)

    def __call__(self, q: int, k: int, v: int, out: int, lse: int, dout: int, dq: int, dk: int, dv: int,
                 workspace: int, stream, sinks: int = 0, alibi_slopes: int = 0, dsinks: int = 0,
                 cu_seqlens_q: int = 0, cu_seqlens_k: int = 0) -> None:
        """Pointers of contiguous arrays; workspace: workspace_bytes, 256-byte aligned. Sinks kernels: sinks (fp32,
        heads_q) and dsinks (fp32, heads_q, written); ALiBi kernels: alibi_slopes (fp32, (heads_q,) or (batch, heads_q)
        as the problem's alibi_batch_stride says). Varlen kernels: cu_seqlens_q / cu_seqlens_k (int32, batch + 1,
        checked by the caller: the kernels trust them), q, out, dout, dq packed (total_q, heads_q, D), k, v, dk, dv
        (total_k, heads_kv, D), lse (heads_q, total_q). CuPy's launcher (packed() is the same launches, packed once)."""
        self.check_pointers(sinks, alibi_slopes, dsinks, cu_seqlens_q, cu_seqlens_k)
        ptrs = self.pointers(q, k, v, out, lse, dout, dq, dk, dv, workspace, sinks, alibi_slopes, dsinks,
                             cu_seqlens_q, cu_seqlens_k)
        for function, grid, block, smem, args in self.launches(tuple(np.uint64(p) for p in ptrs)):
            function(grid, block, args, shared_mem=smem, stream=stream)

    def check_pointers(self, sinks: int = 0, alibi_slopes: int = 0, dsinks: int = 0, cu_seqlens_q: int = 0,
                       cu_seqlens_k: int = 0) -> None:
        """ValueError unless the variant and varlen pointers this plan's kernels read are given."""
        if (self.sinks and not (sinks and dsinks)) or (self.alibi and not alibi_slopes):
            raise ValueError("this backward kernel needs " + ("sinks and dsinks" if self.sinks else "alibi_slopes")
                             + " pointers")
        if self.varlen and not (cu_seqlens_q and cu_seqlens_k):
            raise ValueError("a varlen backward kernel needs the cu_seqlens_q and cu_seqlens_k pointers")

    def pointers(self, q: int, k: int, v: int, out: int, lse: int, dout: int, dq: int, dk: int, dv: int,
                 workspace: int, sinks: int = 0, alibi_slopes: int = 0, dsinks: int = 0, cu_seqlens_q: int = 0,
                 cu_seqlens_k: int = 0) -> tuple:
        """A call's pointers in POINTERS order (the workspace split into its four parts)."""
        lse2, delta, acc, sem = (workspace + o for o in self.offsets)
        return (q, k, v, out, lse, dout, dq, dk, dv, lse2, delta, acc, sem, sinks, alibi_slopes, dsinks,
                cu_seqlens_q, cu_seqlens_k)

    def launches(self, p: tuple) -> list:
        """The launches in order as (function, grid, block, shared memory, arguments); p: the pointer
        arguments in POINTERS order (np.uint64 values, or packed_sequence.Slot markers when packing)."""
        q, k, v, out, lse, dout, dq, dk, dv, lse2, delta, acc, sem, sinks, slopes, dsinks, cu_q, cu_k = p
        sem = sem if self.deterministic or self.tail_split or self.causal_walk else np.uint64(0)
        varlen_pre = (cu_q, np.int32(self.heads_q)) if self.varlen else ()
        runs = [(self.pre, self.pre_grid, (256, 1, 1), 0,
                 (out, dout, lse, lse2, delta, acc, sem) + self.pre_tail + varlen_pre)]
        if self.sink is not None:
            runs.append((self.sink, (self.heads_q, 1, 1), (256, 1, 1), 0,
                         (lse2, delta, sinks, dsinks) + self.sink_tail))
        runs.append((self.main, self.main_grid, self.block, self.smem,
                     (q, k, v, dout, lse2, delta, acc, dk, dv, sem) + self.main_tail + self._variant_tail(sinks, slopes)
                     + ((cu_q, cu_k) if self.varlen else ()) + (self.main_stride_tail if self.strided else ())))
        conv_tail = self.conv_tail if self.strided else (self.n_vec8, self.scale)
        runs.append((self.conv, self.conv_grid, (256, 1, 1), 0, (acc, dq) + conv_tail))
        return runs

    def packed(self) -> PackedSequence:
        """These launches packed once (kernels/packed_sequence.py), built on first use; call it with
        pointers(...) and a raw stream pointer."""
        if self._packed is None:
            self._packed = PackedSequence(self.launches(tuple(Slot(i) for i in range(len(POINTERS)))))
        return self._packed


POINTERS = ("q", "k", "v", "out", "lse", "dout", "dq", "dk", "dv", "lse2", "delta", "acc", "sem", "sinks",
            "alibi_slopes", "dsinks", "cu_seqlens_q", "cu_seqlens_k")
OUTPUTS = tuple(POINTERS.index(n) for n in ("dq", "dk", "dv", "dsinks"))  # pointers a launch writes results to


def launch_plan(kernel, p: BackwardProblem, scale: float) -> BackwardLaunch:
    """The cached launch of problem p on a loaded kernel (one per shape and scale)."""
    return kernel.cached_plan((p.fields(), scale), lambda: BackwardLaunch(kernel, p, scale))


def reference_gradients(q, k, v, dout, *, causal: bool, scale: float, causal_offset: int = 0,
                        window: tuple[int, int] = (-1, -1), softcap: float = 0.0, sinks=None, alibi_slopes=None,
                        chunk: int = 512):
    """The gradients of float64 attention (GQA; causal: query i sees keys 0..i + causal_offset; the
    variants as ops.reference.reference_attention applies them) at q, k, v for upstream dout, in
    closed form. With t the score after softcap and ALiBi (s = scale q.k; t = softcap tanh(s /
    softcap) - slope |i + off - j|), P = e^(t - LSE) (LSE including e^sink), delta = rowsum(dO * O):
      dV = P^T dO,  dT = P (dO V^T - delta),  dS = dT (1 - tanh^2(s / softcap)) (1 without softcap),
      dQ = scale dS K,  dK = scale dS^T Q  (ALiBi is constant: no term),
      dsink_h = -sum over batch and rows of e^(sink_h - LSE) delta  (dLSE/dsink = P_sink),
    dK and dV summed over each K/V head's query heads. A row that sees no key has O = 0, P = 0: it
    contributes nothing and its dQ is 0. NumPy or CuPy, query rows in chunks (no Nq x Nk matrix at
    once). Returns (out, lse, dq, dk, dv), and dsinks (Hq,) last when sinks are given."""
    xp = array_module(q)
    q, k, v, dout = (xp.asarray(a, dtype=xp.float64) for a in (q, k, v, dout))
    b, hq, nq, d = q.shape
    hkv, nk = k.shape[1], k.shape[2]
    group = hq // hkv
    k, v = xp.repeat(k, group, axis=1), xp.repeat(v, group, axis=1)
    out, dq = xp.empty(q.shape[:3] + v.shape[3:]), xp.empty_like(q)  # O at V's head dim (Dqk != Dv)
    lse = xp.empty((b, hq, nq))
    dk, dv = xp.zeros_like(k), xp.zeros_like(v)
    keys = xp.arange(nk)[None, :]
    if alibi_slopes is not None:
        slopes = slopes_per_batch(xp, alibi_slopes, b, hq)[:, :, None, None]
    sink = None if sinks is None else xp.asarray(sinks, dtype=xp.float64).reshape(1, hq, 1, 1)
    dsinks = xp.zeros(hq)
    for start in range(0, nq, chunk):
        rows = slice(start, min(nq, start + chunk))
        s = xp.einsum("bhqd,bhkd->bhqk", q[:, :, rows], k) * scale
        dcap = 1.0
        if softcap > 0:
            th = xp.tanh(s / softcap)
            s, dcap = softcap * th, 1.0 - th * th
        diagonal = xp.arange(start, rows.stop)[:, None] + causal_offset
        if alibi_slopes is not None:
            s = s - slopes * xp.abs(diagonal - keys)
        s = xp.where(visible_keys(diagonal, keys, causal=causal, window=window), s, -xp.inf)
        m = s.max(axis=-1, keepdims=True)
        if sink is not None:
            m = xp.maximum(m, sink)
        empty = xp.isneginf(m)  # rows that see no key (and no finite sink)
        safe_m = xp.where(empty, 0.0, m)
        p = xp.exp(s - safe_m)
        l = p.sum(axis=-1, keepdims=True) + (0.0 if sink is None else xp.exp(sink - safe_m))
        p /= xp.where(empty, 1.0, l)
        o = xp.einsum("bhqk,bhkd->bhqd", p, v)
        out[:, :, rows] = o
        row_lse = xp.where(empty, -xp.inf, safe_m + xp.log(xp.where(empty, 1.0, l)))
        lse[:, :, rows] = row_lse[..., 0]
        dp = xp.einsum("bhqd,bhkd->bhqk", dout[:, :, rows], v)
        delta = (dout[:, :, rows] * o).sum(axis=-1, keepdims=True)
        ds = p * (dp - delta) * dcap
        dq[:, :, rows] = scale * xp.einsum("bhqk,bhkd->bhqd", ds, k)
        dk += scale * xp.einsum("bhqk,bhqd->bhkd", ds, q[:, :, rows])
        dv += xp.einsum("bhqk,bhqd->bhkd", p, dout[:, :, rows])
        if sink is not None:  # rows without a key have delta 0 (O = 0); LSE = sink or -inf there
            p_sink = xp.where(empty, 0.0, xp.exp(sink - xp.where(empty, 0.0, row_lse)))
            dsinks -= (p_sink * delta).sum(axis=(0, 2, 3))
    dk = dk.reshape(b, hkv, group, nk, d).sum(axis=2)
    dv = dv.reshape(b, hkv, group, nk, v.shape[-1]).sum(axis=2)
    return (out, lse, dq, dk, dv) + (() if sinks is None else (dsinks,))


def compare_gradients(grads, refs, dtype: str) -> Check:
    """The worst of the three gradients' relative Frobenius errors; any non-finite value fails.
    grads and refs are (dq, dk, dv). A gradient that is exactly zero in exact arithmetic (every
    query row sees one key: dq = dk = 0) has no relative error: its error is measured against
    ZERO_FLOOR x |dv| instead (dv is never zero for a nonzero dO), so rounding noise of 1e-7
    passes and a wrong kernel does not."""
    xp = array_module(refs[0])
    floor = ZERO_FLOOR * float(xp.linalg.norm(refs[2]))
    worst, finite = 0.0, True
    for g, r in zip(grads, refs):
        g = xp.asarray(g, dtype=xp.float64)
        finite = finite and bool(xp.isfinite(g).all())
        worst = max(worst, float(xp.linalg.norm(g - r)) / max(float(xp.linalg.norm(r)), floor, 1e-30))
    return GradientCheck(dtype, worst if finite else float("inf"), 0.0, None, finite)


class GradientCheck(Check):
    """ops.reference.Check with the backward's tolerance (ops.backward_kernels.TOLERANCE); rel_error is
    the worst gradient's, there is no per-row or LSE part."""

    @property
    def tolerance(self) -> float:
        return TOLERANCE[self.dtype]


def compare_sink_gradient(dsinks, ref, terms_norm: float, dtype: str) -> Check:
    """The sinks' gradient: its error against the float64 one, relative to the norm (over heads)
    of the sums of |e^(sink - LSE) delta| (cancellation in the sum does not count as error)."""
    xp = array_module(ref)
    g = xp.asarray(dsinks, dtype=xp.float64)
    finite = bool(xp.isfinite(g).all())
    err = float(xp.linalg.norm(g - ref)) / max(terms_norm, float(xp.linalg.norm(ref)), 1e-30)
    return GradientCheck(dtype, err if finite else float("inf"), 0.0, None, finite)


def sink_terms_norm(lse, delta, sinks) -> float:
    """||sum over batch and rows of |e^(sink_h - LSE) delta|||  (the scale of dsinks' rounding)."""
    xp = array_module(lse)
    lse = xp.asarray(lse, dtype=xp.float64)
    sink = xp.asarray(sinks, dtype=xp.float64).reshape(1, -1, 1)
    w = xp.where(xp.isneginf(lse), 0.0, xp.exp(sink - xp.where(xp.isneginf(lse), 0.0, lse)))
    return float(xp.linalg.norm(xp.abs(w * xp.asarray(delta, dtype=xp.float64)).sum(axis=(0, 2))))


def make_inputs(p: BackwardProblem, dtype: str, seed: int, with_reference: bool = False, sinks=None,
                alibi_slopes=None):
    """One input set: random q, k, v, dO; O and LSE from the float64 forward (O rounded to the
    dtype, as a forward kernel would give it, the problem's variants applied; sinks / alibi_slopes
    host values, copied to the device); outputs dq, dk, dv poisoned with NaN; the workspace slot;
    then the variant arrays [sinks, dsinks, slopes] (None where not used). With with_reference,
    the float64 gradients come last: (dq, dk, dv) and, with sinks, (dsinks, its terms' norm)."""
    import cupy

    rng = cupy.random.default_rng(seed)
    q_shape, kv_shape = (p.batch, p.heads_q, p.seq_q, p.head_dim), (p.batch, p.heads_kv, p.seq_k, p.head_dim)
    o_shape, v_shape = q_shape[:3] + (p.dim_v,), kv_shape[:3] + (p.dim_v,)  # V's head dim (head_dim_v)
    q, k, v, dout = (random_normal(rng, s, dtype) for s in (q_shape, kv_shape, v_shape, o_shape))
    scale = default_scale(p.head_dim)
    d_sinks = None if sinks is None else cupy.asarray(np.asarray(sinks, dtype=np.float32))
    d_slopes = None if alibi_slopes is None else cupy.asarray(np.asarray(alibi_slopes, dtype=np.float32))
    ref = reference_gradients(*(to_float64(x, dtype) for x in (q, k, v, dout)), causal=p.causal, scale=scale,
                              causal_offset=p.causal_offset, window=(p.window_left, p.window_right),
                              softcap=p.softcap, sinks=d_sinks, alibi_slopes=d_slopes)
    out, lse = to_storage(ref[0].astype(cupy.float32), dtype), ref[1].astype(cupy.float32)
    dq, dk, dv = poisoned(q_shape, dtype), poisoned(kv_shape, dtype), poisoned(v_shape, dtype)
    dsinks = None if d_sinks is None else cupy.full(p.heads_q, cupy.nan, dtype=cupy.float32)
    inputs = [q, k, v, out, lse, dout, dq, dk, dv, None, d_sinks, dsinks, d_slopes]
    if not with_reference:
        return inputs
    refs = tuple(ref[2:5])
    if d_sinks is not None:
        delta = (to_float64(dout, dtype) * to_float64(out, dtype)).sum(axis=-1)
        refs += (ref[5], sink_terms_norm(ref[1], delta, d_sinks))
    return inputs, refs


def launcher(kernel, p: BackwardProblem, inputs, scale: float | None = None):
    """One whole backward call (three or four launches) on CuPy's current stream; the workspace is
    allocated here, once, and kept in inputs[9]; inputs[10:13] are sinks, dsinks, slopes (or None)."""
    import cupy

    slopes = inputs[12] if len(inputs) > 12 else None
    if slopes is not None and slopes.ndim == 2:  # (B, Hq) slopes
        p = dataclasses.replace(p, alibi_batch_stride=p.heads_q)
    plan = launch_plan(kernel, p, default_scale(p.head_dim) if scale is None else scale)
    if inputs[9] is None or inputs[9].nbytes < plan.workspace_bytes:
        inputs[9] = cupy.empty(max(plan.workspace_bytes, 256), dtype=cupy.uint8)
    ptrs = [x.data.ptr for x in inputs[:10]]
    sinks, dsinks, slopes = (0 if x is None else x.data.ptr for x in (list(inputs[10:13]) + [None] * 3)[:3])
    stream = cupy.cuda.get_current_stream()

    def run() -> None:
        plan(*ptrs, stream, sinks=sinks, alibi_slopes=slopes, dsinks=dsinks)

    return run


def verify(kernel, p: BackwardProblem, seed: int, sinks=None, alibi_slopes=None) -> Check:
    """Launch once on fresh inputs into NaN-poisoned gradients; compare with the float64 gradients
    (and, with sinks, the sinks' gradient: the worse check is returned)."""
    import cupy

    dtype = kernel.config.dtype
    inputs, refs = make_inputs(p, dtype, seed, with_reference=True, sinks=sinks, alibi_slopes=alibi_slopes)
    launcher(kernel, p, inputs)()
    cupy.cuda.get_current_stream().synchronize()
    check = compare_gradients([to_float64(g, dtype) for g in inputs[6:9]], refs[:3], dtype)
    if sinks is not None:
        sink_check = compare_sink_gradient(inputs[11], refs[3], refs[4], dtype)
        if not sink_check.passed or sink_check.rel_error > check.rel_error:
            return sink_check
    return check
