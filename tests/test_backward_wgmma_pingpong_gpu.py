"""ops/backward_wgmma.PINGPONG (off) on an sm_90 GPU: the producer tiles' two consumers take turns issuing S^T, dP^T
(named barriers 7 / 8); gradients against float64 autograd on every case of tests/test_backward_wgmma_gpu.py (odd
lengths, Nq != Nk, GQA, causal in both alignments, one-tile blocks), D 64 and D 128, bf16 and fp16; a TAIL_SPLIT grid
(its parts run as few as one query tile). CPU checks: tests/test_backward_wgmma_pingpong.py."""
import pytest

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch")

from test_backward_gpu import DTYPES  # noqa: E402
from test_backward_wgmma_gpu import CASES, _check_gradients, wgmma_config  # noqa: E402

from autoflash.kernels.render import render  # noqa: E402
from autoflash.ops import backward_wgmma  # noqa: E402
from autoflash.serve import autograd, backward_plans  # noqa: E402


@pytest.fixture(autouse=True)
def pingpong(monkeypatch):
    monkeypatch.setattr(backward_wgmma, "PINGPONG", True)
    autograd._loaded.cache_clear()
    backward_plans.clear()
    yield
    autograd._loaded.cache_clear()
    backward_plans.clear()


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("case", CASES + [(1, 17, 17, 1000, 1000, 64, None)],
                         ids=lambda c: "b{}_h{}x{}_q{}_k{}_d{}_{}".format(*c))
def test_pingpong_gradients_match_float64_autograd(case, dtype):
    cfg = wgmma_config(dtype, case[5], case[6] is not None, producer=True)
    assert "PINGPONG = true" in render(cfg)
    _check_gradients(case, dtype, cfg, "pingpong")
