"""A padded batch as packed variable-length sequences (autoflash/integrations/padding.py), on the CPU.

Every plan (tokens, heads, gather) is run through a pure-torch attention_varlen with flash-attn's
semantics (tests/transformers_reference.py, which also checks the cu_seqlens a strict kernel would)
and compared, at every meaningful query row, with attention under the explicit padded mask. Needs
PyTorch only (skipped with the reason without it)."""
import pytest

torch = pytest.importorskip("torch", reason="the padding plans' tests need PyTorch")

from autoflash.integrations import padding  # noqa: E402
import transformers_reference as ref  # noqa: E402

HQ, HKV, D = 4, 2, 8


def masks(n_k):
    """(name, key_valid (3, n_k)) for the padding patterns a batch can have."""
    def rows(*valid):
        return torch.tensor([[slot in v for slot in range(n_k)] for v in valid])

    every = range(n_k)
    return {
        "left": rows(range(n_k - 5, n_k), every, range(n_k - 9, n_k)),
        "right": rows(range(5), every, range(n_k - 2)),
        "holes": rows([0, 1, 4, 5] + list(range(7, n_k)), every, range(2, n_k)),
        "empty-row": rows(range(n_k - 4, n_k), (), every),
    }


def qkv(n_q, n_k, layout, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(3, n_q, HQ, D, generator=g, dtype=torch.float64).transpose(1, 2)  # as a model builds q
    if layout == "tokens":  # fresh projections: (B, N, H, D) in memory
        k, v = (torch.randn(3, n_k, HKV, D, generator=g, dtype=torch.float64).transpose(1, 2) for _ in "kv")
    else:  # a DynamicCache's torch.cat: (B, H, N, D) contiguous
        k, v = (torch.randn(3, HKV, n_k, D, generator=g, dtype=torch.float64) for _ in "kv")
    return q, k, v


def run(call):
    out = ref.varlen(call.q, call.k, call.v, call.cu_seqlens_q, call.cu_seqlens_k, call.max_seqlen_q,
                     call.max_seqlen_k, causal=call.causal, softmax_scale=0.3,
                     window_size=(-1, -1) if call.window is None else (call.window - 1, 0),
                     seqused_k=call.seqused_k, sinks=SINKS.get("on"))
    return call.unpack(out)


SINKS = {}


@pytest.fixture(params=[False, True], ids=["no-sinks", "sinks"])
def sinks(request):
    SINKS.clear()
    if request.param:
        SINKS["on"] = torch.linspace(-1, 2, HQ, dtype=torch.float64)
    yield request.param
    SINKS.clear()


def shares_memory(a, b):
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


@pytest.mark.parametrize("pattern", ["left", "right", "holes", "empty-row"])
@pytest.mark.parametrize("n_q,layout", [(12, "tokens"), (12, "heads"), (1, "heads"), (1, "tokens"), (3, "heads")],
                         ids=["prefill", "prefill-cache", "decode", "decode-fresh", "chunk"])
@pytest.mark.parametrize("causal,window", [(True, None), (True, 3), (False, None)],
                         ids=["causal", "causal-window3", "full"])  # windows come with causal layers only
@pytest.mark.parametrize("with_seqused", [True, False], ids=["seqused", "no-seqused"])
def test_plans_match_attention_under_the_padded_mask(pattern, n_q, layout, causal, window, with_seqused, sinks):
    n_k = 12
    key_valid = masks(n_k)[pattern]
    q, k, v = qkv(n_q, n_k, layout)
    memo = padding.Memo()
    if window is not None and pattern == "holes":
        with pytest.raises(ValueError, match="holes"):
            padding.plan_call(key_valid, q, k, v, causal=causal, window=window, sinks=sinks, memo=memo,
                              with_seqused=with_seqused)
        return
    call = padding.plan_call(key_valid, q, k, v, causal=causal, window=window, sinks=sinks, memo=memo,
                             with_seqused=with_seqused)
    got = run(call)
    want, meaningful = ref.padded(q, k, v, key_valid, causal=causal, scale=0.3, window=window, softcap=None,
                                  sinks=SINKS.get("on"))
    assert got.shape == (3, n_q, HQ, D)
    assert torch.allclose(got[meaningful], want[meaningful], rtol=1e-12, atol=1e-12)
    if with_seqused and pattern != "holes" and layout == "tokens":
        assert not got[~meaningful].any()  # gaps see no key: padding rows give 0

    # Which plan served it, and whether it copied q, k, v.
    copied = not all(shares_memory(a, b) for a, b in ((call.q, q), (call.k, k), (call.v, v)))
    if pattern == "holes":
        expected = "gather"
    elif layout == "tokens":
        expected = "tokens"
    elif n_q == 1 and not sinks:
        expected = "heads"
    else:
        expected = "gather"
    assert copied == (expected == "gather")
    assert (call.q.shape[1] == 1 and HQ > 1) == (expected == "heads")


def test_runs_read_once_per_mask_and_plans_are_reused():
    key_valid = masks(12)["left"]
    q, k, v = qkv(12, 12, "tokens")
    memo = padding.Memo()
    first = padding.plan_call(key_valid, q, k, v, causal=True, window=None, sinks=False, memo=memo, with_seqused=True)
    again = padding.plan_call(key_valid, q, k, v, causal=True, window=None, sinks=False, memo=memo, with_seqused=True)
    assert again.cu_seqlens_q is first.cu_seqlens_q  # the same plan for every layer
    key_valid[0, 0] = True  # changed in place: the mask's version moves on, the plan is rebuilt
    changed = padding.plan_call(key_valid, q, k, v, causal=True, window=None, sinks=False, memo=memo,
                                with_seqused=True)
    assert changed.cu_seqlens_q is not first.cu_seqlens_q


def test_memo_keeps_a_few_masks():
    memo = padding.Memo(size=2)
    a, b = torch.ones(2, 3, dtype=torch.bool), torch.ones(2, 3, dtype=torch.bool)
    built = []
    for mask in (a, b, a, b):
        memo.get(mask, "x", lambda: built.append(1))
    assert len(built) == 2  # full and sliding layers alternating do not evict each other


def test_read_runs():
    runs = padding.read_runs(masks(12)["holes"])
    assert runs.starts == (0, 0, 2) and runs.ends == (12, 12, 12) and runs.counts == (9, 12, 10)
    assert not runs.single
    runs = padding.read_runs(masks(12)["empty-row"])
    assert runs.starts == (8, 12, 0) and runs.ends == (12, 12, 12) and runs.counts == (4, 0, 12)
    assert runs.single


def test_layout_views():
    q, k, _ = qkv(5, 7, "heads")
    assert padding.token_major(q).shape == (15, HQ, D) and shares_memory(padding.token_major(q), q)
    assert padding.token_major(k) is None  # (B, H, N, D) in memory: no token-major view
    assert padding.head_major(k).shape == (3 * HKV * 7, 1, D)
    assert padding.head_major(q) is None


def sdpa_style_mask(key_valid, n_q, causal, dtype=torch.bool, heads=1):
    """A 4-D mask as transformers' sdpa/eager paths build it: padding and (bottom-right) causality."""
    n_k = key_valid.shape[1]
    slots = torch.arange(n_k)
    allowed = key_valid[:, None, None, :].expand(-1, heads, n_q, -1).clone()
    if causal:
        allowed &= slots[None, None, None, :] <= slots[n_k - n_q:, None]
    if dtype == torch.bool:
        return allowed
    return torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)


