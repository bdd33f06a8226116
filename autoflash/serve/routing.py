"""Which operation serves a call, and whether its gradients exist: pure functions of shapes,
dtypes and the GPU's arch (no GPU, no torch), so every decision is testable on the CPU.

- autoflash.attention(): the split-KV decode kernel (ops/decode.py) when it is the right
  kernel, else the forward (ops/forward.py). See route_attention for the rule (causal
  alignment included: decode's mask is bottom-right).
- autoflash.attention_with_kvcache() (serve/kvcache.py): decode for 1..DECODE_MAX_QUERIES query
  tokens of a head dim decode has; longer chunks and Dv != Dqk run the forward (paged caches:
  flash_fwd_wgmma or flash_fwd_mma compiled with `paged`). See kvcache_route.
- Gradients: the backward operation (ops/backward.py: flash_bwd_wgmma where it serves the key on
  sm_90, else flash_bwd_mma); differentiable_problem says why a call is not differentiable.
"""
from __future__ import annotations

from dataclasses import dataclass

from autoflash.kernels.archs import build_arch
from autoflash.kernels.template import spell_values
from autoflash.ops.backward import TEMPLATE as BACKWARD_TEMPLATE
from autoflash.ops.decode_kernels import HEAD_DIMS as DECODE_HEAD_DIMS
from autoflash.ops.decode_kernels import MMA as DECODE_TEMPLATE

# Query tokens per sequence the decode kernel serves: issue 14's range (one token, or a handful
# for speculative decoding), the range tests/test_decode_gpu.py checks on the GPU (Nq 1..16).
DECODE_MAX_QUERIES = 16
GRID_YZ_LIMIT = 65535  # CUDA's limit on gridDim.y/z: decode puts batch * heads_kv in z
DECODE_DTYPES = DECODE_TEMPLATE.dtypes  # ("fp16", "bf16")
BACKWARD_DTYPES = BACKWARD_TEMPLATE.dtypes
BACKWARD_HEAD_DIMS = BACKWARD_TEMPLATE.key_values["head_dim"]


@dataclass(frozen=True)
class Route:
    op: str  # "decode" or "forward": the operation whose kernel runs
    reason: str  # why, in words (the first rule that sent it to the forward, or why decode fits)


def route_attention(*, kind: str, dtype: str, arch: str, batch: int, heads_q: int, heads_kv: int, seq_q: int,
                    seq_k: int, head_dim: int, causal: bool, causal_alignment: str = "top_left",
                    variants: tuple[str, ...] = (), head_dim_v: int = 0) -> Route:
    """The operation serving autoflash.attention(q, k, v, causal=causal, causal_alignment=...).

    Decode serves it when all hold: PyTorch tensors (decode's launcher allocates with torch),
    seq_q <= DECODE_MAX_QUERIES, fp16/bf16, one head dim for q, k and v (head_dim_v 0 or equal) the decode template
    has, an arch it has, the decode grid fits (batch * heads_kv <= 65535), and the masks agree: decode's causal mask is
    bottom-right (query i sees keys <= i + seq_k - seq_q), so it serves causal_alignment
    "bottom_right" with seq_q <= seq_k (every row sees a key), and "top_left" (keys <= i) only
    when seq_q == seq_k (the same mask); without causal there is no mask; and the variants'
    diagonal agrees (variants: the names of window_size/softcap/sinks/alibi_slopes in use; window
    and ALiBi measure from decode's bottom-right diagonal, so top-left needs seq_q == seq_k).
    Everything else runs the forward kernel, as before decode existed."""
    def forward(why: str) -> Route:
        return Route("forward", why)

    diagonal = [name for name in variants if name in ("window_size", "alibi_slopes")]
    if diagonal and causal_alignment != "bottom_right" and seq_q != seq_k:
        return forward(f"{', '.join(diagonal)} with the top-left diagonal and seq_q {seq_q} != seq_k {seq_k}: "
                       "decode measures from the bottom-right one")
    if kind != "torch":
        return forward(f"{kind} arrays: the decode path takes PyTorch tensors")
    lacks = _decode_lacks(seq_q, head_dim, head_dim_v)
    if lacks:
        return forward(lacks)
    if dtype not in DECODE_DTYPES:
        return forward(f"dtype {dtype}: decode has {list(DECODE_DTYPES)}")
    if build_arch(DECODE_TEMPLATE.archs, arch) is None:
        return forward(f"arch {arch}: decode runs on {list(DECODE_TEMPLATE.archs)}")
    if batch * heads_kv > GRID_YZ_LIMIT:
        return forward(f"batch * heads_kv = {batch * heads_kv} > {GRID_YZ_LIMIT} (decode's grid)")
    if causal and causal_alignment != "bottom_right" and seq_q != seq_k:
        return forward(f"top-left causal with seq_q {seq_q} != seq_k {seq_k}: decode's mask is bottom-right")
    if causal and seq_q > seq_k:
        return forward(f"causal with seq_q {seq_q} > seq_k {seq_k}: rows without a key are the forward's")
    if not causal:
        mask = ", no mask"
    elif seq_q == seq_k:
        mask = ", causal with seq_q == seq_k (top-left = bottom-right)"
    else:
        mask = ", bottom-right causal (decode's own mask)"
    return Route("decode", f"seq_q {seq_q} <= {DECODE_MAX_QUERIES}, {dtype} d{head_dim}" + mask)


