"""flash_fwd_wgmma with two Qi slots (WgmmaTemplate.q_buffers = 2, an experiment: the producer loads the next
item's Qi while this item's key tiles run) on an sm_90 GPU against float64 (O and LSE): dense launches with many
more items than SMs (each CTA cycles both slots several times), ragged, GQA, bottom-right causal, window (1024, 0),
the TMA and register O stores, three consumer warpgroups (D 64), varlen. CPU checks: tests/test_wgmma_q_buffers.py."""
import pytest

from autoflash import KernelConfig
from autoflash.kernels.registry import TEMPLATES
from autoflash.ops.forward_base import Problem

pytestmark = pytest.mark.gpu

WG = TEMPLATES["flash_fwd_wgmma"]
SHAPES = [(2, 8, 8, 2048, 2048), (3, 4, 2, 1000, 1000), (1, 6, 2, 333, 1100)]


def wgmma(head_dim, causal, block_m=128, block_n=128, stages=2, **extra):
    return KernelConfig("flash_fwd_wgmma", "sm_90a", "bf16", head_dim, causal, block_m, block_n,
                        4 * (block_m // 64 + 1), stages, **extra)


CONFIGS = [wgmma(128, False), wgmma(128, True), wgmma(128, True, window=True), wgmma(128, True, o_store=0),
           wgmma(64, True, block_m=192), wgmma(64, False, block_m=192, stages=3)]


def switched_loader(monkeypatch, switch: str, value: int, marker: str):
    """A loader of kernels built (and planned) with WgmmaTemplate.<switch> = value, checking that the source has
    `marker` and nothing spilled (the config name does not say the switch, so these kernels are loaded here, not
    through serve's caches)."""
    from autoflash.kernels.compile import compile_kernel
    from autoflash.kernels.device import device_arch
    from autoflash.kernels.loaded import LoadedKernel
    from autoflash.kernels.render import render

    if device_arch(0)[0] not in ("sm_90", "sm_90a"):
        pytest.skip("flash_fwd_wgmma needs sm_90a")
    monkeypatch.setattr(WG, switch, value)

    def load(cfg):
        assert not cfg.problems(), cfg.problems()
        compiled = compile_kernel(cfg)
        assert marker in render(cfg) and compiled.report.spills == 0, compiled.report
        return LoadedKernel(compiled)

    return load


@pytest.fixture
def two_q_slots(monkeypatch):
    return switched_loader(monkeypatch, "q_buffers", 2, "Q1_BAR")


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.name)
def test_two_q_slots_match_the_reference(two_q_slots, cfg):
    from autoflash.ops.forward_launch import run_checked

    k = two_q_slots(cfg)
    for i, (b, hq, hkv, nq, nk) in enumerate(SHAPES):
        window = dict(window_left=1024, window_right=0) if cfg.window else {}
        p = Problem(b, hq, hkv, nq, nk, cfg.head_dim, cfg.causal, causal_offset=nk - nq if cfg.causal else 0,
                    **window)
        check = run_checked(k, p, seed=i)
        assert check.passed, f"{cfg.name} {(b, hq, hkv, nq, nk)}: {check.describe()}"


def test_two_q_slots_varlen(two_q_slots):
    from autoflash.ops.forward_launch import run_varlen_checked

    k = two_q_slots(wgmma(128, True))
    lens = [0, 1, 127, 129, 1000, 2049, 384, 7]
    check = run_varlen_checked(k, lens, lens, 4, 2, bottom_right=True, seed=5)
    assert check.passed, check.describe()
