"""Serving decode without a GPU: which operation serves which attention() call (the pure rule in
serve/routing.py), what is differentiable, and the errors attention_with_kvcache raises before
anything launches. The GPU side is tests/test_serve_decode_gpu.py."""
import sys

import numpy as np
import pytest

import autoflash
from autoflash.serve.errors import InputError
from autoflash.serve.routing import (BACKWARD_HEAD_DIMS, DECODE_MAX_QUERIES, differentiable_problem,
                                     kvcache_route, route_attention)

try:
    import torch
except ImportError:  # CI has no PyTorch: the pure-function tests still run
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")

BASE = dict(kind="torch", dtype="bf16", arch="sm_90", batch=4, heads_q=32, heads_kv=8, seq_q=1, seq_k=4096,
            head_dim=128, causal=False)


def route(**changes):
    return route_attention(**{**BASE, **changes})


@pytest.mark.parametrize("changes", [
    {},                                           # one token, GQA 32/8: the decode case
    dict(seq_q=DECODE_MAX_QUERIES),               # speculative decoding, at the limit
    dict(dtype="fp16", head_dim=64),
    dict(head_dim=256, heads_q=8, heads_kv=1),    # MQA, D 256
    dict(arch="sm_80"),
    dict(arch="sm_89"),
    dict(causal=True, seq_q=7, seq_k=7),          # top-left == bottom-right when seq_q == seq_k
    dict(causal=True, seq_q=1, seq_k=1),
    dict(causal=True, causal_alignment="bottom_right"),                     # decode's own mask: 1 token, 4096 keys
    dict(causal=True, causal_alignment="bottom_right", seq_q=16, seq_k=17),  # speculative verification
    dict(causal=True, causal_alignment="bottom_right", seq_q=5, seq_k=5),
    dict(batch=8191, heads_kv=8),                 # 65528 blocks in z: still fits
])
def test_decode_serves(changes):
    r = route(**changes)
    assert r.op == "decode", r.reason


@pytest.mark.parametrize("changes, why", [
    (dict(seq_q=DECODE_MAX_QUERIES + 1), "seq_q 17 > 16"),
    (dict(seq_q=4096), "seq_q 4096"),
    (dict(dtype="fp32"), "dtype fp32"),
    (dict(head_dim=100), "head_dim 100"),
    (dict(head_dim_v=64), "v's head dim 64 != q/k's 128"),  # (attention() took this out after routing before)
    (dict(kind="cupy"), "cupy arrays"),
    (dict(kind="jax"), "jax arrays"),
    (dict(arch="sm_75"), "arch sm_75"),
    (dict(causal=True), "top-left"),               # one query over 4096 keys: top-left sees key 0 only
    (dict(causal=True, seq_q=4, seq_k=5), "seq_q 4 != seq_k 5"),
    (dict(causal=True, causal_alignment="top_left", seq_q=4, seq_k=5), "top-left"),
    (dict(causal=True, causal_alignment="bottom_right", seq_q=5, seq_k=4), "seq_q 5 > seq_k 4"),  # rows see no key
    (dict(causal=True, causal_alignment="bottom_right", seq_q=17), "seq_q 17 > 16"),
    (dict(batch=8193, heads_kv=8), "65535"),
])
def test_forward_serves_the_rest(changes, why):
    r = route(**changes)
    assert r.op == "forward"
    assert why in r.reason


def test_every_rule_names_the_condition_it_checked():
    assert "no mask" in route().reason
    assert "top-left = bottom-right" in route(causal=True, seq_q=3, seq_k=3).reason
    assert "bottom-right causal" in route(causal=True, causal_alignment="bottom_right", seq_q=3, seq_k=30).reason


@pytest.mark.parametrize("kw, fragment", [
    (dict(dtype="fp32", head_dim=64), "no backward for dtype fp32"),
    (dict(dtype="bf16", head_dim=36), "no backward for head_dim 36"),
    (dict(dtype="fp16", head_dim=264), "no backward for head_dim 264"),
    (dict(dtype="bf16", head_dim=64, arch="sm_75"), "no backward for arch sm_75"),
    (dict(dtype="bf16", head_dim=64, kind="cupy"), "no backward for cupy arrays"),
])
def test_not_differentiable_says_what_is(kw, fragment):
    why = differentiable_problem(**{"kind": "torch", "arch": "sm_90", **kw})
    assert fragment in why
    assert "fp16 or bf16 with head_dim 8..256 step 8 on" in why and "torch.no_grad()" in why


@pytest.mark.parametrize("dtype, head_dim, arch", [("bf16", 64, "sm_90"), ("fp16", 128, "sm_80"),
                                                   ("bf16", 128, "sm_86"), ("fp16", 64, None)])
def test_differentiable(dtype, head_dim, arch):
    assert differentiable_problem(kind="torch", dtype=dtype, arch=arch, head_dim=head_dim) is None


