"""flash_fwd_wgmma with IDLE_ROWS_SKIP on (a consumer warpgroup whose 64 rows are all past the sequence skips its
wgmmas, softmax and store; forward_wgmma, on by default) on an sm_90 GPU, against the float64 reference (O and LSE):
192-row tiles (three consumers: one or two idle) and 128-row tiles (two, ping-pong on and off, the TMA O store, O
over Qi at D 256); seq_q 1024 / 64 / 65 / 1 / 257 (last tiles of 64, 64, 1, 1, 65 rows at br192), causal with both
alignments and not, GQA, more items than SMs and a grid of 3 CTAs (each walks many items: the ring and the mbarrier
phases run across idle and working items), varlen batches of short sequences (1, 64, 65, 200, ...), window + sinks,
paged K/V; and the served grid's spread (131 CTAs where 132 would give every idle tile to the same CTAs). The CPU
checks (render, protocol model, compile): tests/test_wgmma_idle_rows.py."""
import pytest

from autoflash import KernelConfig
from autoflash.kernels.registry import TEMPLATES
from autoflash.ops import forward_wgmma
from autoflash.ops.forward_base import Problem

from wgmma_gpu import load_checked, on_grid

pytestmark = pytest.mark.gpu

WG = TEMPLATES["flash_fwd_wgmma"]
MARKER = "IDLE_ROWS_SKIP: all 64 rows"  # the switched source (the compile cache is keyed by the source)
# (batch, heads_q, heads_kv, seq_q, seq_k): idle warpgroups at 1024 (br192: 5 x 192 + 64), 64, 65, 1, 257; GQA
SHAPES = [(2, 4, 4, 1024, 1024), (3, 4, 2, 64, 300), (2, 6, 2, 65, 65), (2, 2, 1, 1, 129), (1, 4, 4, 257, 1000),
          (2, 4, 1, 1000, 700)]


