"""A padded batch served as packed variable-length sequences (autoflash.attention_varlen), without a
dense mask and, where a view can express it, without copying q, k or v.

The batch is self-attention over a cache, as a Hugging Face model hands it: q (B, Hq, Nq, D) and k, v
(B, Hkv, Nk, D), the Nq query slots being the last Nq of the Nk key slots, and key_valid (B, Nk) bool
saying which slots hold real tokens (the rest is padding). Every valid query sees the valid keys up to
its own slot (causal) or all of them; a window (sliding_window W) keeps the keys within W slots.

Queries of a row are always the last of its valid keys (every slot after the first query slot is a
query slot), so bottom-right causal attention over the row's packed valid tokens is exactly the
padded causal mask, whatever the padding pattern. A window counts slots, so it is exact on packed
tokens only when each row's valid slots are one run (left or right padding, not holes).

Three plans, the first that applies:
- "tokens": q, k, v viewable token-major ((B, N, H, D) in memory: fresh projections, a prefill).
  Rows must be single runs. The padding between runs becomes gap sequences that own the padding
  queries (and padding keys); with seqused_k they see no key. No copy of q, k, v; the output comes
  back as (B, Nq, Hq, D) directly.
- "heads" (Nq == 1, a decode step over a (B, Hkv, Nk, D) cache): each (row, KV head) is a sequence
  of G = Hq / Hkv query "tokens" (the query heads sharing the KV head) over that head's valid keys,
  not causal (one query position sees all its keys; a window only trims the key range). No copy.
- "gather": anything else (holes, a cache in a chunked prefill): the valid tokens are gathered into
  packed tensors (one copy of q, k, v) and the output scattered back. Not with a window over holes.
Outputs at padding query positions are not meaningful (0 where seqused_k lets gaps see no key).

Each plan costs one small device-to-host read (the rows' runs) and a few index tensors, computed
once per mask and reused by every layer of the forward (Memo)."""
from __future__ import annotations

import weakref
from dataclasses import dataclass


@dataclass(frozen=True)
class Runs:
    """Per row: the first valid slot, one past the last, and how many are valid (empty row: Nk, Nk, 0)."""
    starts: tuple
    ends: tuple
    counts: tuple

    @property
    def single(self) -> bool:
        return all(e - s == c for s, e, c in zip(self.starts, self.ends, self.counts))


def read_runs(key_valid) -> Runs:
    """One device-to-host read of (first, last + 1, count) per row."""
    import torch

    b, n = key_valid.shape
    valid = key_valid.to(torch.int32)
    slots = torch.arange(n, device=key_valid.device, dtype=torch.int32)
    first = torch.where(key_valid, slots, n).amin(dim=1)
    end = torch.where(key_valid, slots + 1, 0).amax(dim=1)
    facts = torch.stack([first, end, valid.sum(dim=1)], dim=1).tolist()
    starts, ends, counts = zip(*[(s, e, c) if c else (n, n, 0) for s, e, c in facts]) if b else ((), (), ())
    return Runs(starts, ends, counts)


def token_major(x):
    """x (B, H, N, D) as a (B * N, H, D) view when its memory allows one (else None)."""
    b, h, n, d = x.shape
    try:
        return x.transpose(1, 2).view(b * n, h, d)
    except RuntimeError:
        return None


def head_major(x):
    """x (B, H, N, D) as a (B * H * N, 1, D) view when its memory allows one (else None)."""
    b, h, n, d = x.shape
    try:
        return x.view(b * h * n, 1, d)
    except RuntimeError:
        return None


@dataclass
class Call:
    """One attention_varlen call and how its packed output becomes (B, Nq, Hq, D)."""
    q: object
    k: object
    v: object
    cu_seqlens_q: object
    cu_seqlens_k: object
    max_seqlen_q: int
    max_seqlen_k: int
    seqused_k: object
    causal: bool
    window: int | None  # W for the kernel's window_size (None: the plan applied it, or there is none)
    unpack: object  # packed output -> (B, Nq, Hq, D)


def _boundaries(lengths):
    out, total = [0], 0
    for n in lengths:
        total += n
        out.append(total)
    return out


