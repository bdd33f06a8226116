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


def _mask(hf, torch, q_len, cached=0, attention_mask=None, name=None):
    """create_causal_mask as LlamaModel calls it, with a DynamicCache holding `cached` tokens."""
    from transformers.masking_utils import create_causal_mask

    cfg = tiny_config(hf, name or backend.register())
    cache = hf.DynamicCache(config=cfg)
    if cached:
        kv = torch.zeros(2, cfg.num_key_value_heads, cached, cfg.head_dim)
        for layer in range(cfg.num_hidden_layers):
            cache.update(kv, kv, layer)
    return create_causal_mask(config=cfg, inputs_embeds=torch.zeros(2, q_len, cfg.hidden_size),
                              attention_mask=attention_mask, past_key_values=cache,
                              position_ids=torch.arange(cached, cached + q_len).expand(2, -1))


@pytest.mark.parametrize("q_len,cached", [(8, 0), (1, 8), (4, 8)], ids=["prefill", "decode", "chunked-prefill"])
def test_mask_is_none_for_causal_attention_over_a_dynamic_cache(hf, torch, q_len, cached):
    assert _mask(hf, torch, q_len, cached) is None
    no_padding = torch.ones(2, cached + q_len, dtype=torch.long)
    assert _mask(hf, torch, q_len, cached, attention_mask=no_padding) is None


def test_sdpa_needs_a_dense_mask_where_autoflash_needs_none(hf, torch):
    """The chunked prefill is the case the dense 4-D mask was built for (sdpa's is_causal is top-left)."""
    mask = _mask(hf, torch, 4, 8, name="sdpa")
    assert mask is not None and tuple(mask.shape) == (2, 1, 4, 12)


def test_padding_mask_is_refused(hf, torch):
    left_padded = torch.ones(2, 8, dtype=torch.long)
    left_padded[0, :3] = 0
    with pytest.raises(ValueError, match="padding"):
        _mask(hf, torch, 8, attention_mask=left_padded)
    decode_mask = torch.ones(2, 9, dtype=torch.long)
    decode_mask[1, 0] = 0
    with pytest.raises(ValueError, match="padding"):
        _mask(hf, torch, 1, 8, attention_mask=decode_mask)


def test_other_mask_patterns_are_refused(hf):
    from transformers.masking_utils import sliding_window_causal_mask_function

    with pytest.raises(ValueError, match="another mask pattern"):
        backend.causal_mask(batch_size=1, q_length=8, kv_length=8,
                            mask_function=sliding_window_causal_mask_function(4))


def test_keys_beyond_the_filled_cache_are_refused(hf):
    """A StaticCache hands the layers max_cache_len keys, most of them not written yet."""
    with pytest.raises(ValueError, match="StaticCache"):
        backend.causal_mask(batch_size=1, q_length=1, kv_length=128, q_offset=8)


def test_mask_takes_cache_position_as_transformers_4_53_to_4_57_pass_it(hf, torch):
    assert backend.causal_mask(batch_size=1, cache_position=torch.arange(8, 12), kv_length=12) is None
    with pytest.raises(ValueError, match="StaticCache"):
        backend.causal_mask(batch_size=1, cache_position=torch.arange(8, 12), kv_length=64)


class Spy:
    """Stands in for autoflash.attention() and records what it was given; returns 2 * q, so the
    test can check which tensor came back and in what layout."""

    def __init__(self, with_alignment=True):
        self.calls = []
        self.with_alignment = with_alignment

    def __call__(self, q, k, v, *, causal=False, scale=None, **options):
        self.calls.append(dict(q=q, k=k, v=v, causal=causal, scale=scale, **options))
        return q * 2

    def signature_owner(self):
        if self.with_alignment:
            def attention(q, k, v, *, causal=False, scale=None, causal_alignment=None):  # None: not passed
                options = {} if causal_alignment is None else {"causal_alignment": causal_alignment}
                return self(q, k, v, causal=causal, scale=scale, **options)
        else:
            def attention(q, k, v, *, causal=False, scale=None):
                return self(q, k, v, causal=causal, scale=scale)
        return attention


