"""flash_fwd_wgmma with O stored through shared memory and TMA (WgmmaTemplate.o_store = "tma") on an sm_90 GPU,
against the float64 reference (O and LSE): dense launches with more items than SMs (persistent CTAs reuse
the staging tile, so a store must have read it before the next item's rows are written), ragged lengths
(the map clips rows past Nq), GQA, bottom-right causal, D 64/128/256, D 40 (an odd count of 8-column units),
Dqk != Dv, ping-pong off with causal, window + sinks; varlen launches (register store) with the knob on.
The knob's CPU checks: tests/test_wgmma_schedule_ostore.py."""
import pytest

from autoflash import KernelConfig
from autoflash.kernels.registry import TEMPLATES
from autoflash.ops.forward_base import Problem

pytestmark = pytest.mark.gpu

WG = TEMPLATES["flash_fwd_wgmma"]
# (batch, heads_q, heads_kv, seq_q, seq_k): > 132 items at 128-row tiles; ragged; GQA with seq_k > seq_q
SHAPES = [(2, 8, 8, 2048, 2048), (3, 4, 2, 1000, 1000), (1, 6, 2, 333, 1100)]


def wgmma(head_dim, causal, block_m=128, block_n=128, stages=2, dtype="bf16", **extra):
    return KernelConfig("flash_fwd_wgmma", "sm_90a", dtype, head_dim, causal, block_m, block_n,
                        4 * (block_m // 64 + 1), stages, **extra)


CONFIGS = [wgmma(128, False), wgmma(128, True), wgmma(128, True, block_n=160, dtype="fp16"),
           wgmma(64, False, block_m=192), wgmma(64, True, stages=4, pingpong=0),
           wgmma(256, True, block_m=64, block_n=80),
           wgmma(40, False), wgmma(192, True, block_n=64, head_dim_v=128)]


@pytest.fixture
def tma_kernel(monkeypatch):
    """A kernel built and loaded with o_store "tma" (not through serve's per-config caches, which hold the
    register-store kernel of the same name); the launch plans are built while the knob is on."""
    from autoflash.kernels.compile import compile_kernel
    from autoflash.kernels.device import device_arch
    from autoflash.kernels.loaded import LoadedKernel

    if device_arch(0)[0] not in ("sm_90", "sm_90a"):
        pytest.skip("flash_fwd_wgmma needs sm_90a")
    monkeypatch.setattr(WG, "o_store", "tma")

    def load(cfg):
        assert not cfg.problems(), cfg.problems()
        compiled = compile_kernel(cfg)
        assert compiled.report.spills == 0, compiled.report
        return LoadedKernel(compiled)

    return load


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.name)
def test_tma_store_matches_the_reference(tma_kernel, cfg):
    from autoflash.ops.forward_launch import run_checked

    k = tma_kernel(cfg)
    for i, (b, hq, hkv, nq, nk) in enumerate(SHAPES):
        p = Problem(b, hq, hkv, nq, nk, cfg.head_dim, cfg.causal, causal_offset=nk - nq if cfg.causal else 0,
                    head_dim_v=cfg.head_dim_v)
        check = run_checked(k, p, seed=i)
        assert check.passed, f"{cfg.name} {(b, hq, hkv, nq, nk)}: {check.describe()}"


def test_tma_store_with_window_and_sinks(tma_kernel):
    from autoflash.ops.forward_launch import run_checked

    cfg = wgmma(128, True, window=True, sinks=True)
    k = tma_kernel(cfg)
    p = Problem(2, 8, 4, 1500, 1700, 128, True, causal_offset=200, window_left=300, window_right=0)
    check = run_checked(k, p, seed=3, sinks=[0.5 * h - 1.0 for h in range(8)])
    assert check.passed, f"{cfg.name}: {check.describe()}"


@pytest.mark.parametrize("cfg", [wgmma(128, False), wgmma(128, True)], ids=lambda c: c.name)
def test_varlen_keeps_the_register_store(tma_kernel, cfg):
    from autoflash.ops.forward_launch import run_varlen_checked

    k = tma_kernel(cfg)
    lens = [0, 1, 127, 129, 1000, 2049, 384, 7]
    check = run_varlen_checked(k, lens, lens, 4, 2, bottom_right=True, seed=5)
    assert check.passed, f"{cfg.name}: {check.describe()}"