def _sequences_with_gaps(pieces, total_q, total_k):
    """pieces: (q_start, q_end, k_start, k_end) of the real sequences in order. Returns the q and k
    lengths and the keys each may use, with gap sequences covering what lies between them."""
    q_len, k_len, used = [], [], []
    at_q = at_k = 0
    for qs, qe, ks, ke in list(pieces) + [(total_q, total_q, total_k, total_k)]:
        q_len.append(qs - at_q), k_len.append(ks - at_k), used.append(0)  # gap: padding only
        q_len.append(qe - qs), k_len.append(ke - ks), used.append(ke - ks)
        at_q, at_k = qe, ke
    return q_len[:-1], k_len[:-1], used[:-1]  # the trailing real piece is the empty sentinel


def _device_ints(values, device):
    import torch

    return torch.tensor(values, dtype=torch.int32, device=device)


def _query_range(start, end, n_q, n_k):
    """The valid query slots of a row whose valid keys are [start, end), in query-slot numbers."""
    first_query = n_k - n_q
    return max(start, first_query) - first_query, max(end, first_query) - first_query


def tokens_plan(runs: Runs, n_q: int, n_k: int, device, with_seqused: bool):
    pieces = []
    for b, (s, e) in enumerate(zip(runs.starts, runs.ends)):
        qs, qe = _query_range(s, e, n_q, n_k)
        pieces.append((b * n_q + qs, b * n_q + qe, b * n_k + s, b * n_k + e))
    batch = len(runs.starts)
    q_len, k_len, used = _sequences_with_gaps(pieces, batch * n_q, batch * n_k)
    return dict(cu_seqlens_q=_device_ints(_boundaries(q_len), device),
                cu_seqlens_k=_device_ints(_boundaries(k_len), device),
                max_seqlen_q=max(q_len), max_seqlen_k=max(k_len),
                seqused_k=_device_ints(used, device) if with_seqused else None)


def heads_plan(runs: Runs, n_k: int, heads_kv: int, group: int, window: int | None, device, with_seqused: bool):
    pieces = []
    for b, (s, e) in enumerate(zip(runs.starts, runs.ends)):
        has_query = e == n_k  # the one query slot is the last key slot
        if window is not None:
            s = min(max(s, n_k - window), e)
        for h in range(heads_kv):
            seq, base = b * heads_kv + h, (b * heads_kv + h) * n_k
            qs = seq * group
            pieces.append((qs, qs + group * has_query, base + s, base + e))
    batch = len(runs.starts)
    q_len, k_len, used = _sequences_with_gaps(pieces, batch * heads_kv * group, batch * heads_kv * n_k)
    return dict(cu_seqlens_q=_device_ints(_boundaries(q_len), device),
                cu_seqlens_k=_device_ints(_boundaries(k_len), device),
                max_seqlen_q=max(q_len), max_seqlen_k=max(k_len),
                seqused_k=_device_ints(used, device) if with_seqused else None)


def gather_plan(key_valid, runs: Runs, n_q: int, n_k: int):
    """Indices of the valid key and query tokens (row, slot) and the packed sequences' boundaries."""
    query_valid = key_valid[:, n_k - n_q:]
    q_rows, q_slots = query_valid.nonzero(as_tuple=True)
    k_rows, k_slots = key_valid.nonzero(as_tuple=True)
    q_counts = [_query_range(s, e, n_q, n_k) for s, e in zip(runs.starts, runs.ends)]
    # With holes a row's valid queries are still its last valid keys: count them from the mask.
    q_counts = query_valid.sum(dim=1).tolist() if not runs.single else [qe - qs for qs, qe in q_counts]
    device = key_valid.device
    return dict(q_index=(q_rows, q_slots), k_index=(k_rows, k_slots),
                cu_seqlens_q=_device_ints(_boundaries(q_counts), device),
                cu_seqlens_k=_device_ints(_boundaries(runs.counts), device),
                max_seqlen_q=max(q_counts + [1]), max_seqlen_k=max(runs.counts + (1,)),
                seqused_k=None)


