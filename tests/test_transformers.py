"""The transformers backend's wiring without a GPU (autoflash/integrations/transformers.py).

What autoflash itself decides is checked here: the registration, the mask function transformers
calls (through create_causal_mask, as a model calls it), the arguments attention_forward passes
to autoflash.attention() (recorded by a spy: the kernels need a GPU; tests/test_transformers_gpu.py
runs them in a model) and the refusals. Skipped with the reason without torch or transformers
(CI has neither), except the import check, which needs neither."""
import subprocess
import sys

import pytest

import autoflash
import autoflash.integrations.transformers as backend

ref = None  # tests/transformers_reference.py, imported with torch by the kernels fixture


def test_import_autoflash_imports_neither_transformers_nor_torch():
    code = ("import sys, autoflash, autoflash.integrations.transformers;"
            "print(sorted(m for m in ('transformers', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.fixture(scope="module")
def hf():
    pytest.importorskip("torch", reason="the transformers backend's wiring tests need PyTorch")
    return pytest.importorskip("transformers", reason="the transformers backend's wiring tests need transformers")


@pytest.fixture
def torch(hf):
    import torch

    return torch


def tiny_config(hf, name):
    cfg = hf.LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=16, vocab_size=100)
    cfg._attn_implementation = name
    return cfg


def test_register_is_idempotent(hf):
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    assert backend.register() == backend.NAME
    sizes = (len(ALL_ATTENTION_FUNCTIONS), len(ALL_MASK_ATTENTION_FUNCTIONS))
    assert backend.register() == backend.NAME
    assert (len(ALL_ATTENTION_FUNCTIONS), len(ALL_MASK_ATTENTION_FUNCTIONS)) == sizes
    assert AttentionInterface()[backend.NAME] is backend.attention_forward
    assert ALL_ATTENTION_FUNCTIONS[backend.NAME] is backend.attention_forward
    assert ALL_MASK_ATTENTION_FUNCTIONS[backend.NAME] is backend.causal_mask


def test_models_accept_the_name(hf):
    """Both ways of choosing it; a name containing "flash" would fail here on transformers 5.x."""
    name = backend.register()
    model = hf.AutoModelForCausalLM.from_config(tiny_config(hf, None), attn_implementation=name)
    assert model.config._attn_implementation == name
    model = hf.AutoModelForCausalLM.from_config(tiny_config(hf, None), attn_implementation="sdpa")
    model.set_attn_implementation(name)
    assert model.config._attn_implementation == name


def _mask_over_cache(hf, torch, create_mask, cfg, q_len, cached, attention_mask):
    """create_mask (a transformers.masking_utils mask function) as a model calls it for a batch of 2
    and q_len new tokens, with a DynamicCache of cfg holding `cached` tokens."""
    cache = hf.DynamicCache(config=cfg)
    if cached:
        kv = torch.zeros(2, cfg.num_key_value_heads, cached, cfg.head_dim)
        for layer in range(cfg.num_hidden_layers):
            cache.update(kv, kv, layer)
    return create_mask(config=cfg, inputs_embeds=torch.zeros(2, q_len, cfg.hidden_size),
                       attention_mask=attention_mask, past_key_values=cache,
                       position_ids=torch.arange(cached, cached + q_len).expand(2, -1))


def _mask(hf, torch, q_len, cached=0, attention_mask=None, name=None):
    """create_causal_mask as LlamaModel calls it, with a DynamicCache holding `cached` tokens."""
    from transformers.masking_utils import create_causal_mask

    cfg = tiny_config(hf, name or backend.register())
    return _mask_over_cache(hf, torch, create_causal_mask, cfg, q_len, cached, attention_mask)


@pytest.mark.parametrize("q_len,cached", [(8, 0), (1, 8), (4, 8)], ids=["prefill", "decode", "chunked-prefill"])
def test_mask_is_none_for_causal_attention_over_a_dynamic_cache(hf, torch, q_len, cached):
    assert _mask(hf, torch, q_len, cached) is None
    no_padding = torch.ones(2, cached + q_len, dtype=torch.long)
    assert _mask(hf, torch, q_len, cached, attention_mask=no_padding) is None


