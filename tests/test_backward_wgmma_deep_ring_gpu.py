"""ops/backward_wgmma.DEEP_RING on an sm_90 GPU: the D 64 persistent walk with three query-tile buffers (stages 3, the
plain schedule) gives the gradients of float64 within the backward's tolerance and of the served two-buffer walk
within it, on grids where each CTA walks many blocks, with a key tail, GQA and one query tile a block; bf16 and fp16.
CPU checks: tests/test_backward_wgmma_deep_ring.py."""
import pytest

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch")

# (its module-level checks apply here too: torch, CuPy, an sm_90 GPU)
from test_backward_strided_gpu import TOLERANCE, attention_backward, backward_wgmma  # noqa: E402
from test_backward_gpu import grad_errors  # noqa: E402
from switched_backward import float64_case, forget_kernels, forget_switched_kernels  # noqa: E402,F401 (autouse)
from test_backward_wgmma_deep_ring import walk_tile  # noqa: E402

CASES = [  # batch, heads_q, heads_kv, seq_q, seq_k, head_dim, causal, alignment
    (2, 32, 32, 1000, 4500, 64, False, None),  # ~18 blocks a CTA, a key tail, TAIL_SPLIT's parts
    (3, 16, 4, 777, 3000, 64, False, None),  # GQA 4
    (4, 16, 16, 17, 2000, 64, False, None),  # one query tile a block
]


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}_h{}x{}_q{}_k{}".format(*c[:5]))
def test_matches_float64_and_two_buffers(case, dtype, monkeypatch):
    tensors, refs, kw = float64_case(case, dtype)
    served = attention_backward(*tensors, **kw)
    monkeypatch.setattr(backward_wgmma, "DEEP_RING", True)
    forget_kernels()
    cfg = walk_tile(3).replace(dtype=dtype)
    assert backward_wgmma.TEMPLATE.persistent(cfg)
    ring = attention_backward(*tensors, config=cfg, **kw)
    assert all(torch.isfinite(g).all() for g in ring)
    n_keys = case[4]
    for name, err, err_served in zip(("dq", "dk", "dv"), grad_errors(ring, refs, tensors[5], n_keys),
                                     grad_errors(ring, [g.double() for g in served], tensors[5], n_keys)):
        assert err < TOLERANCE[dtype], (name, err)
        assert err_served < TOLERANCE[dtype], (name, "vs two buffers", err_served)
