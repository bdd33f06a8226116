"""flash_fwd_wgmma's O over Qi (forward_wgmma.o_via_q: O staged over Qi's rows, stored by TMA, Qi handed back
after the store; dense plain configs above D 128) on an sm_90 GPU, against the float64 reference (O and LSE): the H200's served D 256 tiles (br128 bc80 s2,
causal and not, bf16 and fp16), D 256 with one consumer warpgroup (br64 bc96) and D 192; dense launches with ragged
lengths (the map clips rows past Nq), GQA with seq_k > seq_q and bottom-right causal, more items than SMs, and a grid
of 3 CTAs (each walks many items: Qi is reloaded over the last item's O only after its store has read it); varlen
launches (register store, Qi released after it); attention() on the served D 256 config called again into new outputs.
The CPU checks: tests/test_wgmma_o_via_q.py."""
import pytest

from autoflash import KernelConfig
from autoflash.kernels.registry import TEMPLATES
from autoflash.ops.forward_base import Problem

from wgmma_gpu import load_checked, on_grid, sm90

pytestmark = pytest.mark.gpu

WG = TEMPLATES["flash_fwd_wgmma"]
# (batch, heads_q, heads_kv, seq_q, seq_k): > 132 items at 128-row tiles (causal: 256 pairs); ragged; GQA, Nk > Nq
SHAPES = [(4, 8, 8, 2048, 2048), (3, 4, 2, 1000, 1000), (1, 6, 2, 333, 1100)]


def wgmma(head_dim, causal, block_m=128, block_n=80, dtype="bf16"):
    return KernelConfig("flash_fwd_wgmma", "sm_90a", dtype, head_dim, causal, block_m, block_n,
                        4 * (block_m // 64 + 1), 2)


CONFIGS = ([wgmma(256, c, dtype=t) for t in ("bf16", "fp16") for c in (False, True)]
           + [wgmma(256, c, block_m=64, block_n=96) for c in (False, True)] + [wgmma(192, True, block_n=64)])


def load(cfg):
    assert WG.o_via_q(cfg), cfg.name
    return load_checked(cfg, "if (j == 0) load_q();")  # the O-over-Qi source


@pytest.mark.parametrize("sms", ["all", 3])
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.name)
def test_matches_the_reference(monkeypatch, cfg, sms):
    from autoflash.ops.forward_launch import run_checked

    on_grid(monkeypatch, sms)
    k = load(cfg)
    for i, (b, hq, hkv, nq, nk) in enumerate(SHAPES):
        p = Problem(b, hq, hkv, nq, nk, cfg.head_dim, cfg.causal, causal_offset=nk - nq if cfg.causal else 0)
        if sms == 3:
            assert WG.grid(cfg, p)[0] == 3 and WG.items(cfg, p) >= 6
        check = run_checked(k, p, seed=i)
        assert check.passed, f"{cfg.name} {(b, hq, hkv, nq, nk)} sms={sms}: {check.describe()}"


@pytest.mark.parametrize("cfg", [wgmma(256, False), wgmma(256, True)], ids=lambda c: c.name)
def test_varlen_stores_from_registers(cfg):
    from autoflash.ops.forward_launch import run_varlen_checked

    k = load(cfg)
    lens = [0, 1, 127, 129, 1000, 2049, 384, 7]
    check = run_varlen_checked(k, lens, lens, 4, 2, bottom_right=True, seed=5)
    assert check.passed, f"{cfg.name}: {check.describe()}"


@pytest.mark.parametrize("causal", [False, True])
def test_attention_on_the_served_config_writes_each_new_output(causal):
    """attention() through its call plans (packed launches): the served bf16 D 256 N 1024
    config, called again with the same q/k/v into new outputs (O's tensor map must follow each)."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    import autoflash
    from autoflash.kernels.device import device_arch
    from autoflash.serve import api

    sm90()
    arch, name = device_arch(0)
    cfg = api.choose_config(arch, name, "bf16", 256, causal, 1024)
    assert cfg.template == "flash_fwd_wgmma" and WG.o_via_q(cfg), cfg.name
    g = torch.Generator(device="cuda").manual_seed(13)
    q, k, v = (torch.randn(2, 8, 1024, 256, generator=g, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), is_causal=causal).float()
    outs = [autoflash.attention(q, k, v, causal=causal) for _ in range(3)]
    torch.cuda.synchronize()
    assert len({o.data_ptr() for o in outs}) == len(outs)
    for i, o in enumerate(outs):
        err = (o.float() - ref).abs().max().item()
        assert err < 2e-2, (i, err)