def test_kvcache_route():
    """Decode for 1..16 tokens of a head dim it has; longer chunks and the other head dims run the forward."""
    assert kvcache_route(1, 128).op == "decode" and kvcache_route(DECODE_MAX_QUERIES, 64).op == "decode"
    assert kvcache_route(DECODE_MAX_QUERIES + 1, 128).op == "forward"
    for d in (8, 40, 80, 96, 160, 192):  # every multiple of 8 (decode pads its tile)
        assert kvcache_route(1, d).op == "decode"
    route = kvcache_route(1, 100)
    assert route.op == "forward" and "head_dim 100" in route.reason
    assert kvcache_route(1, 128, 128).op == "decode" and kvcache_route(4, 192, 128).op == "forward"
    assert "v's head dim 64" in kvcache_route(1, 128, 64).reason


def test_exported_from_the_package():
    assert autoflash.attention_with_kvcache is autoflash.serve.kvcache.attention_with_kvcache
    assert "attention_with_kvcache" in autoflash.__all__


def test_non_torch_arrays_are_refused_before_anything_runs():
    q = np.zeros((1, 1, 8, 64), dtype=np.float16)
    with pytest.raises(InputError, match="q is a ndarray; attention_with_kvcache takes PyTorch"):
        autoflash.attention_with_kvcache(q, q, q)


def test_importing_the_serving_path_needs_no_torch():
    import subprocess

    code = ("import sys, autoflash, autoflash.serve.kvcache, autoflash.serve.autograd, autoflash.serve.routing; "
            "assert 'torch' not in sys.modules and 'cupy' not in sys.modules, 'imported too early'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# ----------------------------------------------------------- with PyTorch (CPU tensors)
def t(*shape, dtype=None, **kw):
    return torch.zeros(*shape, dtype=dtype or torch.bfloat16, **kw)


@needs_torch
@pytest.mark.parametrize("seq_q", [17, 256])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_long_query_chunks_go_to_the_forward_as_views_bottom_right(monkeypatch, seq_q, with_lengths):
    """Chunked prefill: q and the caches reach the forward as (B, H, N, D) views of the caller's
    tensors (no copies), bottom-right, cache_seqlens as seqused_k; the output comes back as q's layout."""
    from autoflash.serve import kvcache

    calls = []

    def spy(name):
        def run(q, k, v, *rest, **kw):
            calls.append((name, (q, k, v), rest, kw))
            out = torch.ones(q.shape, dtype=q.dtype)
            return (out, torch.zeros(q.shape[:3])) if kw["return_lse"] else out
        return run

    monkeypatch.setattr(kvcache.api, "attention", spy("attention"))
    monkeypatch.setattr(kvcache, "attention_with_seqused_k", spy("seqused_k"))
    q, k, v = t(2, seq_q, 8, 128), t(2, 1024, 2, 128), t(2, 1024, 2, 128)
    lengths = torch.tensor([1024, 300], dtype=torch.int32) if with_lengths else None
    out, lse = autoflash.attention_with_kvcache(q, k, v, lengths, causal=True, softmax_scale=0.1, return_lse=True)
    (name, views, rest, kw), = calls
    assert name == ("seqused_k" if with_lengths else "attention")
    assert all(view._base is x and view.shape == x.transpose(1, 2).shape for view, x in zip(views, (q, k, v)))
    assert kw == dict(causal=True, causal_alignment="bottom_right", scale=0.1, return_lse=True, window_size=(-1, -1),
                      softcap=None, sinks=None, alibi_slopes=None)
    assert (rest == (lengths,)) if with_lengths else rest == ()
    assert out.shape == q.shape and lse.shape == (2, 8, seq_q)


@needs_torch
def test_an_empty_query_chunk_is_refused():
    # (longer chunks on a paged cache are served since 00c09b4: tests/test_paged_prefill.py routes them)
    kv = t(9, 16, 2, 128)
    with pytest.raises(ValueError, match="at least one query token"):
        autoflash.attention_with_kvcache(t(2, 0, 8, 128), kv, kv)


@needs_torch
def test_shape_errors_come_before_the_device():
    with pytest.raises(ValueError, match=r"\(batch, seqlen_q, heads_q, head_dim\)"):
        autoflash.attention_with_kvcache(t(1, 8, 128), t(1, 4, 1, 128), t(1, 4, 1, 128))
    # within the query limit, the decode path's own checks run next: CPU tensors are refused there
    with pytest.raises(ValueError, match="on cpu; the decode path runs on CUDA tensors"):
        autoflash.attention_with_kvcache(t(1, 1, 8, 128), t(1, 4, 1, 128), t(1, 4, 1, 128))


@needs_torch
def test_attention_refuses_cpu_tensors_that_require_grad_before_any_gpu_work():
    q = t(1, 2, 8, 64, requires_grad=True)
    with pytest.raises(ValueError, match="q is on cpu"):
        autoflash.attention(q, q, q)
