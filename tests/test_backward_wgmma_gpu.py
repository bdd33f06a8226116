"""flash_bwd_wgmma on an H100/H200: gradients against float64 autograd (tests/test_backward_gpu's
reference and tolerances, ops.backward_kernels.TOLERANCE), odd lengths, Nq != Nk, GQA/MQA, causal
in both alignments, D 64/128, bf16 and fp16, every dQ schedule (ops/backward_wgmma.DQ_OWN_KEYS,
DQ_BULK_REDUCE), the producer warpgroup (warp specialisation; D 64: 64-query tiles whose dQ one
warpgroup computes) and its pipelined schedule (stages 3); the deterministic mode
(bitwise repeatable, with and without the producer, pipelined); NaN-free;
rows that see no key get dq = 0; attention_backward() serves it on sm_90 GPUs."""
import math

import pytest

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")

from autoflash.ops.backward import TOLERANCE  # noqa: E402
from test_backward_gpu import DTYPES, _log, float64_forward, grad_errors, inputs, reference_grads, rel_err  # noqa: E402


@pytest.fixture(params=[(False, False), (True, False), (False, True)], ids=["dq_split", "dq_own_keys", "dq_bulk"])
def dq_schedule(request, monkeypatch):
    """Every dQ schedule (DQ_OWN_KEYS, DQ_BULK_REDUCE); the served kernels are reloaded (their cache
    keys on the config alone)."""
    from autoflash.ops import backward_wgmma
    from autoflash.serve import autograd

    monkeypatch.setattr(backward_wgmma, "DQ_OWN_KEYS", request.param[0])
    monkeypatch.setattr(backward_wgmma, "DQ_BULK_REDUCE", request.param[1])
    autograd._loaded.cache_clear()
    yield request.param
    autograd._loaded.cache_clear()


def wgmma_config(dtype, head_dim, causal, producer=None, deterministic=False, stages=None):
    from autoflash.kernels.device import device_arch
    from autoflash.kernels.archs import build_arch
    from autoflash.ops.backward_wgmma import TEMPLATE

    arch = build_arch(TEMPLATE.archs, device_arch(0)[0])
    if arch is None:
        pytest.skip(f"flash_bwd_wgmma needs sm_90a, this GPU is {device_arch(0)[0]}")
    key = dict(dtype=dtype, head_dim=head_dim, causal=causal, deterministic=deterministic, window=False,
               softcap=False, sinks=False, alibi=False)
    cfg = TEMPLATE.default(arch, key)
    if producer is not None:  # the default's tiles with (True) or without (False) a producer warpgroup, stages 2
        # unless given (3: the pipelined schedule)
        # (D 64 with a producer: 64-query tiles, its dQ on one warpgroup, 128 spill; without: 128-query tiles)
        cfgs = [TEMPLATE.config(arch, key, block_m=bm, block_n=cfg.block_n, warps=4 * (TEMPLATE.consumers(cfg) + producer),
                                stages=stages or 2, warps_q=cfg.warps_q) for bm in (cfg.block_m, 64, 128)]
        cfg = next((c for c in cfgs if not c.problems()), cfgs[0])
        assert cfg.problems() == [], cfg.problems()
    return cfg


CASES = [  # batch, heads_q, heads_kv, seq_q, seq_k, head_dim, causal alignment (None: not causal)
    (1, 2, 2, 1, 1, 64, None),
    (2, 2, 2, 17, 17, 64, "top_left"),
    (1, 4, 2, 1000, 1000, 128, "top_left"),      # GQA
    (1, 4, 1, 333, 1000, 64, None),              # MQA, Nq < Nk
    (1, 2, 2, 1000, 17, 128, "top_left"),        # Nq > Nk: rows past Nk see every key
    (1, 4, 4, 17, 4097, 128, "top_left"),        # one query tile, many K/V tiles, most keys unseen
    (1, 2, 1, 4097, 4097, 64, "top_left"),
    (1, 2, 2, 4097, 1000, 128, None),
    (1, 2, 2, 1000, 17, 128, "bottom_right"),    # the first 983 rows see no key: dq = 0 there
    (2, 4, 2, 77, 300, 64, "bottom_right"),
    (1, 2, 1, 333, 1000, 128, "bottom_right"),
    (1, 2, 2, 512, 512, 128, None),              # whole tiles only (no masked tile)
]


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}_h{}x{}_q{}_k{}_d{}_{}".format(*c))
def test_wgmma_gradients_match_float64_autograd(case, dtype, dq_schedule):
    _check_gradients(case, dtype, wgmma_config(dtype, case[5], case[6] is not None, producer=False),
                     f"own_keys, bulk={dq_schedule}")


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}_h{}x{}_q{}_k{}_d{}_{}".format(*c))
def test_producer_warpgroup_gradients_match_float64_autograd(case, dtype):
    _check_gradients(case, dtype, wgmma_config(dtype, case[5], case[6] is not None, producer=True), "producer")


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}_h{}x{}_q{}_k{}_d{}_{}".format(*c))
def test_pipelined_gradients_match_float64_autograd(case, dtype):
    """stages 3: the producer tiles with each tile's dQ wgmma deferred to the next iteration (and one
    iteration past the last tile, whose products are zeroed)."""
    _check_gradients(case, dtype, wgmma_config(dtype, case[5], case[6] is not None, producer=True, stages=3),
                     "pipelined")


