"""Hugging Face transformers backend: autoflash as an attention implementation.

    import autoflash.integrations.transformers as aft
    name = aft.register()                      # "autoattn"; idempotent
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation=name)   # or model.set_attn_implementation(name)

register() adds two functions to transformers' global registries (transformers >= 4.53, the first
with AttentionMaskInterface):
- AttentionInterface: attention_forward(module, query, key, value, attention_mask, scaling=None,
  dropout=0.0, **kwargs) -> (attn_output (B, Nq, Hq, D), None), the signature every model's
  attention layer calls (query (B, Hq, Nq, D), key/value (B, Hkv, Nk, D), as sdpa_attention_forward
  receives them).
- AttentionMaskInterface: causal_mask(...), called once per forward by create_causal_mask. It
  returns None (the kernel builds the causal mask itself) or raises: autoflash has no dense 4-D
  mask, so a padding token, a StaticCache or a non-causal pattern is refused here, before any
  layer runs, never silently ignored.

Why the name is not "autoflash": transformers 5.x treats every implementation whose name contains
"flash" as a flash-attn build (utils/generic.py is_flash_attention_requested: `"flash" in name`)
and tries to load it as a Hub kernel; from_config(..., attn_implementation="autoflash") then fails
with "Could not find the currently requested flash attention implementation" (checked with 5.17).

Semantics: keys are exactly the cached tokens followed by the new ones (DynamicCache, or no
cache), the queries are the last Nq of them, so causal attention is aligned bottom-right: a
prefill (Nq = Nk), a chunked prefill against a cache (Nq < Nk) and a decode step (Nq = 1, no mask
needed) all run through autoflash.attention() with q/k/v passed as the views transformers built
(no copies; GQA natively, K/V heads are not repeated).

Importing this module imports neither torch nor transformers; register() imports transformers.
"""
from __future__ import annotations

import functools
import inspect

import autoflash

NAME = "autoattn"

_INSTALL_HINT = "pip install 'autoflash[transformers]'"
# kwargs some models pass to the attention function that change what it must compute.
_REFUSED_KWARGS = {
    "sliding_window": "sliding-window attention",
    "softcap": "logit soft-capping",
    "s_aux": "attention sinks",
    "cu_seq_lens_q": "packed sequences (cu_seq_lens)",
    "cu_seq_lens_k": "packed sequences (cu_seq_lens)",
}
_SDPA_HINT = "use attn_implementation='sdpa' for this model or input"


def register() -> str:
    """Register NAME with transformers' AttentionInterface and AttentionMaskInterface (both global,
    so every model sees it) and return NAME. Calling it again changes nothing."""
    try:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface
    except ImportError as exc:
        raise ImportError(f"autoflash's transformers backend needs transformers >= 4.53 "
                          f"(AttentionInterface and AttentionMaskInterface): {_INSTALL_HINT} ({exc})") from None
    AttentionInterface.register(NAME, attention_forward)
    AttentionMaskInterface.register(NAME, causal_mask)
    return NAME


