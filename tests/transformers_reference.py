"""Pure-torch references (float64 math, any device) of autoflash.attention and
autoflash.attention_varlen with flash-attn's semantics, for the transformers backend's tests: they
stand in for the kernels on the CPU, so the wiring (masks, plans, index maths) is tested against
transformers' own sdpa without a GPU.

Conventions: causal bottom-right puts query i of Nq on key slot i + Nk - Nq; window_size=(left,
right) keeps keys diag - left .. diag + right around that slot (-1: unbounded); softcap maps the
scaled scores s to softcap * tanh(s / softcap); sinks (Hq,) add one logit per head to the softmax
denominator with no value; a row with no key gives 0."""
import torch


def dense(q, k, v, *, causal=False, causal_alignment="top_left", scale=None, window_size=(-1, -1),
          softcap=None, sinks=None):
    """q (B, Hq, Nq, D), k/v (B, Hkv, Nk, D) -> (B, Hq, Nq, D) in q's dtype."""
    batch, heads_q, n_q, dim = q.shape
    heads_kv, n_k = k.shape[1], k.shape[2]
    group = heads_q // heads_kv
    kk, vv = (x.double().repeat_interleave(group, dim=1) for x in (k, v))
    s = q.double() @ kk.transpose(-1, -2) * (dim ** -0.5 if scale is None else scale)
    if softcap is not None:
        s = softcap * torch.tanh(s / softcap)
    rows = torch.arange(n_q, device=q.device)[:, None]
    cols = torch.arange(n_k, device=q.device)[None, :]
    diag = rows + (0 if causal and causal_alignment == "top_left" else n_k - n_q)
    allowed = torch.ones(n_q, n_k, dtype=torch.bool, device=q.device)
    if causal:
        allowed &= cols <= diag
    left, right = window_size
    if left >= 0:
        allowed &= cols >= diag - left
    if right >= 0:
        allowed &= cols <= diag + right
    s = s.masked_fill(~allowed, float("-inf"))
    if sinks is not None:
        sink = sinks.double().view(1, heads_q, 1, 1).expand(batch, heads_q, n_q, 1)
        s = torch.cat([s, sink], dim=-1)
    if s.shape[-1] == 0:
        return torch.zeros_like(q)
    top = s.amax(dim=-1, keepdim=True).clamp_min(-1e300)  # a row with no key: -inf -> finite, p = 0
    p = torch.exp(s - top)
    p = p / p.sum(dim=-1, keepdim=True).clamp_min(1e-300)
    if sinks is not None:
        p = p[..., :-1]
    return (p @ vv).to(q.dtype)


def check_cu(cu, total, max_len, name, used=None):
    values = cu.tolist()
    assert cu.dtype == torch.int32 and values[0] == 0 and values[-1] == total, (name, values, total)
    lengths = [b - a for a, b in zip(values, values[1:])]
    assert min(lengths) >= 0, (name, values)
    assert max(lengths) <= max_len, (name, lengths, max_len)
    if used is not None:
        assert all(0 <= u <= n for u, n in zip(used.tolist(), lengths)), (name, used.tolist(), lengths)


def varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, *, causal=False,
           causal_alignment="bottom_right", softmax_scale=None, window_size=(-1, -1), softcap=None, sinks=None,
           seqused_k=None, return_lse=False):
    """Packed q (total_q, Hq, D), k/v (total_k, Hkv, D); sequence i is q[cu_q[i]:cu_q[i+1]] over
    k[cu_k[i]:cu_k[i] + seqused_k[i]] (seqused_k None: to cu_k[i+1]). Checks the boundaries as a
    strict kernel would (int32, from 0 to the total, non-decreasing, within the max lengths)."""
    assert not return_lse
    check_cu(cu_seqlens_q, q.shape[0], max_seqlen_q, "cu_seqlens_q")
    check_cu(cu_seqlens_k, k.shape[0], max_seqlen_k, "cu_seqlens_k", seqused_k)
    out = torch.zeros_like(q)
    cu_q, cu_k = cu_seqlens_q.tolist(), cu_seqlens_k.tolist()
    used = None if seqused_k is None else seqused_k.tolist()
    for i in range(len(cu_q) - 1):
        qs, qe, ks = cu_q[i], cu_q[i + 1], cu_k[i]
        ke = cu_k[i + 1] if used is None else ks + used[i]
        if qe == qs:
            continue
        part = dense(q[qs:qe].transpose(0, 1)[None], k[ks:ke].transpose(0, 1)[None], v[ks:ke].transpose(0, 1)[None],
                     causal=causal, causal_alignment=causal_alignment, scale=softmax_scale, window_size=window_size,
                     softcap=softcap, sinks=sinks)
        out[qs:qe] = part[0].transpose(0, 1)
    return out


def padded(q, k, v, key_valid, *, causal, scale=None, window=None, softcap=None, sinks=None):
    """What a padded batch must give: q (B, Hq, Nq, D) on the last Nq of the Nk slots, key_valid
    (B, Nk); a query at slot t sees valid keys j <= t (causal) and j > t - window. Returns
    (B, Nq, Hq, D) and the (B, Nq) mask of the query rows that mean something (valid slots)."""
    n_q, n_k = q.shape[2], k.shape[2]
    out = torch.zeros(q.shape[0], n_q, q.shape[1], q.shape[3], dtype=q.dtype)
    slots = torch.arange(n_k)
    for b in range(q.shape[0]):
        for i in range(n_q):
            t = n_k - n_q + i
            keys = key_valid[b].clone()
            if causal:
                keys &= slots <= t
            if window is not None:
                keys &= slots > t - window
            idx = keys.nonzero()[:, 0]
            part = dense(q[b:b + 1, :, i:i + 1], k[b:b + 1, :, idx], v[b:b + 1, :, idx], scale=scale,
                         softcap=softcap, sinks=sinks)
            out[b, i] = part[0, :, 0]
    return out, key_valid[:, n_k - n_q:]