@pytest.mark.parametrize("dtype", [torch.bool, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("n_q", [12, 1, 4])
def test_4d_masks_of_padding_and_causality_are_recognised(dtype, causal, n_q):
    key_valid = masks(12)["left"]
    found = padding.key_valid_from_4d(sdpa_style_mask(key_valid, n_q, causal, dtype), n_q, 12)
    assert found is not None
    assert torch.equal(found[0], key_valid) and found[1] == (causal or n_q == 1)


def test_4d_masks_that_are_something_else_are_not():
    key_valid = masks(12)["left"]
    bias = sdpa_style_mask(key_valid, 12, True, torch.float32)
    bias[0, 0, -1, -1] = -0.5  # a bias, not a mask
    assert padding.key_valid_from_4d(bias, 12, 12) is None
    per_head = sdpa_style_mask(key_valid, 12, True, heads=2)
    per_head[1, 1, -1, 3] = False
    assert padding.key_valid_from_4d(per_head, 12, 12) is None
    window = sdpa_style_mask(key_valid, 12, True)
    window[:, :, 11, :8] = False  # a sliding window is not padding
    assert padding.key_valid_from_4d(window, 12, 12) is None
    assert padding.key_valid_from_4d(sdpa_style_mask(key_valid, 12, True), 12, 13) is None  # wrong size


def test_4d_padding_query_rows_are_not_compared():
    """Rows of padding queries (fully masked, or unmasked by transformers' NaN guard) mean nothing."""
    key_valid = masks(12)["left"]
    mask = sdpa_style_mask(key_valid, 12, True)
    mask[0, 0, :7] = True  # row 0's first 7 slots are padding
    found = padding.key_valid_from_4d(mask, 12, 12)
    assert found is not None and torch.equal(found[0], key_valid) and found[1]
