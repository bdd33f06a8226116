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
- AttentionMaskInterface: causal_mask(...), called once per forward (per layer type) by
  create_causal_mask / create_sliding_window_causal_mask. Like flash_attention_2's, it builds no
  dense mask: it returns None, or the 2-D padding mask (B, Nk) bool when some key is padding; a
  pattern it cannot serve (chunked, bidirectional, packed sequences, overlays) or a StaticCache is
  refused here, before any layer runs, never silently ignored.

Why the name is not "autoflash": transformers 5.x treats every implementation whose name contains
"flash" as a flash-attn build (utils/generic.py is_flash_attention_requested: `"flash" in name`)
and tries to load it as a Hub kernel; from_config(..., attn_implementation="autoflash") then fails
with "Could not find the currently requested flash attention implementation" (checked with 5.17).

Semantics: keys are the cached tokens followed by the new ones (DynamicCache, whose sliding-window
layers keep a suffix, or no cache), the queries are the last Nq of them, so causal attention is
aligned bottom-right (prefill, chunked prefill, decode). Without padding, q/k/v go to
autoflash.attention() as the views transformers built (no copies; GQA natively). With padding (a
2-D mask from causal_mask, or a 4-D mask the caller passed that is only padding + causality) the
batch is served as packed sequences by autoflash.attention_varlen (integrations/padding.py), with
no dense mask and without copies where a view expresses it. The layer's sliding_window, softcap
and s_aux (attention sinks) kwargs map onto window_size=(W - 1, 0), softcap and sinks.

