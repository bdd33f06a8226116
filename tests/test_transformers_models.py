"""The transformers backend inside real model code, on the CPU: tiny Llama, Mistral (sliding
window), Gemma2 (soft-capping, sliding window) and gpt-oss (attention sinks, sliding window) built
from configs, run on a left-padded batch of 3 prompts (prefill, 16 teacher-forced decode
steps, a 3-token chunk over the DynamicCache) with autoflash's implementation and with transformers'
sdpa (float64) or eager (float32); the kernels are replaced by pure-torch references with flash-attn's semantics
(tests/transformers_reference.py), so what is tested is everything autoflash decides: the mask
function, the padding plans, the index maths, the variant arguments. The same runs on the GPU with
the real kernels are tests/test_transformers_gpu.py. Skipped without torch or transformers."""
import pytest

torch = pytest.importorskip("torch", reason="the transformers backend's model tests need PyTorch")
pytest.importorskip("transformers", reason="the transformers backend's model tests need transformers")

import autoflash  # noqa: E402
import autoflash.integrations.transformers as backend  # noqa: E402
import transformers_models as tm  # noqa: E402
import transformers_reference as ref  # noqa: E402

STEPS, CHUNK = 16, 3


@pytest.fixture
def calls(monkeypatch):
    """The references stand in for the kernels; each call is recorded (which entry point, causal,
    window, whether q/k/v were views of the model's tensors)."""
    seen = []

    def attention(q, k, v, *, causal=False, causal_alignment="top_left", scale=None, window_size=(-1, -1),
                  softcap=None, sinks=None):
        seen.append(("dense", q.shape[2], causal, window_size, softcap is not None, sinks is not None))
        return ref.dense(q, k, v, causal=causal, causal_alignment=causal_alignment, scale=scale,
                         window_size=window_size, softcap=softcap, sinks=sinks)

    def attention_varlen(q, k, v, cu_q, cu_k, max_q, max_k, *, causal=False, causal_alignment="bottom_right",
                         softmax_scale=None, window_size=(-1, -1), softcap=None, sinks=None, return_lse=False,
                         seqused_k=None):
        views = all(x._base is not None for x in (q, k, v))
        seen.append(("varlen", views, causal, window_size, softcap is not None, sinks is not None))
        return ref.varlen(q, k, v, cu_q, cu_k, max_q, max_k, causal=causal, causal_alignment=causal_alignment,
                          softmax_scale=softmax_scale, window_size=window_size, softcap=softcap, sinks=sinks,
                          seqused_k=seqused_k)

    monkeypatch.setattr(autoflash, "attention", attention)
    monkeypatch.setattr(autoflash, "attention_varlen", attention_varlen, raising=False)
    return seen


@pytest.mark.parametrize("model", list(tm.tiny_models()))
def test_left_padded_batch_matches_transformers(model, calls):
    config, reference, extra = tm.tiny_models()[model]
    # eager in float64 turns its finfo.min mask into NaN on padding rows: float32 there
    dtype, tol = (torch.float64, 1e-9) if reference == "sdpa" else (torch.float32, 1e-4)
    ours, theirs = tm.build(config, [backend.register(), reference], extra, dtype, "cpu")
    ids, mask, more = tm.padded_batch(config.vocab_size, STEPS, CHUNK, "cpu")
    got = tm.teacher_forced(ours, ids, mask, more, STEPS, CHUNK)
    want = tm.teacher_forced(theirs, ids, mask, more, STEPS, CHUNK)
    for (what, a), (_, b) in zip(got, want):
        assert torch.isfinite(b).all(), what
        assert torch.allclose(a, b, rtol=tol, atol=tol), (what, (a - b).abs().max().item())
    # The padded prefill goes through attention_varlen in every layer; Llama's decode steps too,
    # each (row, KV head) a sequence over the cache, without copies. (A sliding-window layer whose
    # cache no longer holds padding runs dense: its mask has none.)
    layers = config.num_hidden_layers
    assert len(calls) == layers * (STEPS + 2)
    assert [c[0] for c in calls[:layers]] == ["varlen"] * layers
    if model == "llama":
        assert calls[layers:layers * (STEPS + 1)] == [("varlen", True, False, (-1, -1), False, False)] * layers * STEPS
    windows = {c[3] for c in calls}
    assert windows == ({(-1, -1)} if model == "llama" else {(-1, -1), (3, 0)})
    assert any(c[4] for c in calls) == (model == "gemma2-softcap-window")
    assert any(c[5] for c in calls) == (model == "gpt-oss-sinks-window")


def test_prefill_without_a_cache_reads_the_projections_in_place(calls):
    config, reference, extra = tm.tiny_models()["mistral-window"]
    ours, theirs = tm.build(config, [backend.register(), reference], extra, torch.float64, "cpu")
    ids, mask, _ = tm.padded_batch(config.vocab_size, 0, 0, "cpu")
    with torch.no_grad():
        got = ours(input_ids=ids, attention_mask=mask, use_cache=False).logits
        want = theirs(input_ids=ids, attention_mask=mask, use_cache=False).logits
    real = mask.bool()
    assert torch.allclose(got[real], want[real], rtol=1e-9, atol=1e-9)
    assert calls == [("varlen", True, True, (3, 0), False, False)] * config.num_hidden_layers


def test_unpadded_batch_takes_the_dense_path(calls):
    config, reference, extra = tm.tiny_models()["llama"]
    ours, theirs = tm.build(config, [backend.register(), reference], extra, torch.float64, "cpu")
    ids, mask, more = tm.padded_batch(config.vocab_size, 4, CHUNK, "cpu", lengths=(7, 7, 7))
    got = tm.teacher_forced(ours, ids, mask, more, 4, CHUNK)
    want = tm.teacher_forced(theirs, ids, mask, more, 4, CHUNK)
    for (what, a), (_, b) in zip(got, want):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-9), what
    assert {c[0] for c in calls} == {"dense"}


def test_generate_with_left_padding_matches_sdpa(calls):
    """generate() builds the padding mask, positions and cache itself: the same greedy tokens."""
    config, reference, extra = tm.tiny_models()["mistral-window"]
    ours, theirs = tm.build(config, [backend.register(), reference], extra, torch.float64, "cpu")
    ids, mask, _ = tm.padded_batch(config.vocab_size, 0, 0, "cpu")
    kwargs = dict(attention_mask=mask, max_new_tokens=8, do_sample=False, pad_token_id=0)
    got, want = ours.generate(ids, **kwargs), theirs.generate(ids, **kwargs)
    assert got.shape == (3, ids.shape[1] + 8) and torch.equal(got, want)
    assert {c[0] for c in calls} == {"varlen", "dense"}