def causal_mask(batch_size: int, q_length: int | None = None, kv_length: int | None = None, q_offset=0,
                kv_offset: int = 0, mask_function=None, attention_mask=None, **kwargs):
    """The mask autoflash needs: none. transformers 5.x passes q_length/q_offset, 4.53-4.57 pass
    cache_position instead. Raises ValueError for what the kernel cannot express."""
    from transformers.masking_utils import causal_mask_function

    if mask_function is not None and mask_function is not causal_mask_function:
        name = getattr(mask_function, "__qualname__", type(mask_function).__name__)
        raise ValueError(f"autoflash ({NAME}) computes plain causal attention; this model or input asks for "
                         f"another mask pattern ({name}: sliding window, chunked or bidirectional attention, "
                         f"packed sequences or a custom overlay); {_SDPA_HINT}")
    if q_length is None:
        cache_position = kwargs.get("cache_position")
        if cache_position is None:
            raise ValueError("the mask interface was called with neither q_length nor cache_position")
        q_length, q_offset = int(cache_position.shape[0]), int(cache_position[0])  # reading [0] syncs the host
    q_offset = int(q_offset)  # a StaticCache passes a tensor
    if kv_offset != 0 or q_offset + q_length != kv_length:
        raise ValueError(f"autoflash ({NAME}) attends to every key it is given, so the keys must be exactly the "
                         f"cached tokens followed by the new ones; here kv_length={kv_length}, kv_offset={kv_offset}, "
                         f"{q_offset} cached + {q_length} new tokens (a StaticCache or a sliding-window cache): "
                         f"use DynamicCache (the default), or {_SDPA_HINT}")
    if attention_mask is not None:
        if attention_mask.ndim != 2 or attention_mask.shape[-1] != kv_length:
            raise ValueError(f"autoflash ({NAME}) takes a 2-D padding mask of shape (batch, {kv_length}); got "
                             f"{tuple(attention_mask.shape)}")
        if not bool(attention_mask.all()):  # one host sync per forward, as flash_attention_2's mask
            raise ValueError(f"autoflash ({NAME}) does not support padding masks yet (the attention_mask has padding "
                             f"tokens, e.g. a left-padded batch of prompts of different lengths): pass sequences of "
                             f"equal length (or one sequence per call), or {_SDPA_HINT}")
    return None


@functools.cache
def _has_causal_alignment() -> bool:
    return "causal_alignment" in inspect.signature(autoflash.attention).parameters


def attention_forward(module, query, key, value, attention_mask, scaling: float | None = None,
                      dropout: float = 0.0, **kwargs):
    """transformers' attention function: query (B, Hq, Nq, D), key/value (B, Hkv, Nk, D) with Hq a
    multiple of Hkv; returns (attn_output (B, Nq, Hq, D) contiguous, None) as sdpa's does."""
    if attention_mask is not None:
        raise ValueError(f"autoflash ({NAME}) got an explicit attention mask of shape "
                         f"{tuple(attention_mask.shape)}; it computes causal or full attention only, with no mask "
                         f"tensor (a custom 4-D mask, or a model whose mask was built by another implementation); "
                         f"{_SDPA_HINT}")
    if dropout:
        raise ValueError(f"autoflash ({NAME}) has no attention dropout (got dropout={dropout}); set the model's "
                         f"attention_dropout to 0, or {_SDPA_HINT}")
    if kwargs.get("output_attentions"):
        raise ValueError(f"autoflash ({NAME}) never forms the attention weights, so output_attentions=True cannot "
                         f"be served; use attn_implementation='eager' to get them")
    for arg, what in _REFUSED_KWARGS.items():
        if kwargs.get(arg) is not None:
            raise ValueError(f"autoflash ({NAME}) does not support {what} (the model passed {arg}); {_SDPA_HINT}")
    seq_q, seq_k = query.shape[2], key.shape[2]
    is_causal = kwargs.get("is_causal")
    if is_causal is None:
        is_causal = getattr(module, "is_causal", True)
    causal = bool(is_causal) and seq_q > 1  # one query token is the last position: it sees every key
    if causal and seq_q > seq_k:
        raise ValueError(f"causal attention with more queries ({seq_q}) than keys ({seq_k}): the queries must be "
                         f"the last positions of the keys")
    options = {}
    if causal:
        if _has_causal_alignment():
            options["causal_alignment"] = "bottom_right"
        elif seq_q != seq_k:  # equal lengths: top-left and bottom-right are the same mask
            raise ValueError(f"a chunked prefill ({seq_q} new tokens on {seq_k} keys) needs bottom-right causal "
                             f"attention, and this autoflash.attention() has no causal_alignment argument (it "
                             f"aligns top-left); update autoflash, or {_SDPA_HINT}")
    out = autoflash.attention(query, key, value, causal=causal, scale=scaling, **options)
    return out.transpose(1, 2).contiguous(), None