DETERMINISTIC_CASES = [CASES[2], CASES[3], CASES[7], CASES[9], CASES[10]]


@pytest.mark.parametrize("case,schedule", [(c, p) for c in DETERMINISTIC_CASES for p in ("plain", "producer", "pipelined")],
                         ids=lambda x: x if isinstance(x, str) else "b{}_h{}x{}_q{}_k{}_d{}_{}".format(*x))
def test_deterministic_is_bitwise_repeatable_and_matches_float64(case, schedule):
    """deterministic=True (dQ adds in K/V-tile order): two runs give the same bits, and both match the
    float64 gradients."""
    cfg = wgmma_config("bf16", case[5], case[6] is not None, producer=schedule != "plain", deterministic=True,
                       stages=3 if schedule == "pipelined" else None)
    first = _check_gradients(case, "bf16", cfg, "deterministic")
    second = _check_gradients(case, "bf16", cfg, "deterministic")
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def _check_gradients(case, dtype, config, label):
    """Run `config` on the case, check its gradients against float64 autograd's; returns them."""
    from autoflash.serve.autograd import attention_backward

    b, hq, hkv, nq, nk, d, alignment = case
    causal = alignment is not None
    offset = nk - nq if alignment == "bottom_right" else 0
    q, k, v, dout = inputs(b, hq, hkv, nq, nk, d, DTYPES[dtype], seed=nq + nk)
    scale = 1 / math.sqrt(d)
    _, _, *refs = reference_grads(q, k, v, dout, causal, scale, offset)
    out, lse = float64_forward(q, k, v, causal, scale, offset)
    grads = attention_backward(q, k, v, out, lse, dout, causal=causal, causal_alignment=alignment or "top_left",
                               config=config, deterministic=config.deterministic)
    assert all(torch.isfinite(x).all() for x in grads)
    if offset < 0:
        assert (grads[0][:, :, :-offset] == 0).all()
    errs = grad_errors(grads, refs, dout, nk)
    _log(f"wgmma {config.name} {label} {dtype} {case}: dq {errs[0]:.2e} dk {errs[1]:.2e} dv {errs[2]:.2e}")
    assert max(errs) <= TOLERANCE[dtype], errs
    return grads


def test_attention_backward_serves_wgmma_on_sm90():
    from autoflash.serve.autograd import _served_config, attention_backward

    cfg = wgmma_config("bf16", 128, True)  # skips off sm_90
    key = dict(dtype="bf16", head_dim=128, causal=True, deterministic=False, window=False, softcap=False,
               sinks=False, alibi=False)
    assert _served_config(0, key, 1000) == cfg
    assert _served_config(0, {**key, "deterministic": True}, 1000) == wgmma_config("bf16", 128, True, deterministic=True)
    q, k, v, dout = inputs(1, 4, 2, 1000, 1000, 128, torch.bfloat16, seed=5)
    _, _, *refs = reference_grads(q, k, v, dout, True, 1 / math.sqrt(128))
    out, lse = float64_forward(q, k, v, True, 1 / math.sqrt(128))
    grads = attention_backward(q, k, v, out, lse, dout, causal=True)
    assert max(rel_err(x, r) for x, r in zip(grads, refs)) <= TOLERANCE["bf16"]
