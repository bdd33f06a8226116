"""The transformers backend in a model (issue 15 items 6-7): a tiny Llama built here from a
LlamaConfig (random weights from a fixed seed, no download), bf16 on CUDA, run with autoflash's
attention implementation and with "sdpa": prefill logits, 32 teacher-forced decode steps over a
DynamicCache, and a chunked prefill (64 tokens, then 32 more against the cache).

"Within bf16 noise": the same model in float32 with sdpa is the reference; sdpa in bf16 is off it by
some relative error `noise` (rounding in every bf16 matmul, not only in attention). autoflash's
logits must be within NOISE_FACTOR * noise + FLOOR of sdpa's and of the float32 reference, step by
step. A spy on autoflash.attention() checks that autoflash served every layer with the intended
mask (so the test cannot pass on another implementation by accident).

Padded batches (issue 15 item 6, integrations/padding.py): a left-padded batch of 3 prompts of
different lengths, prefill + 16 teacher-forced decode steps + an 8-token chunk, in tiny Llama,
Mistral (sliding window), Gemma2 (softcap + sliding window) and gpt-oss (sinks + sliding window)
models (tests/transformers_models.py), against sdpa (eager where sdpa lacks the feature) in bf16
with the same implementation in float32 as the reference, at the tokens that mean something."""
import copy
import functools

import pytest

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch", reason="the transformers backend's GPU tests need PyTorch")
transformers = pytest.importorskip("transformers", reason="the transformers backend's GPU tests need transformers")

import autoflash  # noqa: E402
import autoflash.integrations.transformers as backend  # noqa: E402

LAYERS, PROMPT, STEPS = 4, 64, 32
NOISE_FACTOR = 3.0
FLOOR = 1e-3  # bf16's own rounding of the logits is ~1e-3 relative: a noise estimate below it is luck


@pytest.fixture(scope="module")
def models():
    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    name = backend.register()
    cfg = transformers.LlamaConfig(hidden_size=256, intermediate_size=512, num_hidden_layers=LAYERS,
                                   num_attention_heads=8, num_key_value_heads=2, head_dim=64, vocab_size=1000,
                                   max_position_embeddings=256)
    torch.manual_seed(0)
    # Each model its own config: from_config records the implementation in the config it is given.
    sdpa = transformers.AutoModelForCausalLM.from_config(copy.deepcopy(cfg), attn_implementation="sdpa")
    ours = transformers.AutoModelForCausalLM.from_config(copy.deepcopy(cfg), attn_implementation=name)
    ours.load_state_dict(sdpa.state_dict())
    sdpa, ours = (m.to("cuda", torch.bfloat16).eval() for m in (sdpa, ours))
    reference = copy.deepcopy(sdpa).float()  # the same bf16-rounded weights, computed in float32
    assert (ours.config._attn_implementation, sdpa.config._attn_implementation,
            reference.config._attn_implementation) == (name, "sdpa", "sdpa")
    ids = torch.randint(0, cfg.vocab_size, (2, PROMPT + STEPS), generator=torch.Generator().manual_seed(1)).cuda()
    return dict(ours=ours, sdpa=sdpa, reference=reference, ids=ids, cfg=cfg)


@pytest.fixture
def calls(monkeypatch):
    """What each call of autoflash.attention() was asked (seq_q, seq_k, causal, alignment); the real
    function runs. functools.wraps keeps its signature, which the backend inspects."""
    seen = []
    real = autoflash.attention

    @functools.wraps(real)
    def spy(q, k, v, **kwargs):
        seen.append((q.shape[2], k.shape[2], kwargs.get("causal"), kwargs.get("causal_alignment")))
        return real(q, k, v, **kwargs)

    monkeypatch.setattr(autoflash, "attention", spy)
    return seen


def rel(x, ref):
    x, ref = x.float(), ref.float()
    return ((x - ref).norm() / ref.norm()).item()


def check_logits(ours, sdpa, reference, what):
    noise = rel(sdpa, reference)
    bound = NOISE_FACTOR * noise + FLOOR
    err_sdpa, err_ref = rel(ours, sdpa), rel(ours, reference)
    print(f"{what}: theirs bf16 vs fp32 {noise:.2e}; ours vs theirs {err_sdpa:.2e}, vs fp32 {err_ref:.2e} "
          f"(bound {bound:.2e})")
    assert torch.isfinite(ours).all(), what
    assert err_sdpa <= bound and err_ref <= bound, what


