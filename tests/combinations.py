"""Seeded random combinations of autoflash's features, for tests/test_combinations_gpu.py: the case generator (NumPy
only, so it is checked without a GPU or torch), a case's inputs as PyTorch CUDA tensors, a float64 PyTorch reference
that applies every feature literally (its masks: autoflash.ops.reference.visible_keys), and the table of outcomes.

A case is a dict of plain values (printed whole when it fails; the log holds it as JSON). `python tests/combinations.py
LOG` prints the table of a run's log (AUTOFLASH_COMBO_LOG), e.g. of a run spread over xdist workers."""
from __future__ import annotations

import json
import math
import re
import sys
from collections import Counter, defaultdict

import numpy as np

from autoflash.ops.reference import visible_keys

try:
    import torch
except ModuleNotFoundError:  # the generator (and its CPU test) needs only NumPy
    torch = None

BASE_SEED = 20250
APIS = ("attention", "kvcache", "varlen")
HEAD_DIMS = (8, 16, 40, 64, 80, 96, 128, 160, 192, 256)
DV_PAIRS = ((192, 128), (128, 64), (64, 128))  # Dqk != Dv (README: MLA prefill and the like)
# the backward tiles' own head dims and the Dv != Dqk pairs (every multiple of 8 has gradients since the 18th session)
GRAD_DIMS = ((64, 64), (128, 128), (256, 256), (192, 128), (128, 64))
LENGTHS = (1, 17, 100, 257, 1000)
PAGE_SIZES = (16, 32, 48, 64)
TORCH_DTYPES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}


def pick(rng, options, weights=None):
    """One of `options` (any objects), drawn with relative `weights`."""
    p = None if weights is None else np.asarray(weights, dtype=float) / sum(weights)
    return options[int(rng.choice(len(options), p=p))]


def chance(rng, p: float) -> bool:
    return bool(rng.random() < p)


def draw_case(i: int, base: int = BASE_SEED) -> dict:
    """Case i of the run seeded `base`: the same whatever the number of cases, so one can be run alone."""
    rng = np.random.default_rng([base, i])
    api = pick(rng, APIS, (9, 6, 5))
    c = dict(id=f"case{i:03d}", api=api)
    c["dtype"] = pick(rng, ("fp16", "bf16", "fp32"), (4, 4, 0 if api == "kvcache" else 2))  # no fp32 KV caches
    c["grad"] = api != "kvcache" and c["dtype"] != "fp32" and chance(rng, 0.3)
    d = pick(rng, HEAD_DIMS, (1, 1, 1, 3, 1, 1, 3, 1, 1, 2))
    c["d"], c["dv"] = pick(rng, DV_PAIRS) if chance(rng, 0.15) else (d, d)
    if c["grad"] and chance(rng, 0.8):  # mostly head dims that have a backward, so most gradient cases run
        c["d"], c["dv"] = pick(rng, GRAD_DIMS[:3] if api == "varlen" else GRAD_DIMS)
    ratio = pick(rng, (1, 2, 4, 8))  # GQA; heads_kv 1 is MQA
    c["hkv"] = pick(rng, [h for h in (1, 2, 3, 4, 8) if h * ratio <= 8])
    c["hq"] = c["hkv"] * ratio
    c["batch"] = int(rng.integers(1, 4))
    c["causal"] = chance(rng, 0.5)
    n = max(1, _LENGTHS[api](rng, c))  # the longest key count, for windows
    left, right = (int(x) for x in rng.integers(0, n + 1, 2))
    c["window"] = pick(rng, [(-1, -1), (0, 0), (1, -1), (-1, right), (left, right), (left, 0), (n + 10, n + 10)],
                       (14, 1, 1, 1, 2, 2, 1))
    off = 0.0 if api == "kvcache" else None  # kvcache spells "no softcap" 0.0 too (flash-attn's default)
    c["softcap"] = pick(rng, (None, 30.0, 1.0, off), (9, 2, 1, 1))
    c["sinks"] = None
    if chance(rng, 0.25):  # one logit per query head; -inf: no sink for that head
        c["sinks"] = [-math.inf if chance(rng, 0.2) else round(float(rng.uniform(-3, 3)), 3) for _ in range(c["hq"])]
    c["sinks_grad"] = c["grad"] and c["sinks"] is not None and chance(rng, 0.5)
    c["alibi"] = pick(rng, (None, "head", "batch"), (8, 1, 1))  # slopes (heads_q,) or (batch, heads_q)
    c["scale"] = round(float(rng.uniform(0.02, 0.3)), 4) if chance(rng, 0.25) else None
    c["return_lse"] = chance(rng, 0.5)
    if c["dtype"] == "fp16" and c["sinks"]:
        # A sink far above every score a row sees leaves that row's output below fp16's normal range (ALiBi far from
        # the diagonal; a scale that spreads the scores): the kernel cannot represent it, and compare's worst-row
        # rule would fail it. Default scale (scores ~ N(0, 1)) and no ALiBi keep such rows above 1e-4.
        c["alibi"], c["scale"] = None, None
    c["layout"] = pick(rng, ("contiguous", "transposed", "padded"), (5, 3, 2))
    c["seed"] = int(rng.integers(2**31))
    return c


