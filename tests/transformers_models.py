"""Tiny Hugging Face models built from configs (random weights from a seed, no download) and a
teacher-forced run of a left-padded batch, shared by the transformers backend's CPU model tests
(kernels replaced by pure-torch references) and its GPU tests (the real kernels)."""
import copy

import torch
import transformers

SHAPE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, head_dim=16, vocab_size=100)
PROMPTS = (5, 9, 12)  # three prompts of different lengths, left-padded to 12 as generate() pads them


def tiny_models(shape=SHAPE, window=4):
    """name -> (config, the implementation to compare with, from_config kwargs). The window is
    shorter than the prompts, so sliding-window layers and caches are exercised."""
    return {
        "llama": (transformers.LlamaConfig(**shape), "sdpa", {}),
        "mistral-window": (transformers.MistralConfig(**shape, sliding_window=window), "sdpa", {}),
        # eager: sdpa has no soft-capping, and gpt-oss has no sdpa path
        "gemma2-softcap-window": (transformers.Gemma2Config(**shape, sliding_window=window, query_pre_attn_scalar=16,
                                                            attn_logit_softcapping=50.0,
                                                            final_logit_softcapping=30.0), "eager", {}),
        "gpt-oss-sinks-window": (transformers.GptOssConfig(**dict(shape, intermediate_size=64), sliding_window=window,
                                                           num_local_experts=4, num_experts_per_tok=2), "eager",
                                 {"experts_implementation": "eager"}),
    }


def build(config, implementations, extra, dtype, device, seed=0):
    """One model per implementation, all with the same weights."""
    torch.manual_seed(seed)
    models = []
    for name in implementations:
        model = transformers.AutoModelForCausalLM.from_config(copy.deepcopy(config), attn_implementation=name, **extra)
        if models:
            model.load_state_dict(models[0].state_dict())
        if hasattr(model, "sinks") or any(hasattr(m, "sinks") for m in model.modules()):
            for m in model.modules():  # gpt-oss initialises its sinks with torch.empty: give them values
                if hasattr(m, "sinks"):
                    m.sinks.data = torch.linspace(-1.0, 1.5, m.sinks.numel())
        models.append(model.to(device, dtype).eval())
    return models


def padded_batch(vocab, steps, chunk, device, lengths=PROMPTS, seed=1):
    """Left-padded prompt ids and mask (B, max(lengths)), and the continuation (B, steps + chunk)."""
    g = torch.Generator().manual_seed(seed)
    width = max(lengths)
    mask = torch.tensor([[slot >= width - n for slot in range(width)] for n in lengths], dtype=torch.long)
    ids = torch.randint(1, vocab, (len(lengths), width), generator=g) * mask  # pad id 0
    more = torch.randint(1, vocab, (len(lengths), steps + chunk), generator=g)
    return ids.to(device), mask.to(device), more.to(device)


@torch.no_grad()
def teacher_forced(model, ids, mask, more, steps, chunk):
    """Prefill the padded prompts, then `steps` one-token decode steps and one chunk of `chunk`
    tokens over the model's DynamicCache, feeding `more` (teacher forcing). Returns the logits that
    mean something: the prefill's at the real tokens, then each step's, then the chunk's."""
    position = (mask.cumsum(-1) - 1).clamp_min(0)
    out = model(input_ids=ids, attention_mask=mask, position_ids=position, use_cache=True)
    cache, logits = out.past_key_values, [("prefill", out.logits[mask.bool()])]
    for step in range(steps + 1):
        n = 1 if step < steps else chunk
        new = more[:, step:step + n]
        mask = torch.cat([mask, torch.ones_like(new)], dim=1)
        position = position[:, -1:] + torch.arange(1, n + 1, device=ids.device)
        out = model(input_ids=new, attention_mask=mask, position_ids=position, past_key_values=cache, use_cache=True)
        logits.append((f"decode {step}" if step < steps else f"chunk of {n}", out.logits))
    return logits