def wgmma(head_dim, causal, block_m=128, block_n=128, stages=2, dtype="bf16", **extra):
    return KernelConfig("flash_fwd_wgmma", "sm_90a", dtype, head_dim, causal, block_m, block_n,
                        4 * (block_m // 64 + 1), stages, **extra)


# the H200's served tiles where the switch matters (tuned_configs/sm_90.json) and the schedules around them
CONFIGS = [wgmma(64, False, 192, 128, 2), wgmma(64, True, 192, 128, 3, dtype="fp16"), wgmma(128, False),
           wgmma(128, True, stages=3), wgmma(128, False, stages=3, pingpong=1), wgmma(256, True, block_n=80)]


@pytest.fixture
def switched(monkeypatch):
    monkeypatch.setattr(forward_wgmma, "IDLE_ROWS_SKIP", True)

    def load(cfg):
        on = WG.consumers(cfg) == 3  # rendered for 192-row tiles only; the others run as served
        assert WG.values(cfg)["idle_rows_skip"] == on, cfg.name
        return load_checked(cfg, MARKER if on else "mbar_wait(bar_q")

    return load


@pytest.mark.parametrize("sms", ["all", 3])
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.name)
def test_matches_the_reference(monkeypatch, switched, cfg, sms):
    from autoflash.ops.forward_launch import run_checked

    on_grid(monkeypatch, sms)
    k = switched(cfg)
    for i, (b, hq, hkv, nq, nk) in enumerate(SHAPES):
        for offset in sorted({0, nk - nq} if cfg.causal else {0}):  # top-left and bottom-right causal
            p = Problem(b, hq, hkv, nq, nk, cfg.head_dim, cfg.causal, causal_offset=offset)
            check = run_checked(k, p, seed=i)
            assert check.passed, f"{cfg.name} {(b, hq, hkv, nq, nk)} offset {offset} sms={sms}: {check.describe()}"


@pytest.mark.parametrize("sms", ["all", 132, 131])
@pytest.mark.parametrize("cfg", [CONFIGS[0], CONFIGS[1]], ids=lambda c: c.name)
def test_more_items_than_sms(monkeypatch, switched, cfg, sms):
    """br192 at N 1024: 6 tiles x 32 heads x 4 = 768 items (causal: 3 pairs x 128 = 384) on this GPU's SMs, on 132 SMs
    (non-causal: the grid's spread, 131 CTAs, coprime with the 6 tiles) or on 131."""
    from autoflash.ops.forward_launch import run_checked

    if sms != "all":
        monkeypatch.setattr(forward_wgmma, "_sm_count", lambda: sms)
    p = Problem(4, 32, 8, 1024, 1024, 64, cfg.causal)
    assert WG.items(cfg, p) > 132 and (sms != 132 or WG.grid(cfg, p)[0] == (132 if cfg.causal else 131))
    check = run_checked(switched(cfg), p, seed=7)
    assert check.passed, f"{cfg.name}: {check.describe()}"


@pytest.mark.parametrize("cfg", [CONFIGS[0], CONFIGS[1], CONFIGS[3], CONFIGS[5]], ids=lambda c: c.name)
def test_varlen_short_sequences(switched, cfg):
    from autoflash.ops.forward_launch import run_varlen_checked

    lens = [1, 64, 65, 200, 0, 1024, 129, 7]
    check = run_varlen_checked(switched(cfg), lens, lens, 4, 2, bottom_right=True, seed=5)
    assert check.passed, f"{cfg.name}: {check.describe()}"


@pytest.mark.parametrize("cfg", [wgmma(64, True, 192, 128, 3, window=True, sinks=True),
                                 wgmma(128, True, window=True, sinks=True)], ids=lambda c: c.name)
def test_window_and_sinks(switched, cfg):
    from autoflash.ops.forward_launch import run_checked, run_varlen_checked

    k = switched(cfg)
    sinks = [0.5 * h - 1.0 for h in range(8)]
    p = Problem(2, 8, 4, 1000, 1100, cfg.head_dim, True, causal_offset=100, window_left=300, window_right=0)
    check = run_checked(k, p, seed=3, sinks=sinks)
    assert check.passed, f"{cfg.name}: {check.describe()}"
    lens = [65, 1, 200, 64]
    check = run_varlen_checked(k, lens, lens, 8, 4, bottom_right=True, seed=4, window=(100, 0), sinks=sinks)
    assert check.passed, f"{cfg.name} varlen: {check.describe()}"


@pytest.mark.parametrize("seq_q", [64, 150])
def test_paged(monkeypatch, switched, seq_q):
    """Paged K/V (chunked prefill through attention_with_kvcache, the kernel pinned to the switched one): 64 and 150
    query rows on 128-row tiles, so warpgroup 1 is idle on the last tile; float64 and the contiguous cache."""
    torch = pytest.importorskip("torch")
    import autoflash
    from autoflash.serve import api, kvcache
    from test_paged_gpu import paged_inputs
    from test_paged_prefill_gpu import check

    cfg = wgmma(128, True, stages=3, paged=True)
    k = switched(cfg)
    monkeypatch.setattr(kvcache, "paged_config", lambda *a: cfg)
    served = api.loaded_kernel
    monkeypatch.setattr(api, "loaded_kernel", lambda c, dev: k if c == cfg else served(c, dev))
    q, kc, vc, kp, vp, table = paged_inputs(3, seq_q, 2, 2, 700 // 64, 64, 128, seed=seq_q)
    lengths = [kc.shape[1], seq_q + 5, kc.shape[1] - 70]
    seqlens = torch.tensor(lengths, dtype=torch.int32, device="cuda")
    o, lse = autoflash.attention_with_kvcache(q, kp, vp, seqlens, block_table=table, causal=True, return_lse=True)
    torch.cuda.synchronize()
    check(o, lse, q, kc, vc, lengths, True)
