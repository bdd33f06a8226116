"""ops/backward_wgmma.TAIL_SPLIT on an sm_90 GPU: the K/V tiles past the last whole wave split into parts whose dK, dV
are summed in fp32 give the gradients of float64 within the backward's tolerance and of the switch off within it
(the split tiles' fp32 sums add in another order), on grids with 4, 8 and 66 tiles left (parts of 33, 16, 2; parts
with no query tile among them), D 64, 128 and padded 96, GQA, both alignments; causal grids are not split (their
cases check that the switch leaves them as they were). The grid is split only where the GPU has that many SMs (132:
the H200's). CPU checks: tests/test_backward_wgmma_tail_split.py."""
import pytest

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch")

# (its module-level checks apply here too: torch, CuPy, an sm_90 GPU)
from test_backward_strided_gpu import DTYPES, TOLERANCE  # noqa: E402
from test_backward_gpu import rel_err  # noqa: E402
from switched_backward import float64_case, forget_switched_kernels, run_switched  # noqa: E402,F401 (autouse fixture)

CASES = [  # batch, heads_q, heads_kv, seq_q, seq_k, head_dim, causal, alignment (132 SMs: tiles left, parts)
    (1, 17, 17, 1000, 1000, 64, False, "top_left"),  # 8 x 17 = 136 tiles: 4 left, 33 parts, most without a pair
    (3, 8, 2, 4097, 4097, 64, False, "top_left"),  # 33 x 2 x 3 = 198: 66 left, 2 parts
    (1, 9, 9, 2000, 2000, 64, True, "top_left"),  # 16 x 9 = 144: 12 left, 11 parts
    (1, 40, 20, 300, 777, 128, False, "bottom_right"),  # 7 x 20 = 140: 8 left, 16 parts
    (1, 20, 20, 777, 777, 96, False, "top_left"),  # padded: 140 tiles, 8 left
    (2, 4, 2, 2000, 4224, 64, True, "bottom_right"),  # 33 x 2 x 2 = 132: whole waves, no split
    (2, 25, 25, 500, 500, 64, False, "top_left"),  # 4 x 25 x 2 = 200: 68 left (TAIL_WAVES: 5 parts, 340 over 3 waves)
    (2, 25, 25, 500, 500, 128, False, "top_left"),  # (the same at D 128)
]


def run(monkeypatch, on: bool, *args, **kw):
    return run_switched(monkeypatch, "TAIL_SPLIT", on, *args, **kw)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}_h{}x{}_q{}_k{}_d{}_causal{}_{}".format(*c))
def test_matches_float64_and_the_switch_off(case, dtype, monkeypatch):
    args, refs, kw = float64_case(case, dtype)
    on = run(monkeypatch, True, *args, **kw)
    off = run(monkeypatch, False, *args, **kw)
    for name, g, ref, g_off in zip(("dq", "dk", "dv"), on, refs, off):
        assert rel_err(g, ref) < TOLERANCE[dtype], (name, rel_err(g, ref))
        assert rel_err(g, g_off.double()) < TOLERANCE[dtype], (name, "vs off")