def key_valid_from_4d(mask, n_q: int, n_k: int):
    """A 4-D mask (B or 1, 1 or H, Nq, Nk) that is only padding and causality, as (key_valid (B, Nk)
    bool, causal); None when it is anything else. Boolean masks: True = attend; float masks: 0 =
    attend, -inf or the dtype's minimum = masked (transformers' convention), any other value (a bias)
    is not a mask of this kind. Rows of padding queries are not compared (their outputs are not
    meaningful); the key padding is read from the last query row, which sees every real key."""
    import torch

    if mask.ndim != 4 or tuple(mask.shape[2:]) != (n_q, n_k):
        return None
    if mask.dtype == torch.bool:
        allowed = mask
    else:
        masked = (mask == float("-inf")) | (mask == torch.finfo(mask.dtype).min)
        allowed = mask == 0
        if not bool((allowed | masked).all()):
            return None
    if mask.shape[1] > 1 and not bool((allowed == allowed[:, :1]).all()):
        return None  # a different mask per head
    allowed = allowed[:, 0]
    key_valid = allowed[:, -1]
    query_valid = key_valid[:, n_k - n_q:, None]
    slots = torch.arange(n_k, device=mask.device)
    below = slots[None, :] <= slots[n_k - n_q:, None]  # bottom-right causal (Nq, Nk)
    for causal, expected in ((True, key_valid[:, None, :] & below), (False, key_valid[:, None, :].expand_as(allowed))):
        if bool(((allowed == expected) | ~query_valid).all()):
            return key_valid, causal
    return None


class Memo:
    """The plans of the last few masks seen: every layer of a forward gets the same mask tensor (one
    per layer type: full and sliding-window layers alternate in some models)."""

    def __init__(self, size: int = 4):
        self._entries = []  # [weakref to the mask, its _version, {key: plan}], newest last
        self._size = size

    def get(self, mask, key, build):
        for entry in self._entries:
            if entry[0]() is mask and entry[1] == mask._version:
                break
        else:
            entry = [weakref.ref(mask), mask._version, {}]
            self._entries = [e for e in self._entries if e[0]() is not None][-(self._size - 1):] + [entry]
        if key not in entry[2]:
            entry[2][key] = build()
        return entry[2][key]


def plan_call(key_valid, q, k, v, *, causal: bool, window: int | None, sinks: bool, memo: Memo,
              with_seqused: bool) -> Call:
    """The attention_varlen call that serves q, k, v under key_valid (see the module docstring).
    window: W (keys within W slots of the query), applied by the kernel or by the plan. Raises
    ValueError for a window over padding holes."""
    import torch

    batch, heads_q, n_q, dim = q.shape
    heads_kv, n_k = k.shape[1], k.shape[2]
    runs = memo.get(key_valid, "runs", lambda: read_runs(key_valid))
    device = q.device
    if runs.single:
        qt, kt, vt = token_major(q), token_major(k), token_major(v)
        if qt is not None and kt is not None and vt is not None:
            p = memo.get(key_valid, ("tokens", n_q, n_k, with_seqused),
                         lambda: tokens_plan(runs, n_q, n_k, device, with_seqused))
            return Call(qt, kt, vt, p["cu_seqlens_q"], p["cu_seqlens_k"], p["max_seqlen_q"], p["max_seqlen_k"],
                        p["seqused_k"], causal, window, lambda out: out.view(batch, n_q, heads_q, dim))
        qh, kh, vh = (token_major(q) if n_q == 1 else None), head_major(k), head_major(v)
        if n_q == 1 and not sinks and qh is not None and kh is not None and vh is not None:
            group = heads_q // heads_kv
            p = memo.get(key_valid, ("heads", n_k, heads_kv, group, window, with_seqused),
                         lambda: heads_plan(runs, n_k, heads_kv, group, window, device, with_seqused))
            # (B, Hq, 1, D) as B * Hq one-head tokens: token b * Hq + j is query head j of row b.
            return Call(qh.view(batch * heads_q, 1, dim), kh, vh, p["cu_seqlens_q"], p["cu_seqlens_k"],
                        p["max_seqlen_q"], p["max_seqlen_k"], p["seqused_k"], False, None,
                        lambda out: out.view(batch, 1, heads_q, dim))
    elif window is not None:
        raise ValueError("a sliding window over a padding mask with holes (a row whose real tokens are not one "
                         "run) cannot be served exactly: the window counts padded slots")
    p = memo.get(key_valid, ("gather", n_q, n_k), lambda: gather_plan(key_valid, runs, n_q, n_k))
    (q_rows, q_slots), (k_rows, k_slots) = p["q_index"], p["k_index"]

    def unpack(out):
        full = torch.zeros(batch, n_q, heads_q, dim, dtype=out.dtype, device=out.device)
        full[q_rows, q_slots] = out
        return full

    qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))  # (B, N, H, D) views; the indexing copies once
    return Call(qt[q_rows, q_slots], kt[k_rows, k_slots], vt[k_rows, k_slots], p["cu_seqlens_q"],
                p["cu_seqlens_k"], p["max_seqlen_q"], p["max_seqlen_k"], None, causal, window, unpack)
