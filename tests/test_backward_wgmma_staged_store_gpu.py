"""ops/backward_wgmma.STAGED_STORE on an sm_90 GPU: dK, dV written through the K, V tiles' shared memory in 16-byte
chunks give the gradients of float64 within the backward's tolerance, and dK, dV bitwise equal to the direct 4-byte
stores where no fp32 sums intervene (causal grids: no TAIL_SPLIT parts; dQ's adds run in another order either way);
on the served tiles: D 128 causal (heavy-first grid) and not (TAIL_SPLIT parts, TAIL_WAVES' 68 left), the persistent
D 64 walk (parts with no query tile), the one-consumer causal D 64 tile, key tails, GQA, both alignments; bf16 and
fp16 (padded head dims have no producer warpgroup, so no staged store). CPU checks:
tests/test_backward_wgmma_staged_store.py."""
import pytest

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch")

# (its module-level checks apply here too: torch, CuPy, an sm_90 GPU)
from test_backward_strided_gpu import DTYPES, TOLERANCE  # noqa: E402
from test_backward_gpu import grad_errors  # noqa: E402
from switched_backward import float64_case, forget_switched_kernels, run_switched  # noqa: E402,F401 (autouse fixture)

CASES = [  # batch, heads_q, heads_kv, seq_q, seq_k, head_dim, causal, alignment
    (1, 4, 2, 777, 1000, 128, True, "bottom_right"),  # heavy-first grid, a key tail, GQA
    (2, 8, 8, 1000, 1000, 128, True, "top_left"),
    (2, 25, 25, 500, 500, 128, False, "top_left"),  # 200 tiles: 68 left, 5 parts each (TAIL_WAVES)
    (3, 8, 2, 1000, 4097, 128, False, "top_left"),  # 33 x 2 x 3 = 198 tiles: 66 left in 2 parts; a key tail
    (1, 17, 17, 40, 1000, 64, False, "top_left"),  # the persistent walk: 136 tiles, parts with no query tile
    (2, 4, 1, 300, 777, 64, True, "bottom_right"),  # the one-consumer tile (served causal D 64)
    (1, 8, 8, 4097, 4097, 64, True, "top_left"),
]


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}_h{}x{}_q{}_k{}_d{}_causal{}_{}".format(*c))
def test_matches_float64_and_the_direct_stores(case, dtype, monkeypatch):
    args, refs, kw = float64_case(case, dtype)
    dout, nk = args[5], case[4]
    staged = run_switched(monkeypatch, "STAGED_STORE", True, *args, **kw)
    direct = run_switched(monkeypatch, "STAGED_STORE", False, *args, **kw)
    assert all(torch.isfinite(g).all() for g in staged)
    for name, err, err_direct in zip(("dq", "dk", "dv"), grad_errors(staged, refs, dout, nk),
                                     grad_errors(staged, [g.double() for g in direct], dout, nk)):
        assert err < TOLERANCE[dtype], (name, err)
        assert err_direct < TOLERANCE[dtype], (name, "vs direct", err_direct)
    if case[6]:  # (causal: no parts: the same accumulators, rounded once, stored by another path)
        assert torch.equal(staged[1], direct[1]) and torch.equal(staged[2], direct[2])
