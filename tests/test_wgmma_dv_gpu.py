"""flash_fwd_wgmma with V's own head dim (Dqk != Dv, issue 17 item 2) on an sm_90 GPU: each pair's
default config (bf16 and fp16) against the float64 reference, non-causal and causal in both
alignments, GQA, LSE included; every variant at once on 192/128 and 128/64; a padded pair (40/72);
and autoflash.attention serving a 192/128 call with the wgmma kernel. Configs are compiled first
in a pool of processes (test_wgmma_head_dims_gpu.compile_on_sm90). CPU side: tests/test_wgmma_dv.py."""
import numpy as np
import pytest

from autoflash.kernels.registry import TEMPLATES
from autoflash.ops.forward_base import VARIANT_FLAGS, Problem

from test_wgmma_head_dims_gpu import compile_on_sm90  # the sm_90 skip and the compile pool

pytestmark = pytest.mark.gpu

WG = TEMPLATES["flash_fwd_wgmma"]
PAIRS = [(192, 128), (128, 64), (64, 128), (40, 72)]
ALL = dict.fromkeys(VARIANT_FLAGS, True)
SHAPES = {  # (causal, causal_offset as a function of (nq, nk), nq, nk)
    "full": (False, 0, 300, 333),
    "top_left": (True, 0, 257, 257),
    "bottom_right": (True, 531 - 100, 100, 531),
}


def key(d, dv, causal, dtype="bf16", **flags):
    return {"dtype": dtype, "head_dim": d, "causal": causal, "head_dim_v": dv, **flags}


@pytest.fixture(scope="module")
def configs():
    cfgs = {(d, dv, c, dt): WG.default("sm_90a", key(d, dv, c, dt))
            for d, dv in PAIRS for c in (False, True) for dt in ("bf16", "fp16")}
    cfgs.update({(d, dv, c, "all"): WG.default("sm_90a", key(d, dv, c, **ALL))
                 for d, dv in ((192, 128), (128, 64)) for c in (False, True)})
    spills = compile_on_sm90(cfgs)
    assert not any(spills), dict(zip((c.name for c in cfgs.values()), spills))
    return cfgs


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("d, dv", PAIRS)
def test_pairs_match_float64(configs, d, dv, shape, dtype):
    from autoflash.ops.forward_launch import run_checked
    from autoflash.serve.api import loaded_kernel

    causal, offset, nq, nk = SHAPES[shape]
    cfg = configs[(d, dv, causal, dtype)]
    for hq, hkv in ((4, 2), (8, 1)):  # GQA and MQA
        p = Problem(2, hq, hkv, nq, nk, d, causal, causal_offset=offset, head_dim_v=dv)
        check = run_checked(loaded_kernel(cfg, 0), p, seed=d + dv + nq + hkv)
        assert check.passed, f"{cfg.name} {hq}/{hkv}: {check.describe()}"


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("d, dv", [(192, 128), (128, 64)])
def test_all_variants_with_dv(configs, d, dv, causal):
    from autoflash.ops.forward_launch import alibi_slopes, run_checked
    from autoflash.serve.api import loaded_kernel

    cfg = configs[(d, dv, causal, "all")]
    window = (70, 0 if causal else 33)
    sinks = np.linspace(-2, 2, 4).astype(np.float32)
    p = Problem(1, 4, 2, 300, 500, d, causal, causal_offset=200, window_left=window[0], window_right=window[1],
                softcap=5.0, head_dim_v=dv)
    check = run_checked(loaded_kernel(cfg, 0), p, seed=d, sinks=sinks, alibi_slopes=alibi_slopes(4))
    assert check.passed, f"{cfg.name}: {check.describe()}"


def test_attention_serves_192_128_with_wgmma():
    torch = pytest.importorskip("torch")
    import math

    import autoflash
    from autoflash.kernels.device import device_arch
    from autoflash.ops.reference import compare, reference_attention
    from autoflash.serve import api

    arch, dev = device_arch(0)
    if arch not in ("sm_90", "sm_90a"):
        pytest.skip("flash_fwd_wgmma needs an sm_90 GPU")
    assert api.choose_config(arch, dev, "bf16", 192, True, 4096, {"head_dim_v": 128}).template == "flash_fwd_wgmma"
    g = torch.Generator(device="cuda").manual_seed(7)
    q = torch.randn(2, 8, 300, 192, generator=g, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(2, 2, 400, 192, generator=g, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(2, 2, 400, 128, generator=g, device="cuda", dtype=torch.bfloat16)
    o, lse = autoflash.attention(q, k, v, causal=True, causal_alignment="bottom_right", return_lse=True)
    assert o.shape == (2, 8, 300, 128)
    f64 = lambda x: x.double().cpu().numpy()  # noqa: E731
    ref, ref_lse = reference_attention(f64(q), f64(k), f64(v), causal=True, scale=1 / math.sqrt(192), causal_offset=100)
    result = compare(f64(o), ref, "bf16", f64(lse), ref_lse)
    assert result.passed, result.describe()