def test_sdpa_needs_a_dense_mask_where_autoflash_needs_none(hf, torch):
    """The chunked prefill is the case the dense 4-D mask was built for (sdpa's is_causal is top-left)."""
    mask = _mask(hf, torch, 4, 8, name="sdpa")
    assert mask is not None and tuple(mask.shape) == (2, 1, 4, 12)


def test_padding_mask_is_the_2d_key_mask(hf, torch):
    """Like flash_attention_2's mask: the (batch, kv_length) bool padding mask, no dense 4-D mask."""
    left_padded = torch.ones(2, 8, dtype=torch.long)
    left_padded[0, :3] = 0
    mask = _mask(hf, torch, 8, attention_mask=left_padded)
    assert mask.dtype == torch.bool and torch.equal(mask, left_padded.bool())
    decode_mask = torch.ones(2, 9, dtype=torch.long)
    decode_mask[1, 0] = 0
    mask = _mask(hf, torch, 1, 8, attention_mask=decode_mask)
    assert tuple(mask.shape) == (2, 9) and torch.equal(mask, decode_mask.bool())
    with pytest.raises(ValueError, match="2-D padding mask"):
        backend.causal_mask(batch_size=2, q_length=8, kv_length=8, attention_mask=left_padded[:, :5].bool())


def sliding_config(hf, name, window=4):
    cfg = hf.MistralConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, head_dim=16, vocab_size=100, sliding_window=window)
    cfg._attn_implementation = name
    return cfg


def _sliding_mask(hf, torch, q_len, cached, attention_mask=None):
    """create_sliding_window_causal_mask over Mistral's DynamicCache (sliding-window layers keep the
    last window - 1 tokens, so kv_offset > 0 once the cache is longer)."""
    from transformers.masking_utils import create_sliding_window_causal_mask

    cfg = sliding_config(hf, backend.register())
    return _mask_over_cache(hf, torch, create_sliding_window_causal_mask, cfg, q_len, cached, attention_mask)


def test_sliding_window_masks_over_a_sliding_cache(hf, torch):
    assert _sliding_mask(hf, torch, 8, 0) is None
    assert _sliding_mask(hf, torch, 1, 8) is None  # the cache holds 3 of the 8: kv_offset 5
    padded = torch.ones(2, 9, dtype=torch.long)
    padded[0, :6] = 0
    mask = _sliding_mask(hf, torch, 1, 8, attention_mask=padded)
    assert torch.equal(mask, padded[:, 5:].bool())  # the keys the layer holds: slots 5..8


def test_other_mask_patterns_are_refused(hf, torch):
    from transformers.masking_utils import (and_masks, bidirectional_mask_function, causal_mask_function,
                                            chunked_causal_mask_function, packed_sequence_mask_function,
                                            sliding_window_causal_mask_function)

    assert backend.mask_window(causal_mask_function) is None
    assert backend.mask_window(sliding_window_causal_mask_function(4)) == 4
    packed = and_masks(causal_mask_function, packed_sequence_mask_function(torch.zeros(1, 8, dtype=torch.long)))
    for other in (chunked_causal_mask_function(4, torch.zeros(1, dtype=torch.long)), bidirectional_mask_function,
                  packed, and_masks(sliding_window_causal_mask_function(4), causal_mask_function)):
        with pytest.raises(ValueError, match="another mask pattern"):
            backend.causal_mask(batch_size=1, q_length=8, kv_length=8, mask_function=other)


def sliding_window_overlay(sliding_window):
    """Named and built as transformers' overlay, but one key wider."""
    def inner_mask(batch_idx, head_idx, q_idx, kv_idx):
        return kv_idx >= q_idx - sliding_window
    return inner_mask


def test_a_recognised_pattern_is_checked_by_evaluating_it(hf, torch):
    """A function shaped like transformers' sliding window but computing another pattern is refused."""
    from transformers.masking_utils import and_masks, causal_mask_function

    lookalike = and_masks(sliding_window_overlay(4), causal_mask_function)
    with pytest.raises(ValueError, match="does not compute the pattern"):
        backend.mask_window(lookalike)


def test_keys_beyond_the_filled_cache_are_refused(hf):
    """A StaticCache hands the layers max_cache_len keys, most of them not written yet."""
    with pytest.raises(ValueError, match="StaticCache"):
        backend.causal_mask(batch_size=1, q_length=1, kv_length=128, q_offset=8)
    with pytest.raises(ValueError, match="StaticCache"):  # a key offset is a sliding-window cache's only
        backend.causal_mask(batch_size=1, q_length=1, kv_length=4, q_offset=8, kv_offset=5)