Importing this module imports neither torch nor transformers; register() imports transformers.
"""
from __future__ import annotations

import functools
import inspect

import autoflash
from autoflash.integrations import padding

NAME = "autoattn"

_INSTALL_HINT = "pip install 'autoflash[transformers]'"
_REFUSED_KWARGS = {"cu_seq_lens_q": "packed sequences (cu_seq_lens)", "cu_seq_lens_k": "packed sequences (cu_seq_lens)"}
_SDPA_HINT = "use attn_implementation='sdpa' for this model or input"
_masks = padding.Memo()  # a mask a layer got, classified once for every layer
_plans = padding.Memo()  # the varlen plan of the current padding mask


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


def mask_window(mask_function) -> int | None:
    """The pattern of a transformers mask function: None for causal, W for causal with a sliding
    window of W slots (keys kv > q - W, create_sliding_window_causal_mask's). Recognised by how
    transformers builds them, then checked on a row of positions; anything else raises."""
    import torch
    from transformers.masking_utils import causal_mask_function

    window = None
    if mask_function is not None and mask_function is not causal_mask_function:
        parts = inspect.getclosurevars(mask_function).nonlocals.get("mask_functions", ())
        overlays = [f for f in parts if f is not causal_mask_function]
        if (mask_function.__qualname__.startswith("and_masks.") and len(parts) == 2 and len(overlays) == 1
                and overlays[0].__qualname__.startswith("sliding_window_overlay.")):
            window = inspect.getclosurevars(overlays[0]).nonlocals.get("sliding_window")
        if not isinstance(window, int) or window < 1:
            name = getattr(mask_function, "__qualname__", type(mask_function).__name__)
            raise ValueError(f"autoflash ({NAME}) computes causal attention, with or without a sliding window; this "
                             f"model or input asks for another mask pattern ({name}: chunked or bidirectional "
                             f"attention, packed sequences or a custom overlay); {_SDPA_HINT}")
        q = (window or 1) + 5
        kv = torch.arange(q + 3)
        expected = (kv <= q) & (kv > q - (window or q + 1))
        zero = torch.tensor(0)
        if not torch.equal(mask_function(zero, zero, torch.tensor(q), kv).to(torch.bool), expected):
            raise ValueError(f"autoflash ({NAME}): this transformers' mask function does not compute the pattern it "
                             f"was recognised as (causal, window {window}); {_SDPA_HINT}")
    return window


def causal_mask(batch_size: int, q_length: int | None = None, kv_length: int | None = None, q_offset=0,
                kv_offset: int = 0, mask_function=None, attention_mask=None, **kwargs):
    """The mask autoflash needs: None, or the (batch, kv_length) bool padding mask when it has
    padding. transformers 5.x passes q_length/q_offset, 4.53-4.57 pass cache_position instead.
    Raises ValueError for what the kernel cannot express."""
    window = mask_window(mask_function)
    if q_length is None:
        cache_position = kwargs.get("cache_position")
        if cache_position is None:
            raise ValueError("the mask interface was called with neither q_length nor cache_position")
        q_length, q_offset = int(cache_position.shape[0]), int(cache_position[0])  # reading [0] syncs the host
    q_offset, seen = int(q_offset), int(q_offset) + q_length  # a StaticCache passes a tensor
    if kv_offset + kv_length != seen or (kv_offset and window is None):
        raise ValueError(f"autoflash ({NAME}) attends to every key it is given, so the keys must be the cached tokens "
                         f"followed by the new ones; here kv_length={kv_length}, kv_offset={kv_offset}, {q_offset} "
                         f"cached + {q_length} new tokens (a StaticCache): use DynamicCache (the default), or "
                         f"{_SDPA_HINT}")
    if attention_mask is None:
        return None
    if attention_mask.ndim != 2 or attention_mask.shape[-1] != seen:
        raise ValueError(f"autoflash ({NAME}) takes a 2-D padding mask of shape (batch, {seen}); got "
                         f"{tuple(attention_mask.shape)}")
    keys = attention_mask[:, kv_offset:].bool()
    return None if bool(keys.all()) else keys  # one host sync per forward, as flash_attention_2's mask


@functools.cache
def _accepts(function, argument: str) -> bool:
    return argument in inspect.signature(function).parameters


def _variant(function, window, softcap, sinks) -> dict:
    """The layer's variant as `function`'s arguments; refused when this autoflash lacks one."""
    options, names = {}, {}
    if window is not None:
        options["window_size"], names["window_size"] = (window - 1, 0), f"sliding_window={window}"
    if softcap is not None:
        options["softcap"], names["softcap"] = float(softcap), f"softcap={softcap}"
    if sinks is not None:  # autoflash takes float32 sinks; a model keeps them in its own dtype
        options["sinks"], names["sinks"] = sinks.float().contiguous(), "s_aux (attention sinks)"
    for argument, what in names.items():
        if not _accepts(function, argument):
            raise ValueError(f"autoflash ({NAME}): this autoflash.{function.__name__}() has no {argument} argument, "
                             f"which the layer's {what} needs; update autoflash, or {_SDPA_HINT}")
    return options


def _key_padding(mask, seq_q: int, seq_k: int, batch: int, causal: bool):
    """(key_valid (B, Nk) bool or None when nothing is padding, causal) from the mask a layer got."""
    ndim, shape = getattr(mask, "ndim", None), tuple(getattr(mask, "shape", ()))
    if ndim == 2 and shape == (batch, seq_k):
        return _masks.get(mask, "2d", lambda: _classify_2d(mask)), causal
    if ndim == 4 and shape[0] in (1, batch):
        found = _masks.get(mask, ("4d", seq_q, seq_k, batch), lambda: _classify_4d(mask, seq_q, seq_k, batch))
        if found is not None:
            return found
    raise ValueError(f"autoflash ({NAME}) got an attention mask of shape {shape} that is not only padding and "
                     f"causality (a custom 4-D mask: a bias, a per-head or block pattern); it never builds a dense "
                     f"mask; {_SDPA_HINT}")


def _classify_2d(mask):
    key_valid = mask.bool()  # the mask itself when it is bool already
    return None if bool(key_valid.all()) else key_valid


def _classify_4d(mask, seq_q, seq_k, batch):
    found = padding.key_valid_from_4d(mask, seq_q, seq_k)
    if found is None:
        return None
    key_valid, causal = found
    key_valid = key_valid.expand(batch, seq_k).contiguous()
    return (None if bool(key_valid.all()) else key_valid), causal


def _window(sliding_window, seq_k: int) -> int | None:
    """W when it restricts some key (a query never sees more than seq_k keys), else None."""
    if sliding_window is None:
        return None
    if isinstance(sliding_window, bool) or not isinstance(sliding_window, int) or sliding_window < 1:
        raise ValueError(f"sliding_window must be a positive int, got {sliding_window!r}")
    return sliding_window if seq_k > sliding_window else None


def attention_forward(module, query, key, value, attention_mask, scaling: float | None = None,
                      dropout: float = 0.0, **kwargs):
    """transformers' attention function: query (B, Hq, Nq, D), key/value (B, Hkv, Nk, D) with Hq a
    multiple of Hkv; returns (attn_output (B, Nq, Hq, D) contiguous, None) as sdpa's does."""
    if dropout:
        raise ValueError(f"autoflash ({NAME}) has no attention dropout (got dropout={dropout}); set the model's "
                         f"attention_dropout to 0, or {_SDPA_HINT}")
    if kwargs.get("output_attentions"):
        raise ValueError(f"autoflash ({NAME}) never forms the attention weights, so output_attentions=True cannot "
                         f"be served; use attn_implementation='eager' to get them")
    for arg, what in _REFUSED_KWARGS.items():
        if kwargs.get(arg) is not None:
            raise ValueError(f"autoflash ({NAME}) does not support {what} (the model passed {arg}); {_SDPA_HINT}")
    batch, seq_q, seq_k = query.shape[0], query.shape[2], key.shape[2]
    is_causal = kwargs.get("is_causal")
    causal = bool(getattr(module, "is_causal", True) if is_causal is None else is_causal)
    window = _window(kwargs.get("sliding_window"), seq_k)
    softcap, sinks = kwargs.get("softcap"), kwargs.get("s_aux")
    key_valid = None
    if attention_mask is not None:
        key_valid, causal = _key_padding(attention_mask, seq_q, seq_k, batch, causal)
    if window is not None and not causal:
        raise ValueError(f"autoflash ({NAME}) serves sliding windows in causal attention only; {_SDPA_HINT}")
    if causal and seq_q > seq_k:
        raise ValueError(f"causal attention with more queries ({seq_q}) than keys ({seq_k}): the queries must be "
                         f"the last positions of the keys")
    if key_valid is None:
        return _dense(query, key, value, causal, scaling, window, softcap, sinks), None
    return _padded(query, key, value, key_valid, causal, scaling, window, softcap, sinks), None


def _dense(query, key, value, causal, scaling, window, softcap, sinks):
    fn = autoflash.attention
    options = _variant(fn, window, softcap, sinks)
    causal = causal and (query.shape[2] > 1 or window is not None)  # one query token without a window sees every key
    if causal:
        if _accepts(fn, "causal_alignment"):
            options["causal_alignment"] = "bottom_right"
        elif query.shape[2] != key.shape[2]:  # equal lengths: top-left and bottom-right are the same mask
            raise ValueError(f"a chunked prefill ({query.shape[2]} new tokens on {key.shape[2]} keys) needs "
                             f"bottom-right causal attention, and this autoflash.attention() has no causal_alignment "
                             f"argument (it aligns top-left); update autoflash, or {_SDPA_HINT}")
    out = fn(query, key, value, causal=causal, scale=scaling, **options)
    return out.transpose(1, 2).contiguous()


def _padded(query, key, value, key_valid, causal, scaling, window, softcap, sinks):
    fn = getattr(autoflash, "attention_varlen", None)
    if fn is None:
        raise ValueError(f"autoflash ({NAME}): a batch with padding tokens is served by autoflash.attention_varlen, "
                         f"which this autoflash lacks; update autoflash, or {_SDPA_HINT}")
    with_seqused = _accepts(fn, "seqused_k")
    call = padding.plan_call(key_valid, query, key, value, causal=causal, window=window, sinks=sinks is not None,
                             memo=_plans, with_seqused=with_seqused)
    options = _variant(fn, call.window, softcap, sinks)
    if call.causal and _accepts(fn, "causal_alignment"):
        options["causal_alignment"] = "bottom_right"
    if call.seqused_k is not None:
        options["seqused_k"] = call.seqused_k
    out = fn(call.q, call.k, call.v, call.cu_seqlens_q, call.cu_seqlens_k, call.max_seqlen_q, call.max_seqlen_k,
             causal=call.causal, softmax_scale=scaling, **options)
    return call.unpack(out)
