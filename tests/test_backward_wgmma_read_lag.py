"""flash_bwd_wgmma's dQ read lag (ops/backward_wgmma.py) without a GPU: exactly the dq_via_producer=2 configs with
two staging buffers at stages 2 (the served D 64 and D 128 tiles), less the D 64 walk's (DQ_FREE_ON_FULL waits for
each read), render the wait that leaves the last bulk reduction in flight, and those compile for sm_90a with 0
spills, no wgmma serialisation and that wait in the SASS (DEPBAR.LE SB0, 0x1). Their gradients: tests/test_backward_wgmma_dq_tile_gpu.py (the served mode-2 path)."""
import pytest

from autoflash.kernels.render import render
from autoflash.ops import backward_wgmma
from autoflash.ops.backward_wgmma import TEMPLATE as W

from sass import sass
from test_backward_wgmma import key

LAG_WAIT = 'cp.async.bulk.wait_group.read 1;'


def valid_configs():
    """Every valid config of the space: bf16/fp16, D 64/128, causal or not, deterministic or not, every knob."""
    return [c for t in ("bf16", "fp16") for d in (64, 128) for causal in (False, True) for det in (False, True)
            for c in W.space("sm_90a", key(t, d, causal, deterministic=det)) if not c.problems()]


def lagged(cfg) -> bool:
    walk_waits = backward_wgmma.DQ_FREE_ON_FULL and W.persistent(cfg)
    return W.dq_mode(cfg) == 2 and W.smem_layout(cfg)["dq_bufs"] == 2 and cfg.stages == 2 and not walk_waits


def test_the_lag_is_rendered_by_the_two_buffer_tile_reductions_at_stages_2():
    configs = list(valid_configs())
    with_lag = {c.name for c in configs if LAG_WAIT in render(c)}
    assert with_lag == {c.name for c in configs if lagged(c)} == {c.name for c in configs if W.reads_dq_with_lag(c)}
    assert {(c.head_dim, c.stages) for c in configs if lagged(c)} == {(64, 2), (128, 2)}
    served = [W.config("sm_90a", key(t, d, causal), block_m=64, block_n=128, warps=12, stages=2, warps_q=1)
              for t in ("bf16", "fp16") for d in (64, 128) for causal in (False, True)]
    assert all(lagged(c) != W.persistent(c) for c in served)


@pytest.mark.parametrize("d", [64, 128])
def test_it_compiles_with_one_op_left_in_flight(tmp_path, d, monkeypatch):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    monkeypatch.setattr(backward_wgmma, "CAUSAL_WALK", False)  # (the walk's producer reads no dQ with a lag)
    from autoflash.kernels.compile import compile_kernel

    cfg = W.config("sm_90a", key("bf16", d, True), block_m=64, block_n=128, warps=12, stages=2, warps_q=1,
                   dq_via_producer=-1)
    assert lagged(cfg) and LAG_WAIT in render(cfg)
    kernel = compile_kernel(cfg, use_cache=False)
    assert kernel.report.spills == 0 and not kernel.report.wgmma_serialized, kernel.report
    code = sass(kernel.cubin, tmp_path, cfg.name)
    assert "DEPBAR.LE SB0, 0x1" in code and "LDL" not in code and "STL" not in code