def test_mask_takes_cache_position_as_transformers_4_53_to_4_57_pass_it(hf, torch):
    assert backend.causal_mask(batch_size=1, cache_position=torch.arange(8, 12), kv_length=12) is None
    with pytest.raises(ValueError, match="StaticCache"):
        backend.causal_mask(batch_size=1, cache_position=torch.arange(8, 12), kv_length=64)


class Kernels:
    """Stand-ins for autoflash.attention and autoflash.attention_varlen (the kernels need a GPU): the
    pure-torch references of tests/transformers_reference.py, recording each call."""

    def __init__(self):
        self.dense, self.varlen = [], []

    def attention(self, q, k, v, *, causal=False, causal_alignment="top_left", scale=None, window_size=(-1, -1),
                  softcap=None, sinks=None):
        self.dense.append(dict(q=q, k=k, v=v, causal=causal, causal_alignment=causal_alignment, scale=scale,
                               window_size=window_size, softcap=softcap, sinks=sinks))
        return ref.dense(q, k, v, causal=causal, causal_alignment=causal_alignment, scale=scale,
                         window_size=window_size, softcap=softcap, sinks=sinks)

    def attention_varlen(self, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, *, causal=False,
                         causal_alignment="bottom_right", softmax_scale=None, window_size=(-1, -1), softcap=None,
                         sinks=None, return_lse=False, seqused_k=None):
        self.varlen.append(dict(q=q, k=k, v=v, causal=causal, causal_alignment=causal_alignment,
                                softmax_scale=softmax_scale, window_size=window_size, softcap=softcap, sinks=sinks,
                                seqused_k=seqused_k, views=all(x._base is not None for x in (q, k, v))))
        return ref.varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal=causal,
                          causal_alignment=causal_alignment, softmax_scale=softmax_scale, window_size=window_size,
                          softcap=softcap, sinks=sinks, seqused_k=seqused_k)


@pytest.fixture
def kernels(hf, monkeypatch):
    global ref
    import transformers_reference as ref

    stand_in = Kernels()
    monkeypatch.setattr(autoflash, "attention", stand_in.attention)
    monkeypatch.setattr(autoflash, "attention_varlen", stand_in.attention_varlen, raising=False)
    return stand_in


class Layer:
    is_causal = True
    num_key_value_groups = 4


def _qkv(torch, q_len, k_len, batch=2, heads_q=8, heads_kv=2, d=16, cache=False):
    # As a model builds them: projections viewed (B, N, H, D) and transposed to (B, H, N, D); a
    # DynamicCache hands the layer torch.cat's (B, H, N, D) contiguous keys and values.
    g = torch.Generator().manual_seed(q_len * 100 + k_len)
    q = torch.randn(batch, q_len, heads_q, d, generator=g, dtype=torch.float64).transpose(1, 2)
    if cache:
        return q, *(torch.randn(batch, heads_kv, k_len, d, generator=g, dtype=torch.float64) for _ in "kv")
    return q, *(torch.randn(batch, k_len, heads_kv, d, generator=g, dtype=torch.float64).transpose(1, 2) for _ in "kv")


@pytest.mark.parametrize("q_len,k_len,causal", [(8, 8, True), (1, 9, False), (4, 12, True)],
                         ids=["prefill", "decode", "chunked-prefill"])
def test_attention_forward_passes_views_and_bottom_right_causal(torch, kernels, q_len, k_len, causal):
    q, k, v = _qkv(torch, q_len, k_len)
    out, weights = backend.attention_forward(Layer(), q, k, v, None, scaling=0.125, dropout=0.0, position_ids=None)
    (call,) = kernels.dense
    assert call["q"] is q and call["k"] is k and call["v"] is v  # the caller's views, no copies, K/V not repeated
    assert call["causal"] is causal and call["scale"] == 0.125
    assert call["causal_alignment"] == ("bottom_right" if causal else "top_left")  # top_left: not passed
    assert call["window_size"] == (-1, -1) and call["softcap"] is None and call["sinks"] is None
    assert weights is None and kernels.varlen == []
    assert out.shape == (2, q_len, 8, 16) and out.is_contiguous()
    expected = ref.dense(q, k, v, causal=causal, causal_alignment="bottom_right", scale=0.125)
    assert torch.equal(out, expected.transpose(1, 2))


