"""flash_fwd_wgmma with WG_TILES on (causal 192-row tiles: each consumer warpgroup runs its own key tiles, those
holding a key <= its last row's diagonal, then only the barrier steps of the others' later tiles; forward_wgmma, off by
default) on an sm_90 GPU, against the float64 reference (O and LSE): D 64 three-consumer tiles (bc 128 two and three
stages, bc 96, bc 64), causal top-left and bottom-right (offsets move the diagonal across key tiles; seq_k < seq_q
leaves rows that see no key: n_own = 0 on real rows, O = 0, LSE = -inf), seq 1024 / 1000 / 65 / 129 / 4097, GQA, more
items than SMs and a grid of 3 CTAs (each walks many items: the ring's phases run across warpgroups that stop at
different tiles), varlen batches of short sequences, window + sinks. The CPU checks: tests/test_wgmma_wg_tiles.py."""
import pytest

from autoflash import KernelConfig
from autoflash.kernels.registry import TEMPLATES
from autoflash.ops import forward_wgmma
from autoflash.ops.forward_base import Problem

from wgmma_gpu import load_checked, on_grid

pytestmark = pytest.mark.gpu

WG = TEMPLATES["flash_fwd_wgmma"]
MARKER = "const int n_own ="  # the switched source (the compile cache is keyed by the source)
# (batch, heads_q, heads_kv, seq_q, seq_k): 1024 = 5 x 192 + 64, 1000, 65, 129, 4097; GQA; seq_k < seq_q and >
SHAPES = [(2, 4, 4, 1024, 1024), (1, 4, 2, 1000, 1000), (2, 4, 1, 1000, 700), (2, 6, 2, 65, 65),
          (2, 2, 1, 129, 300), (1, 2, 2, 4097, 4097)]


def wgmma(head_dim=64, block_n=128, stages=2, dtype="bf16", **extra):
    return KernelConfig("flash_fwd_wgmma", "sm_90a", dtype, head_dim, True, 192, block_n, 16, stages, **extra)


CONFIGS = [wgmma(), wgmma(stages=3, dtype="fp16"), wgmma(block_n=96), wgmma(block_n=64, stages=3)]


@pytest.fixture
def switched(monkeypatch):
    monkeypatch.setattr(forward_wgmma, "WG_TILES", True)

    def load(cfg):
        assert WG.values(cfg)["wg_tiles"] == 1, cfg.name
        return load_checked(cfg, MARKER)

    return load


@pytest.mark.parametrize("sms", ["all", 3])
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.name)
def test_matches_the_reference(monkeypatch, switched, cfg, sms):
    from autoflash.ops.forward_launch import run_checked

    on_grid(monkeypatch, sms)
    k = switched(cfg)
    for i, (b, hq, hkv, nq, nk) in enumerate(SHAPES):
        for offset in sorted({0, nk - nq}):  # top-left and bottom-right
            p = Problem(b, hq, hkv, nq, nk, cfg.head_dim, True, causal_offset=offset)
            check = run_checked(k, p, seed=i)
            assert check.passed, f"{cfg.name} {(b, hq, hkv, nq, nk)} offset {offset} sms={sms}: {check.describe()}"


@pytest.mark.parametrize("cfg", CONFIGS[:2], ids=lambda c: c.name)
def test_more_items_than_sms(switched, cfg):
    """N 1024: 3 causal pairs x 32 heads x 4 = 384 items on the GPU's SMs."""
    from autoflash.ops.forward_launch import run_checked

    p = Problem(4, 32, 8, 1024, 1024, 64, True)
    assert WG.items(cfg, p) > 132
    check = run_checked(switched(cfg), p, seed=7)
    assert check.passed, f"{cfg.name}: {check.describe()}"


@pytest.mark.parametrize("cfg", CONFIGS[:2], ids=lambda c: c.name)
def test_varlen_short_sequences(switched, cfg):
    from autoflash.ops.forward_launch import run_varlen_checked

    lens = [1, 64, 65, 200, 0, 1024, 129, 7, 385]
    check = run_varlen_checked(switched(cfg), lens, lens, 4, 2, bottom_right=True, seed=5)
    assert check.passed, f"{cfg.name}: {check.describe()}"
    lens_k = [n + 100 for n in lens]
    check = run_varlen_checked(switched(cfg), lens, lens_k, 4, 2, bottom_right=True, seed=6)
    assert check.passed, f"{cfg.name} seq_k > seq_q: {check.describe()}"


@pytest.mark.parametrize("cfg", [wgmma(stages=3, window=True, sinks=True), wgmma(window=True)],
                         ids=lambda c: c.name)
def test_window_and_sinks(switched, cfg):
    from autoflash.ops.forward_launch import run_checked, run_varlen_checked

    k = switched(cfg)
    sinks = [0.5 * h - 1.0 for h in range(8)] if cfg.sinks else None
    for nq, nk, offset in ((1000, 1100, 100), (1000, 700, -300)):
        p = Problem(2, 8, 4, nq, nk, cfg.head_dim, True, causal_offset=offset, window_left=300, window_right=0)
        check = run_checked(k, p, seed=3, sinks=sinks)
        assert check.passed, f"{cfg.name} {(nq, nk, offset)}: {check.describe()}"
    lens = [65, 1, 200, 64, 500]
    check = run_varlen_checked(k, lens, lens, 8, 4, bottom_right=True, seed=4, window=(100, 0), sinks=sinks)
    assert check.passed, f"{cfg.name} varlen: {check.describe()}"