def run(model, ids, cache=None):
    return model(ids, past_key_values=cache, use_cache=cache is not None).logits


def new_cache(m):
    return transformers.DynamicCache(config=m["cfg"])


@torch.no_grad()
def test_prefill_logits(models, calls):
    ids = models["ids"][:, :PROMPT]
    logits = {k: run(models[k], ids) for k in ("ours", "sdpa", "reference")}
    check_logits(logits["ours"], logits["sdpa"], logits["reference"], "prefill")
    assert calls == [(PROMPT, PROMPT, True, "bottom_right")] * LAYERS


@torch.no_grad()
def test_teacher_forced_decode_over_a_dynamic_cache(models, calls):
    ids = models["ids"]
    caches = {k: new_cache(models) for k in ("ours", "sdpa", "reference")}
    for k, cache in caches.items():
        run(models[k], ids[:, :PROMPT], cache)
    calls.clear()
    for step in range(PROMPT, PROMPT + STEPS):
        logits = {k: run(models[k], ids[:, step:step + 1], caches[k]) for k in caches}
        check_logits(logits["ours"], logits["sdpa"], logits["reference"], f"decode step {step - PROMPT}")
    # One query token is the newest position: it sees every cached key, so no mask.
    assert calls == [(1, n + 1, False, None) for n in range(PROMPT, PROMPT + STEPS) for _ in range(LAYERS)]
    assert caches["ours"].get_seq_length() == PROMPT + STEPS


@torch.no_grad()
def test_chunked_prefill_against_the_cache(models, calls):
    ids = models["ids"]
    caches = {k: new_cache(models) for k in ("ours", "sdpa", "reference")}
    for k, cache in caches.items():
        run(models[k], ids[:, :PROMPT], cache)
    calls.clear()
    logits = {k: run(models[k], ids[:, PROMPT:], caches[k]) for k in caches}
    check_logits(logits["ours"], logits["sdpa"], logits["reference"], f"chunk of {STEPS} on {PROMPT} cached")
    assert calls == [(STEPS, PROMPT + STEPS, True, "bottom_right")] * LAYERS


PADDED_SHAPE = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=8,
                    num_key_value_heads=2, head_dim=64, vocab_size=1000, max_position_embeddings=512)
PADDED_PROMPTS, PADDED_WINDOW, PADDED_STEPS, PADDED_CHUNK = (20, 37, 64), 16, 16, 8


@pytest.fixture
def varlen_calls(monkeypatch):
    """How many times autoflash.attention_varlen ran (the real function runs)."""
    seen = []
    real = autoflash.attention_varlen

    @functools.wraps(real)
    def spy(*args, **kwargs):
        seen.append(kwargs.get("causal"))
        return real(*args, **kwargs)

    monkeypatch.setattr(autoflash, "attention_varlen", spy)
    return seen


@pytest.mark.parametrize("model", ["llama", "mistral-window", "gemma2-softcap-window", "gpt-oss-sinks-window"])
@torch.no_grad()
def test_left_padded_batch_of_three_prompts(model, varlen_calls):
    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    import transformers_models as tm

    config, reference, extra = tm.tiny_models(PADDED_SHAPE, PADDED_WINDOW)[model]
    ours, theirs, exact = tm.build(config, [backend.register(), reference, reference], extra, torch.bfloat16, "cuda")
    exact.float()
    ids, mask, more = tm.padded_batch(config.vocab_size, PADDED_STEPS, PADDED_CHUNK, "cuda", lengths=PADDED_PROMPTS)
    runs = [tm.teacher_forced(m, ids, mask, more, PADDED_STEPS, PADDED_CHUNK) for m in (ours, theirs, exact)]
    for (what, a), (_, b), (_, c) in zip(*runs):
        check_logits(a, b, c, f"{model} {what}")
    assert len(varlen_calls) >= config.num_hidden_layers  # the padded prefill at least went through varlen