def differentiable_problem(*, kind: str, dtype: str, arch: str | None, head_dim: int,
                           api: str = "autoflash.attention()") -> str | None:
    """None when the backward covers a call, else why not (the error raised when an input
    requires grad). Any seq_q / seq_k, GQA, causal or not, and either forward route (both hand
    the backward O and the natural-log LSE (B, Hq, Nq)). arch None: not checked here (the
    backward checks it when it runs)."""
    supported = (f"gradients need PyTorch CUDA tensors in {' or '.join(BACKWARD_DTYPES)} with head_dim "
                 f"{spell_values(BACKWARD_HEAD_DIMS)} on {'/'.join(BACKWARD_TEMPLATE.archs)}")
    if kind != "torch":
        why = f"{kind} arrays"
    elif dtype not in BACKWARD_DTYPES:
        why = f"dtype {dtype}"
    elif head_dim not in BACKWARD_HEAD_DIMS:
        why = f"head_dim {head_dim}"
    elif arch is not None and build_arch(BACKWARD_TEMPLATE.archs, arch) is None:
        why = f"arch {arch}"
    else:
        return None
    return (f"{api} has no backward for {why}: {supported} (the flash_bwd_mma backward). For inference "
            "call it under torch.no_grad() or torch.inference_mode(); to train this configuration use "
            "torch.nn.functional.scaled_dot_product_attention")


def kvcache_route(seq_q: int, head_dim: int, head_dim_v: int = 0) -> Route:
    """The operation serving attention_with_kvcache for seq_q query tokens of head_dim (V's: head_dim_v, 0: the
    same): decode where its template serves the shapes (_decode_lacks), else the forward (serve/kvcache.py's chunked
    prefill: the dense forward over views, or the paged forward; num_splits does not apply there)."""
    lacks = _decode_lacks(seq_q, head_dim, head_dim_v)
    return Route("forward", lacks) if lacks else Route("decode", f"seq_q {seq_q} <= {DECODE_MAX_QUERIES}, d{head_dim}")


def _decode_lacks(seq_q: int, head_dim: int, head_dim_v: int = 0) -> str | None:
    """Why the decode template cannot serve seq_q query tokens of these head dims (None: it can)."""
    if seq_q > DECODE_MAX_QUERIES:
        return f"seq_q {seq_q} > {DECODE_MAX_QUERIES} (decode serves up to {DECODE_MAX_QUERIES} query tokens)"
    if head_dim not in DECODE_HEAD_DIMS:
        return f"head_dim {head_dim}: decode has {spell_values(DECODE_HEAD_DIMS)}"
    if head_dim_v and head_dim_v != head_dim:
        return f"v's head dim {head_dim_v} != q/k's {head_dim}: decode's kernel has one head dim"
    return None
