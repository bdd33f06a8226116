"""flash_bwd_wgmma with UNIFORM_WG on (ops/backward_wgmma.py: the warpgroup index by a lane-0 shuffle, the same
arithmetic) on an H100/H200: the served producer tiles (bm64 bn128 w12, stages 2; D 64 also the pipelined stages 3 of
tuned_configs/sm_90.json) against float64 autograd for every case of tests/test_backward_wgmma_gpu.py (odd lengths,
Nq != Nk, GQA/MQA, causal in both alignments, rows that see no key), bf16 and fp16; and switch off vs on on the same
inputs: dK, dV bitwise equal (no atomics), dQ within the rounding of its unordered fp32 adds (1e-3), and the deterministic
kernels (dQ adds in K/V-tile order) bitwise equal in all three gradients. The served kernels are reloaded around
each switch (autograd's kernel cache keys on the config alone). Every switch value (1, 2, 3, 4; the environment's
AUTOFLASH_UNIFORM_WG_VALUES, e.g. "2,3,4", picks some: benchmarks/bwd_uniform_wg_pick_run.sh passes the spill-free
ones)."""
import os

import pytest

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")

from test_backward_gpu import rel_err  # noqa: E402
from test_backward_wgmma_gpu import CASES, _check_gradients, wgmma_config  # noqa: E402


def set_switch(monkeypatch, value):
    from autoflash.ops import backward_wgmma
    from autoflash.serve import autograd

    monkeypatch.setattr(backward_wgmma, "UNIFORM_WG", value)
    autograd._loaded.cache_clear()


VALUES = [int(v) for v in os.environ.get("AUTOFLASH_UNIFORM_WG_VALUES", "1,2,3,4").split(",")]


@pytest.fixture(params=VALUES, ids=lambda v: f"uwg{v}")
def on(request, monkeypatch):
    set_switch(monkeypatch, request.param)
    yield
    from autoflash.serve import autograd

    autograd._loaded.cache_clear()


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}_h{}x{}_q{}_k{}_d{}_{}".format(*c))
def test_uniform_wg_gradients_match_float64_autograd(case, dtype, on):
    _check_gradients(case, dtype, wgmma_config(dtype, case[5], case[6] is not None, producer=True), "uniform wg")


@pytest.mark.parametrize("case", [CASES[1], CASES[3], CASES[6], CASES[9]],
                         ids=lambda c: "b{}_h{}x{}_q{}_k{}_d{}_{}".format(*c))
def test_uniform_wg_pipelined_gradients_match_float64_autograd(case, on):
    _check_gradients(case, "bf16", wgmma_config("bf16", case[5], case[6] is not None, producer=True, stages=3),
                     "uniform wg pipelined")


def _off_and_on(monkeypatch, case, cfg, on_value):
    grads = {}
    for value in (False, on_value):
        set_switch(monkeypatch, value)
        grads[value] = _check_gradients(case, "bf16", cfg, f"uniform wg {value}")
    set_switch(monkeypatch, False)
    return grads[False], grads[on_value]


@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("case", [CASES[2], CASES[7], CASES[10]], ids=lambda c: "b{}_h{}x{}_q{}_k{}_d{}_{}".format(*c))
def test_switch_changes_no_dk_dv_bit(case, value, monkeypatch):
    """The served tile, off vs on: dK, dV the same bits; dQ (unordered fp32 adds into dq_accum, then rounded to
    bf16: a last-bit flip is one bf16 ulp) within 1e-3, as test_backward_wgmma_dq_tile_gpu compares two dQ paths."""
    off, on = _off_and_on(monkeypatch, case, wgmma_config("bf16", case[5], case[6] is not None, producer=True), value)
    assert torch.equal(off[1], on[1]) and torch.equal(off[2], on[2])
    assert rel_err(on[0], off[0].double()) <= 1e-3


@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("case", [CASES[3], CASES[10]], ids=lambda c: "b{}_h{}x{}_q{}_k{}_d{}_{}".format(*c))
def test_deterministic_switch_changes_no_bit(case, value, monkeypatch):
    """deterministic=True (dQ adds in K/V-tile order): off and on give the same bits in dQ, dK and dV."""
    cfg = wgmma_config("bf16", case[5], case[6] is not None, deterministic=True)
    off, on = _off_and_on(monkeypatch, case, cfg, value)
    assert all(torch.equal(a, b) for a, b in zip(off, on))
