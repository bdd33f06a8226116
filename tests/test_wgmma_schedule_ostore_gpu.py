"""flash_fwd_wgmma with O stored through shared memory and TMA (KernelConfig.o_store: the rule's TMA configs,
o_store=1 elsewhere) on an sm_90 GPU, against the float64 reference (O and LSE): dense launches with more items
than SMs (persistent CTAs reuse the staging tile, so a store must have read it before the next item's rows are
written), ragged lengths (the map clips rows past Nq), GQA, bottom-right causal, D 64/96/104/128/256, D 40 (an odd
count of 8-column units), Dqk != Dv, ping-pong off with causal, window + sinks; varlen launches (register store)
of TMA kernels; paged chunked prefill on a TMA kernel; attention() and the torch drop-in on the served D 128
config called again with the same q/k/v into a new output (the packed launch must re-encode O's map).
The knob's CPU checks: tests/test_wgmma_schedule_ostore.py."""
from dataclasses import replace

import pytest

from autoflash import KernelConfig
from autoflash.kernels.registry import TEMPLATES
from autoflash.ops.forward_base import Problem

pytestmark = pytest.mark.gpu

WG = TEMPLATES["flash_fwd_wgmma"]
# (batch, heads_q, heads_kv, seq_q, seq_k): > 132 items at 128-row tiles; ragged; GQA with seq_k > seq_q
SHAPES = [(2, 8, 8, 2048, 2048), (3, 4, 2, 1000, 1000), (1, 6, 2, 333, 1100)]


def wgmma(head_dim, causal, block_m=128, block_n=128, stages=2, dtype="bf16", **extra):
    """The config with O stored by TMA (o_store -1 where that is the rule, else 1)."""
    cfg = KernelConfig("flash_fwd_wgmma", "sm_90a", dtype, head_dim, causal, block_m, block_n,
                       4 * (block_m // 64 + 1), stages, **extra)
    return replace(cfg, o_store=-1 if WG.o_store_rule(cfg) else 1)


CONFIGS = [wgmma(128, False), wgmma(128, True), wgmma(128, True, block_n=160, dtype="fp16"),
           wgmma(96, True, block_n=160), wgmma(104, False),
           wgmma(64, False, block_m=192), wgmma(64, True, stages=4, pingpong=0),
           wgmma(256, True, block_m=64, block_n=80),
           wgmma(40, False), wgmma(192, True, block_n=64, head_dim_v=128)]


def sm90():
    from autoflash.kernels.device import device_arch

    if device_arch(0)[0] not in ("sm_90", "sm_90a"):
        pytest.skip("flash_fwd_wgmma needs sm_90a")


@pytest.fixture
def tma_kernel():
    from autoflash.kernels.compile import compile_kernel
    from autoflash.kernels.loaded import LoadedKernel

    sm90()

    def load(cfg):
        assert not cfg.problems() and WG.o_store_tma(cfg), cfg.problems()
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


@pytest.mark.parametrize("causal", [True, False])
def test_paged_prefill_on_a_tma_kernel(monkeypatch, causal):
    """attention_with_kvcache's paged chunk on flash_fwd_wgmma br128 bc128 s2 (the rule: TMA) at D 128."""
    torch = pytest.importorskip("torch")
    import autoflash
    from autoflash.serve import kvcache
    from test_paged_gpu import paged_inputs
    from test_paged_prefill_gpu import check

    sm90()
    cfg = wgmma(128, causal, paged=True)
    assert cfg.o_store == -1 and WG.o_store_tma(cfg) and not cfg.problems()
    monkeypatch.setattr(kvcache, "paged_config", lambda *a: cfg)
    q, k, v, kp, vp, table = paged_inputs(3, 300, 2, 2, 700 // 16, 16, 128, seed=7)
    lengths = [650, 131, 7]
    seqlens = torch.tensor(lengths, dtype=torch.int32, device="cuda")
    o, lse = autoflash.attention_with_kvcache(q, kp, vp, seqlens, block_table=table, causal=causal, return_lse=True)
    check(o, lse, q, k, v, lengths, causal)


@pytest.mark.parametrize("causal", [False, True])
def test_served_tma_config_writes_each_new_output(causal):
    """attention() and the torch drop-in through their call plans (packed launches): the same q/k/v called
    again writes a new output tensor, which O's tensor map must name (a stale map wrote the old one)."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    import autoflash
    from autoflash.kernels.device import device_arch
    from autoflash.serve import api

    sm90()
    arch, name = device_arch(0)
    cfg = api.choose_config(arch, name, "bf16", 128, causal, 1024)
    if cfg.template != "flash_fwd_wgmma" or not WG.o_store_tma(cfg):
        pytest.skip(f"the served bf16 d128 N 1024 config {cfg.name} stores O from registers")
    g = torch.Generator(device="cuda").manual_seed(11)
    q, k, v = (torch.randn(2, 8, 1024, 128, generator=g, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), is_causal=causal).float()
    outs = [autoflash.attention(q, k, v, causal=causal) for _ in range(3)]
    import autoflash.torch as aft

    outs += [aft.scaled_dot_product_attention(q, k, v, is_causal=causal) for _ in range(3)]
    torch.cuda.synchronize()
    assert len({o.data_ptr() for o in outs}) == len(outs)  # every output alive: each call a new buffer
    for i, o in enumerate(outs):
        err = (o.float() - ref).abs().max().item()
        assert err < 2e-2, (i, err)