def _attention_lengths(rng, c) -> int:
    c["nq"], c["nk"] = pick(rng, (1, 4, 16) + LENGTHS), pick(rng, LENGTHS)  # nq <= 16: the decode route too
    c["alignment"] = pick(rng, ("top_left", "bottom_right"))
    return c["nk"]


def _kvcache_lengths(rng, c) -> int:
    c["nq"] = pick(rng, (1, 2, 5, 16, 17, 100, 257), (3, 1, 1, 1, 1, 1, 1))  # 1..16 decode, more: chunked prefill
    c["page"] = pick(rng, PAGE_SIZES) if chance(rng, 0.35) else None
    cap = pick(rng, LENGTHS)
    c["nk"] = cap = max(c["page"], cap // c["page"] * c["page"]) if c["page"] else cap  # a row holds whole pages
    c["seqlens"] = None
    if chance(rng, 0.7):  # each sequence's valid length, 0 (empty) to the capacity
        c["seqlens"] = [int(pick(rng, (0, 1, cap, rng.integers(0, cap + 1)))) for _ in range(c["batch"])]
    c["num_splits"] = pick(rng, (None, 0, 1, 3), (4, 1, 1, 1)) if c["nq"] <= 16 else None
    return cap


def _varlen_lengths(rng, c) -> int:
    lens, weights = (0, 1, 17, 100, 257, 1000), (1, 2, 2, 2, 2, 1)
    c["lens_q"] = [int(pick(rng, lens, weights)) for _ in range(c["batch"])]
    c["lens_k"] = [int(pick(rng, lens, weights)) for _ in range(c["batch"])]
    c["seqused"] = None
    if chance(rng, 0.1 if c["grad"] else 0.3):  # gradients refuse seqused_k: seldom with them
        c["seqused"] = [int(rng.integers(0, n + 1)) for n in c["lens_k"]]
    slack = pick(rng, (0, 0, 7))  # max_seqlen_* are bounds, not necessarily the maxima
    c["max_q"], c["max_k"] = max(1, *c["lens_q"]) + slack, max(1, *c["lens_k"]) + slack
    c["alignment"] = pick(rng, ("bottom_right", "top_left"))
    return max(c["lens_k"])


_LENGTHS = {"attention": _attention_lengths, "kvcache": _kvcache_lengths, "varlen": _varlen_lengths}


def offsets(lens) -> list[int]:
    """cu_seqlens of these lengths."""
    return [0] + np.cumsum(lens).tolist()


def describe(c: dict) -> str:
    return json.dumps(c)


# --- the inputs of a case (PyTorch, CUDA) ---------------------------------------------------------------------------

def make(shape, c: dict, gen, swap, device="cuda"):
    """A random tensor of logical `shape` in the case's layout: contiguous; transposed (dims `swap` swapped in
    memory, as a (B, N, H, D) projection viewed as (B, H, N, D)); or padded (the rows of a wider tensor: strided,
    head dim contiguous, rows 16-byte aligned)."""
    mem = list(shape)
    if c["layout"] == "transposed":
        mem[swap[0]], mem[swap[1]] = mem[swap[1]], mem[swap[0]]
    if c["layout"] == "padded":
        mem[-1] += 8
    x = torch.randn(mem, generator=gen, device=device).to(getattr(torch, TORCH_DTYPES[c["dtype"]]))  # then the view
    if c["layout"] == "transposed":
        x = x.transpose(*swap)
    return x[..., :shape[-1]]


def variant_args(c: dict, device="cuda") -> dict:
    """window_size, softcap, sinks (float32 (heads_q,)) and alibi_slopes (float32 (heads_q,) or (batch, heads_q))."""
    sinks = None if c["sinks"] is None else torch.tensor(c["sinks"], dtype=torch.float32, device=device)
    slopes = None
    if c["alibi"]:
        base = 2.0 ** (-8.0 * torch.arange(1, c["hq"] + 1, dtype=torch.float64) / c["hq"])
        if c["alibi"] == "batch":
            base = torch.outer(1 + 0.5 * torch.arange(c["batch"], dtype=torch.float64), base)
        slopes = base.float().to(device)
    return dict(window_size=tuple(c["window"]), softcap=c["softcap"], sinks=sinks, alibi_slopes=slopes)


def inputs(c: dict, gen, device="cuda"):
    """(args, kwargs) of the case's call (on `device`, the generator's): args start with q, k, v, leaves that
    require grad when the case does."""
    b, hq, hkv, d, dv, api = c["batch"], c["hq"], c["hkv"], c["d"], c["dv"], c["api"]
    if api == "attention":
        swap, shapes = (1, 2), ((b, hq, c["nq"], d), (b, hkv, c["nk"], d), (b, hkv, c["nk"], dv))
    elif api == "kvcache":
        rows = (b * c["nk"] // c["page"] + 3, c["page"]) if c["page"] else (b, c["nk"])  # paged: 3 spare pages
        swap, shapes = (1, 2), ((b, c["nq"], hq, d), (*rows, hkv, d), (*rows, hkv, dv))
    else:
        tq, tk = sum(c["lens_q"]), sum(c["lens_k"])
        swap, shapes = (0, 1), ((tq, hq, d), (tk, hkv, d), (tk, hkv, dv))
    q, k, v = (make(s, c, gen, swap, device) for s in shapes)
    if c["grad"]:
        q, k, v = (x.detach().requires_grad_() for x in (q, k, v))  # detach keeps the view's strides
    kw = variant_args(c, device)
    if c["sinks_grad"]:
        kw["sinks"].requires_grad_()
    if api == "attention":
        return (q, k, v), dict(causal=c["causal"], causal_alignment=c["alignment"], scale=c["scale"],
                               return_lse=c["return_lse"], **kw)
    ints = lambda x: None if x is None else torch.tensor(x, dtype=torch.int32, device=device)  # noqa: E731
    if api == "kvcache":
        table = None
        if c["page"]:  # pages in random order, never shared
            pages = c["nk"] // c["page"]
            table = torch.randperm(b * pages + 3, generator=gen, device=device)[:b * pages].int().view(b, pages)
        return (q, k, v, ints(c["seqlens"])), dict(block_table=table, causal=c["causal"], softmax_scale=c["scale"],
                                                   return_lse=c["return_lse"], num_splits=c["num_splits"], **kw)
    return ((q, k, v, ints(offsets(c["lens_q"])), ints(offsets(c["lens_k"])), c["max_q"], c["max_k"]),
            dict(causal=c["causal"], causal_alignment=c["alignment"], softmax_scale=c["scale"],
                 return_lse=c["return_lse"], seqused_k=ints(c["seqused"]), **kw))


# --- the float64 reference -----------------------------------------------------------------------------------------

def attend(q, k, v, *, scale, causal, offset, window, softcap, sinks, slopes):
    """One sequence in float64, each rule of autoflash/ops/reference.py applied literally: q (Hq, Nq, D), k (Hkv, Nk,
    D), v (Hkv, Nk, Dv); query i's diagonal key is i + offset; sinks, slopes (Hq,) or None. Returns out (Hq, Nq, Dv)
    and the natural-log LSE (Hq, Nq). A row with no visible key: out 0, LSE its sink (-inf without one). torch.autograd
    differentiates it without NaN (a row with nothing at all is cut from the graph)."""
    hq, nq, nk = q.shape[0], q.shape[1], k.shape[1]
    k, v = (x.repeat_interleave(hq // k.shape[0], 0) for x in (k, v))  # GQA: query head h reads KV head h // group
    s = scale * (q @ k.transpose(1, 2))
    if softcap:
        s = softcap * torch.tanh(s / softcap)  # before ALiBi and the masks
    diagonal, keys = np.arange(nq)[:, None] + offset, np.arange(nk)[None, :]
    if slopes is not None:
        s = s - slopes.to(s)[:, None, None] * torch.as_tensor(np.abs(diagonal - keys), dtype=s.dtype, device=s.device)
    seen = torch.as_tensor(visible_keys(diagonal, keys, causal=causal, window=window), device=s.device)
    s = s.masked_fill(~seen, -math.inf)
    sink = torch.full((hq,), -math.inf, dtype=s.dtype, device=s.device) if sinks is None else sinks.to(s)
    s = torch.cat([s, sink[:, None, None].expand(hq, nq, 1)], dim=-1)  # the sink: a logit in the denominator only
    dead = torch.isneginf(s).all(dim=-1, keepdim=True)
    s = s.masked_fill(dead, 0.0)
    lse = torch.logsumexp(s, dim=-1, keepdim=True)
    out = (torch.exp(s[..., :nk] - lse) @ v).masked_fill(dead, 0.0)
    return out, lse[..., 0].masked_fill(dead[..., 0], -math.inf)


def reference(c: dict, q, k, v, sinks=None, slopes=None, table=None):
    """(out, lse) of the case in float64 in its API's layouts, from float64 q, k, v (the call's, as given to it;
    paged caches: the pages, and `table` the block table)."""
    rules = dict(scale=c["scale"] or 1 / math.sqrt(c["d"]), causal=c["causal"], window=tuple(c["window"]),
                 softcap=c["softcap"] or 0.0, sinks=sinks)

    def one(q, k, v, offset: int, b: int):  # sequence b, its q, k, v token-major (N, H, D)
        row = slopes if slopes is None or slopes.dim() == 1 else slopes[b]
        return attend(*(x.transpose(0, 1) for x in (q, k, v)), offset=offset, slopes=row, **rules)

    outs, lses = [], []
    if c["api"] == "attention":
        off = c["nk"] - c["nq"] if c["alignment"] == "bottom_right" else 0
        for b in range(c["batch"]):
            o, lse = one(*(x[b].transpose(0, 1) for x in (q, k, v)), off, b)
            outs.append(o), lses.append(lse)
        return torch.stack(outs), torch.stack(lses)
    if c["api"] == "kvcache":
        if table is not None:  # key j of sequence b: page table[b, j // page_size], row j % page_size
            k, v = (x[table.long()].flatten(1, 2) for x in (k, v))
        for b in range(c["batch"]):
            n = c["nk"] if c["seqlens"] is None else c["seqlens"][b]
            o, lse = one(q[b], k[b, :n], v[b, :n], n - c["nq"], b)  # bottom-right: the newest nq tokens
            outs.append(o.transpose(0, 1)), lses.append(lse)
        return torch.stack(outs), torch.stack(lses)
    cq, ck = offsets(c["lens_q"]), offsets(c["lens_k"])
    outs, lses = [q.new_zeros(0, c["hq"], c["dv"])], [q.new_zeros(c["hq"], 0)]
    for b in range(c["batch"]):
        n = c["lens_k"][b] if c["seqused"] is None else c["seqused"][b]
        off = n - c["lens_q"][b] if c["alignment"] == "bottom_right" else 0
        o, lse = one(q[cq[b]:cq[b + 1]], k[ck[b]:ck[b] + n], v[ck[b]:ck[b] + n], off, b)
        outs.append(o.transpose(0, 1)), lses.append(lse)
    return torch.cat(outs), torch.cat(lses, dim=1)


# --- the table of outcomes -----------------------------------------------------------------------------------------

def pattern(message: str) -> str:
    """A refusal's message with its numbers and addresses as '#': one row of the table per kind of refusal."""
    return re.sub(r"0x[0-9a-f]+|\d+", "#", message)


def summarize(records: list[dict]) -> str:
    """The outcome counts per entry point, then each kind of refusal: how many, by which API, which cases, and the
    first message in full (to check against what the docs promise)."""
    counts = Counter((r["api"], r["verdict"]) for r in records)
    lines = [f"{len(records)} combination cases: " + "; ".join(
        f"{api} " + ", ".join(f"{counts[api, v]} {v}" for v in ("ok", "refused", "failed") if counts[api, v])
        for api in APIS if any(counts[api, v] for v in ("ok", "refused", "failed")))]
    groups = defaultdict(list)
    for r in records:
        if r["verdict"] == "refused":
            groups[r["error"], pattern(r["message"])].append(r)
    lines.append(f"refusals, {len(groups)} kinds (most frequent first):")
    for (error, _), rs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        apis = "/".join(sorted({r["api"] for r in rs}))
        ids = " ".join(r["id"] for r in rs[:8]) + (" ..." if len(rs) > 8 else "")
        lines.append(f"  {len(rs):3d} x {error} [{apis}] {ids}\n        {rs[0]['message']}\n"
                     f"        e.g. {features(rs[0])}")
    lines += [f"failed: {features(r)}: {r['detail'].splitlines()[0][:200]}"
              for r in records if r["verdict"] == "failed"]
    return "\n".join(lines)


def features(c: dict) -> str:
    """A case in one short line: entry point, dtype, head dims, heads, and what is switched on."""
    on = [name for name, key in (("causal", "causal"), ("window", "window"), ("softcap", "softcap"), ("sinks", "sinks"),
                                 ("alibi", "alibi"), ("scale", "scale"), ("lse", "return_lse"), ("grad", "grad"),
                                 ("paged", "page"), ("seqlens", "seqlens"), ("seqused", "seqused"))
          if c.get(key) not in (None, False, 0.0, [-1, -1], (-1, -1))]
    return " ".join([c["id"], c["api"], c["dtype"], f"d{c['d']}/{c['dv']}", f"h{c['hq']}/{c['hkv']}", c["layout"],
                     *([c["alignment"]] if "alignment" in c else []), *on])


if __name__ == "__main__":  # python tests/combinations.py LOG: the table of a run's log
    with open(sys.argv[1]) as f:
        print(summarize([json.loads(line) for line in f if line.strip()]))