def test_attention_forward_follows_the_layers_causality(torch, kernels):
    q, k, v = _qkv(torch, 8, 8)
    encoder_layer = Layer()
    encoder_layer.is_causal = False
    backend.attention_forward(encoder_layer, q, k, v, None)
    backend.attention_forward(Layer(), q, k, v, None, is_causal=False)
    assert [c["causal"] for c in kernels.dense] == [False, False]


def test_chunked_prefill_needs_causal_alignment(torch, monkeypatch):
    """With an attention() that has no causal_alignment: equal lengths and decode run, a chunk is refused."""
    calls = []

    def attention(q, k, v, *, causal=False, scale=None):
        calls.append(causal)
        return q * 2

    monkeypatch.setattr(autoflash, "attention", attention)
    backend.attention_forward(Layer(), *_qkv(torch, 8, 8), None)
    backend.attention_forward(Layer(), *_qkv(torch, 1, 9), None)
    assert calls == [True, False]
    with pytest.raises(ValueError, match="causal_alignment"):
        backend.attention_forward(Layer(), *_qkv(torch, 4, 12), None)


def test_variants_map_onto_window_softcap_and_sinks(torch, kernels):
    sinks = torch.linspace(-1, 1, 8)  # float32, as autoflash takes them (a model's own dtype is cast)
    for q_len, k_len in ((8, 8), (1, 9), (4, 12)):
        q, k, v = _qkv(torch, q_len, k_len)
        out, _ = backend.attention_forward(Layer(), q, k, v, None, scaling=0.2, sliding_window=3, softcap=30,
                                           s_aux=sinks)
        call = kernels.dense[-1]
        # transformers' sliding window W keeps keys kv > q - W: W - 1 keys left of the diagonal.
        assert call["window_size"] == (2, 0) and call["softcap"] == 30.0 and call["sinks"] is sinks
        assert call["causal"] is True and call["causal_alignment"] == "bottom_right"  # decode too: the window
        expected, _ = ref.padded(q, k, v, torch.ones(2, k_len, dtype=torch.bool), causal=True, scale=0.2,
                                 window=3, softcap=30.0, sinks=sinks)
        assert torch.allclose(out, expected, rtol=1e-12, atol=1e-12)
    backend.attention_forward(Layer(), *_qkv(torch, 8, 8), None, sliding_window=8)
    assert kernels.dense[-1]["window_size"] == (-1, -1)  # a window that holds every key is not passed


def test_variants_the_kernel_lacks_are_refused(torch, monkeypatch):
    monkeypatch.setattr(autoflash, "attention", lambda q, k, v, *, causal=False, scale=None, causal_alignment=None: q)
    for kwargs, what in ((dict(sliding_window=3), "window_size"), (dict(softcap=30.0), "softcap"),
                         (dict(s_aux=torch.zeros(8)), "sinks")):
        with pytest.raises(ValueError, match=f"no {what} argument.*sdpa"):
            backend.attention_forward(Layer(), *_qkv(torch, 8, 8), None, **kwargs)


def test_attention_forward_refusals(torch, kernels):
    q, k, v = _qkv(torch, 4, 4)
    with pytest.raises(ValueError, match="dropout"):
        backend.attention_forward(Layer(), q, k, v, None, dropout=0.1)
    with pytest.raises(ValueError, match="output_attentions"):
        backend.attention_forward(Layer(), q, k, v, None, output_attentions=True)
    with pytest.raises(ValueError, match="packed sequences"):
        backend.attention_forward(Layer(), q, k, v, None, cu_seq_lens_q=torch.zeros(2, dtype=torch.int32))
    with pytest.raises(ValueError, match="positive int"):
        backend.attention_forward(Layer(), q, k, v, None, sliding_window=0)
    encoder_layer = Layer()
    encoder_layer.is_causal = False
    with pytest.raises(ValueError, match="causal attention only"):
        backend.attention_forward(encoder_layer, *_qkv(torch, 8, 8), None, sliding_window=2)
    with pytest.raises(ValueError, match="more queries"):
        backend.attention_forward(Layer(), *_qkv(torch, 8, 4), None)
    bias = torch.zeros(2, 1, 4, 4, dtype=torch.float64)
    bias[..., 0] = -1.0  # ALiBi-like: not padding, not causality
    with pytest.raises(ValueError, match="not only padding and causality.*sdpa"):
        backend.attention_forward(Layer(), q, k, v, bias)
    with pytest.raises(ValueError, match="not only padding"):
        backend.attention_forward(Layer(), q, k, v, torch.ones(2, 5, dtype=torch.bool))  # wrong width
    assert kernels.dense == [] and kernels.varlen == []