@pytest.fixture
def spy(monkeypatch):
    def install(with_alignment=True):
        s = Spy(with_alignment)
        monkeypatch.setattr(autoflash, "attention", s.signature_owner())
        backend._has_causal_alignment.cache_clear()
        return s

    yield install
    backend._has_causal_alignment.cache_clear()


class Layer:
    is_causal = True
    num_key_value_groups = 4


def _qkv(torch, q_len, k_len, batch=2, heads_q=8, heads_kv=2, d=16):
    # As a model builds them: projections viewed (B, N, H, D) and transposed to (B, H, N, D).
    q = torch.randn(batch, q_len, heads_q, d).transpose(1, 2)
    k = torch.randn(batch, k_len, heads_kv, d).transpose(1, 2)
    return q, k, torch.randn(batch, k_len, heads_kv, d).transpose(1, 2)


@pytest.mark.parametrize("q_len,k_len,causal", [(8, 8, True), (1, 9, False), (4, 12, True)],
                         ids=["prefill", "decode", "chunked-prefill"])
def test_attention_forward_passes_views_and_bottom_right_causal(hf, torch, spy, q_len, k_len, causal):
    s = spy()
    q, k, v = _qkv(torch, q_len, k_len)
    out, weights = backend.attention_forward(Layer(), q, k, v, None, scaling=0.125, dropout=0.0, position_ids=None)
    (call,) = s.calls
    assert call["q"] is q and call["k"] is k and call["v"] is v  # the caller's views, no copies, K/V not repeated
    assert call["causal"] is causal and call["scale"] == 0.125
    assert call.get("causal_alignment") == ("bottom_right" if causal else None)
    assert weights is None
    assert out.shape == (2, q_len, 8, 16) and out.is_contiguous()
    assert torch.equal(out, (q * 2).transpose(1, 2))


def test_attention_forward_follows_the_layers_causality(hf, torch, spy):
    s = spy()
    q, k, v = _qkv(torch, 8, 8)
    encoder_layer = Layer()
    encoder_layer.is_causal = False
    backend.attention_forward(encoder_layer, q, k, v, None)
    backend.attention_forward(Layer(), q, k, v, None, is_causal=False)
    assert [c["causal"] for c in s.calls] == [False, False]


def test_chunked_prefill_needs_causal_alignment(hf, torch, spy):
    """Before attention() has causal_alignment: equal lengths and decode run, a chunk is refused."""
    s = spy(with_alignment=False)
    backend.attention_forward(Layer(), *_qkv(torch, 8, 8), None)
    backend.attention_forward(Layer(), *_qkv(torch, 1, 9), None)
    assert [c["causal"] for c in s.calls] == [True, False]
    with pytest.raises(ValueError, match="causal_alignment"):
        backend.attention_forward(Layer(), *_qkv(torch, 4, 12), None)


def test_attention_forward_refusals(hf, torch, spy):
    s = spy()
    q, k, v = _qkv(torch, 4, 4)
    with pytest.raises(ValueError, match="mask"):
        backend.attention_forward(Layer(), q, k, v, torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match="dropout"):
        backend.attention_forward(Layer(), q, k, v, None, dropout=0.1)
    with pytest.raises(ValueError, match="output_attentions"):
        backend.attention_forward(Layer(), q, k, v, None, output_attentions=True)
    with pytest.raises(ValueError, match="sliding-window"):
        backend.attention_forward(Layer(), q, k, v, None, sliding_window=2)
    with pytest.raises(ValueError, match="more queries"):
        backend.attention_forward(Layer(), *_qkv(torch, 8, 4), None)
    assert s.calls == []


def test_cpu_tensors_reach_autoflash_and_are_refused_there(hf, torch):
    backend._has_causal_alignment.cache_clear()
    with pytest.raises(ValueError, match="cpu"):
        backend.attention_forward(Layer(), *_qkv(torch, 8, 8), None)
