"""ops/backward_wgmma.HEAVY_FIRST on an sm_90 GPU (causal keys: the (heads_kv, batch, K/V tiles) grid): gradients
against float64 within the backward's tolerances, and against the switch off: dk, dv bitwise (each block sums its own
keys), dq within the tolerance (its fp32 adds arrive in another order), dq bitwise too when deterministic (the adds are
serialised in K/V-tile order either way). Odd lengths, GQA, bottom-right alignment, views. CPU checks:
tests/test_backward_wgmma_heavy_first.py."""
import functools
import math

import pytest

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch")

# (its module-level checks apply here too: torch, CuPy, an sm_90 GPU)
from test_backward_strided_gpu import DTYPES, TOLERANCE, attention_backward, backward_wgmma  # noqa: E402
from test_backward_gpu import assert_switch_keeps_gradients, float64_forward  # noqa: E402

from autoflash.serve import autograd, backward_plans, training_plans  # noqa: E402
CASES = [  # batch, heads_q, heads_kv, seq_q, seq_k, head_dim, alignment, views
    (1, 2, 2, 1, 1, 64, "top_left", False),
    (2, 4, 4, 17, 17, 128, "top_left", False),
    (1, 8, 2, 1000, 1000, 64, "top_left", True),
    (3, 4, 2, 300, 700, 128, "bottom_right", False),
    (1, 2, 2, 4097, 4097, 128, "top_left", True),
]


def inputs(b, hq, hkv, nq, nk, d, dtype, views, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    if views:  # (B, N, H, D) buffers seen as (B, H, N, D)
        make = lambda n, h: torch.randn(b, n, h, d, device="cuda", dtype=dtype, generator=g).transpose(1, 2)  # noqa
    else:
        make = lambda n, h: torch.randn(b, h, n, d, device="cuda", dtype=dtype, generator=g)  # noqa
    return make(nq, hq), make(nk, hkv), make(nk, hkv), make(nq, hq)


@pytest.fixture(autouse=True)
def forget_switched_kernels():
    """The kernels loaded here were built with the switch as each test set it: forget them after the test (a later
    test in this process would otherwise get one from autograd._loaded)."""
    yield
    autograd._loaded.cache_clear()
    backward_plans.clear()
    training_plans.clear()


def run(monkeypatch, on: bool, *args, **kw):
    monkeypatch.setattr(backward_wgmma, "HEAVY_FIRST", (64, 128, 256) if on else ())
    autograd._loaded.cache_clear()
    backward_plans.clear()
    return attention_backward(*args, **kw)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}_h{}x{}_q{}_k{}_d{}_{}{}".format(*c[:7], "_views" * c[7]))
def test_matches_float64_and_the_switch_off(case, dtype, monkeypatch):
    b, hq, hkv, nq, nk, d, alignment, views = case
    q, k, v, dout = inputs(b, hq, hkv, nq, nk, d, DTYPES[dtype], views, seed=nq)
    assert_switch_keeps_gradients(functools.partial(run, monkeypatch), q, k, v, dout, TOLERANCE[dtype],
                                  offset=nk - nq if alignment == "bottom_right" else 0, causal_alignment=alignment)


@pytest.mark.parametrize("d", [64, 128])
def test_deterministic_equals_the_switch_off_bitwise(d, monkeypatch):
    q, k, v, dout = inputs(2, 4, 2, 1000, 1000, d, torch.bfloat16, False, seed=d)
    out, lse = float64_forward(q, k, v, True, 1 / math.sqrt(d))
    on = run(monkeypatch, True, q, k, v, out, lse, dout, causal=True, deterministic=True)
    off = run(monkeypatch, False, q, k, v, out, lse, dout, causal=True, deterministic=True)
    assert all(torch.equal(a, b) for a, b in zip(on, off))


def test_a_kernel_loaded_before_the_switch_changed_keeps_its_grid(monkeypatch):
    """The full suite's hang (benchmarks/NOTES.md, sixteenth session): a deterministic kernel loaded with the switch
    off, then given a new problem (a new launch plan) after the switch is back on. The plan reads the order the
    kernel was built with: the call ends, with the gradients of the switch off, bitwise."""
    def problem(n, seed):
        q, k, v, dout = inputs(2, 4, 4, n, n, 128, torch.bfloat16, True, seed=seed)
        return (q, k, v) + float64_forward(q, k, v, True, 1 / math.sqrt(128)) + (dout,)

    run(monkeypatch, False, *problem(17, 1), causal=True, deterministic=True)  # loads the kernel, switch off
    monkeypatch.setattr(backward_wgmma, "HEAVY_FIRST", (128,))  # as served; autograd._loaded keeps that kernel
    args = problem(512, 5)
    later = attention_backward(*args, causal=True, deterministic=True)
    torch.cuda.synchronize()
    off = run(monkeypatch, False, *args, causal=True, deterministic=True)
    assert all(torch.equal(a, b) for a, b in zip(later, off))
