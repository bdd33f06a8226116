"""The backward with V's own head dim (Dv != Dqk, issue 16 item 2; pairs 192/128 and 128/64) on the
CPU: flash_bwd_mma's head_dim_v configs render, compile for sm_80 and sm_90 without spills (ptxas),
the rules and input checks refuse what has no backward, the launch plan and served config.
GPU numbers: tests/test_backward_head_dim_v_gpu.py."""
from types import SimpleNamespace

import pytest

from autoflash.kernels.render import render
from autoflash.ops.backward import TEMPLATE
from autoflash.ops.backward_gpu import BackwardLaunch
from autoflash.ops.backward_kernels import HEAD_DIM_PAIRS, TensorSpec, check_inputs
from autoflash.ops.backward_wgmma import TEMPLATE as WGMMA
from autoflash.serve import autograd
from tests.test_backward import _compile_and_check, key

FLAG_SETS = ({}, dict(causal=True), dict(causal=True, deterministic=True),
             dict(window=True, softcap=True, sinks=True, alibi=True))


def pair_default(arch, d, dv, **kw):
    return TEMPLATE.default(arch, {**key(head_dim=d, **kw), "head_dim_v": dv})


@pytest.mark.parametrize("arch", ["sm_80", "sm_86", "sm_90"])
@pytest.mark.parametrize("d,dv", HEAD_DIM_PAIRS)
def test_every_pair_key_has_a_default(arch, d, dv):
    for flags in FLAG_SETS:
        cfg = pair_default(arch, d, dv, **flags)
        assert cfg.head_dim_v == dv and f"_d{d}_dv{dv}_" in cfg.name and not cfg.problems()


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("d,dv", HEAD_DIM_PAIRS)
@pytest.mark.parametrize("flags", FLAG_SETS, ids=lambda f: "_".join(f) or "plain")
def test_pair_defaults_compile_without_spills(arch, d, dv, flags):
    _compile_and_check(pair_default(arch, d, dv, dtype="fp16" if flags.get("causal") else "bf16", **flags))


def test_render_has_both_head_dims_and_the_dense_signature():
    cfg = pair_default("sm_90", 192, 128)
    source = render(cfg)
    assert "constexpr int HEAD_DIM = 192;" in source and "constexpr int HEAD_DIM_V = 128;" in source
    assert "constexpr int O_DIM = 128;" in source  # the preprocess's O / dO rows
    dense = render(TEMPLATE.default("sm_90", key()))
    assert "constexpr int HEAD_DIM_V = 128;" in dense and "constexpr int O_DIM = 128;" in dense
    sig = source[source.index(f"{cfg.name}(const elem_t*"):]
    dense_name = TEMPLATE.default("sm_90", key()).name
    dense_sig = dense[dense.index(f"{dense_name}(const elem_t*"):]
    assert sig[sig.index("("):sig.index(")")] == dense_sig[dense_sig.index("("):dense_sig.index(")")]


@pytest.mark.parametrize("change,fragment", [
    (dict(head_dim=128, head_dim_v=96), "supported pairs"),
    (dict(head_dim=64, head_dim_v=128), "supported pairs"),
    (dict(head_dim=192, head_dim_v=128, varlen=True), "varlen with head_dim_v"),
    (dict(head_dim=192, head_dim_v=128, warps_q=1, block_n=128), "warps_q=2 with 16 keys a warp"),
    (dict(head_dim=100, head_dim_v=0), "head_dim 100 is not supported"),
])
def test_rules_refuse_what_has_no_backward(change, fragment):
    base = dict(block_m=64, block_n=64, warps=8, stages=2, warps_q=2)
    d = change.pop("head_dim")
    cfg = TEMPLATE.config("sm_90", key(head_dim=d), **{**base, **change})
    assert any(fragment in e for e in cfg.problems()), cfg.problems()


def test_flash_bwd_wgmma_refuses_head_dim_v():
    cfg = WGMMA.default("sm_90a", key()).replace(head_dim_v=64)
    assert any("head_dim_v" in e for e in cfg.problems())


def specs(d=192, dv=128, b=2, hq=4, hkv=2, nq=33, nk=65, **override):
    t = dict(q=(b, hq, nq, d), k=(b, hkv, nk, d), v=(b, hkv, nk, dv), out=(b, hq, nq, dv), lse=(b, hq, nq),
             grad_out=(b, hq, nq, dv))
    t.update(override)
    return {n: TensorSpec(n, s, "fp32" if n == "lse" else "bf16", "cuda:0") for n, s in t.items()}


def test_input_checks_give_the_v_head_dim():
    p = check_inputs(**specs(), causal=True)
    assert (p.head_dim, p.head_dim_v, p.dim_v) == (192, 128, 128)
    assert check_inputs(**specs(128, 128), causal=False).head_dim_v == 0


@pytest.mark.parametrize("override,fragment", [
    (dict(d=128, dv=96), "have no backward"),
    (dict(d=100, dv=100), "head_dim 100 is not supported"),
    (dict(out=(2, 4, 33, 192)), "out must have q's shape with v's head dim"),
    (dict(grad_out=(2, 4, 33, 192)), "grad_out must have q's shape with v's head dim"),
    (dict(v=(2, 2, 64, 128)), "same shape"),
])
def test_input_checks_refuse(override, fragment):
    with pytest.raises(ValueError, match=fragment):
        check_inputs(**specs(**override), causal=False)


def test_launch_plan_sizes_the_preprocess_by_v_rows():
    cfg = pair_default("sm_90", 192, 128)
    p = check_inputs(**specs(nq=300), causal=False)
    kernel = SimpleNamespace(config=cfg, function="main", function_named=lambda s: s, smem=0)
    plan = BackwardLaunch(kernel, p, 0.1)
    assert plan.pre_grid == (384 // (256 // 16), 8, 1)  # 16 lanes per 128-wide O row
    assert int(plan.n_vec8) == 2 * 4 * 300 * 192 // 8  # dQ at Q's head dim
    with pytest.raises(ValueError, match="cannot run head_dim=128 head_dim_v=64"):
        BackwardLaunch(SimpleNamespace(config=TEMPLATE.default("sm_90", key(head_dim=128)), function="main",
                                       function_named=lambda s: s, smem=0), check_inputs(**specs(128, 64), causal=False), 0.1)


def test_served_config_of_a_pair_is_flash_bwd_mma_default(monkeypatch):
    monkeypatch.setattr(autograd, "device_arch", lambda device: ("sm_90", "NVIDIA H200"))
    cfg = autograd._served_config(0, key(head_dim=128), 4096, head_dim_v=64)
    assert cfg.template == "flash_bwd_mma" and cfg.head_dim_v == 64 and not cfg.problems()