def left_padded(torch, lengths, width):
    return torch.tensor([[slot >= width - n for slot in range(width)] for n in lengths])


@pytest.mark.parametrize("q_len,k_len,cache", [(8, 8, False), (1, 9, True), (4, 12, True)],
                         ids=["prefill", "decode", "chunked-prefill"])
def test_padding_mask_runs_as_packed_sequences(torch, kernels, q_len, k_len, cache):
    q, k, v = _qkv(torch, q_len, k_len, cache=cache)
    mask = left_padded(torch, [5, k_len], k_len)
    out, _ = backend.attention_forward(Layer(), q, k, v, mask, scaling=0.3, sliding_window=4)
    (call,) = kernels.varlen
    assert kernels.dense == [] and call["softmax_scale"] == 0.3
    # prefill: token-major views; decode: each (row, KV head) a sequence; chunk on a cache: gathered.
    assert call["views"] == (q_len != 4) and (call["seqused_k"] is not None) == (q_len != 4)
    assert call["causal"] == (q_len != 1) and call["window_size"] == ((3, 0) if q_len != 1 else (-1, -1))
    expected, meaningful = ref.padded(q, k, v, mask, causal=True, scale=0.3, window=4)
    assert out.shape == (2, q_len, 8, 16) and out.is_contiguous()
    assert torch.allclose(out[meaningful], expected[meaningful], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", ["bool", "float64"])
def test_4d_padding_and_causal_masks_run_as_packed_sequences(torch, kernels, dtype):
    q, k, v = _qkv(torch, 8, 8)
    key_valid = left_padded(torch, [5, 8], 8)
    allowed = key_valid[:, None, None, :] & torch.ones(8, 8, dtype=torch.bool).tril()
    mask = allowed if dtype == "bool" else torch.zeros(allowed.shape, dtype=torch.float64).masked_fill(
        ~allowed, torch.finfo(torch.float64).min)
    out, _ = backend.attention_forward(Layer(), q, k, v, mask)
    assert len(kernels.varlen) == 1 and kernels.varlen[0]["causal"]
    expected, meaningful = ref.padded(q, k, v, key_valid, causal=True)
    assert torch.allclose(out[meaningful], expected[meaningful], rtol=1e-12, atol=1e-12)
    full = torch.ones(2, 1, 8, 8, dtype=torch.bool)  # a 4-D mask with nothing masked: full attention
    backend.attention_forward(Layer(), q, k, v, full)
    assert kernels.dense[-1]["causal"] is False and len(kernels.varlen) == 1


def test_padding_needs_attention_varlen(torch, monkeypatch, kernels):
    monkeypatch.delattr(autoflash, "attention_varlen")
    with pytest.raises(ValueError, match="attention_varlen.*sdpa"):
        backend.attention_forward(Layer(), *_qkv(torch, 8, 8), left_padded(torch, [5, 8], 8))


def test_cpu_tensors_reach_autoflash_and_are_refused_there(hf, torch):
    with pytest.raises(ValueError, match="cpu"):
        backend.attention_forward(Layer(), *_qkv(torch, 8, 8), None)


def test_the_backend_passes_only_arguments_autoflash_has():
    """The stand-ins above take what the backend passes; the real functions must take it too."""
    varlen = getattr(autoflash, "attention_varlen", None)
    if varlen is None:
        pytest.skip("this autoflash has no attention_varlen yet")
    for name in ("causal", "causal_alignment", "softmax_scale", "window_size", "softcap", "sinks", "seqused_k"):
        assert backend._accepts(varlen, name), name
    for name in ("causal", "causal_alignment", "scale", "window_size", "softcap", "sinks"):
        assert backend._accepts(autoflash.attention, name), name
