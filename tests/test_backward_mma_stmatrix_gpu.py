"""flash_bwd_mma's P^T and dS^T stores by stmatrix (ops/backward_kernels.STMATRIX_STORE, sm_90 GPUs) on a GPU:
gradients against float64 within the backward's tolerances, and against the switch off (one 32-bit store a pair):
dk, dv bitwise (the same values reach shared memory), dq within the tolerance (its fp32 adds arrive in another
order), deterministic mode bitwise. CPU checks (renders, compiles, SASS): tests/test_backward_mma_stmatrix.py."""
import functools

import pytest

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch")

from test_backward_gpu import DTYPES, assert_switch_keeps_gradients, inputs, pinned  # noqa: E402

from autoflash.ops import backward_kernels  # noqa: E402
from autoflash.ops.backward import TOLERANCE  # noqa: E402
from autoflash.serve import autograd, backward_plans  # noqa: E402

CASES = [  # batch, heads_q, heads_kv, seq_q, seq_k, head_dim, causal, warps_q
    (1, 2, 2, 1, 1, 64, False, 2),
    (2, 4, 4, 17, 17, 128, True, 2),
    (1, 8, 2, 1000, 1000, 64, True, 2),
    (3, 4, 2, 300, 700, 128, False, 2),
    (1, 2, 2, 4097, 4097, 128, True, 2),
    (1, 2, 1, 700, 300, 256, True, 4),
    (1, 4, 2, 1000, 1000, 64, False, 1),
]


@pytest.fixture(autouse=True)
def sm_90_and_forget_switched_kernels():
    """Only sm_90 builds stmatrix; the kernels loaded here were built with the switch as each test set it."""
    if torch.cuda.get_device_capability() < (9, 0):
        pytest.skip("stmatrix stores are built for sm_90 GPUs only")
    yield
    autograd._loaded.cache_clear()
    backward_plans.clear()


def run(monkeypatch, on: bool, *args, **kw):
    monkeypatch.setattr(backward_kernels, "STMATRIX_STORE", on)
    autograd._loaded.cache_clear()
    backward_plans.clear()
    return autograd.attention_backward(*args, **kw)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}_h{}x{}_q{}_k{}_d{}_causal{}_wq{}".format(*c))
def test_matches_float64_and_the_switch_off(case, dtype, monkeypatch):
    b, hq, hkv, nq, nk, d, causal, warps_q = case
    q, k, v, dout = inputs(b, hq, hkv, nq, nk, d, DTYPES[dtype], seed=nq)
    assert_switch_keeps_gradients(functools.partial(run, monkeypatch), q, k, v, dout, TOLERANCE[dtype], causal=causal,
                                  config=pinned(dtype, d, causal, warps_q))


@pytest.mark.parametrize("d", [64, 128])
def test_deterministic_bitwise_to_the_switch_off(d, monkeypatch):
    q, k, v, dout = inputs(2, 4, 2, 1000, 1000, d, torch.bfloat16, seed=d)
    assert_switch_keeps_gradients(functools.partial(run, monkeypatch), q, k, v, dout, TOLERANCE["bf16"],
                                  dq_bitwise=True, deterministic=True, config=pinned("bf16", d, True, 2, True))
