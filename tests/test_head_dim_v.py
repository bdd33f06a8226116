"""Dqk != Dv in the forward without a GPU (issue 17 item 2): the head_dim_v key field (0 = Dv = Dqk;
old entries and keys without it read 0, plain names and study names unchanged), which templates take
it (mma, simt, wgmma; tests/test_wgmma_dv.py has wgmma's side), what the templates render,
NVRTC compiles without spills for 192/128, 128/64, 64/128 (and a padded pair), the float64 reference
with its own V head dim, and the API's refusals that need no GPU. The GPU side is
tests/test_head_dim_v_gpu.py."""
import numpy as np
import pytest

from autoflash import store
from autoflash.kernels.registry import TEMPLATES
from autoflash.kernels.render import render
from autoflash.ops.forward import FORWARD
from autoflash.ops.forward_base import Problem
from autoflash.ops.reference import reference_attention
from autoflash.tuning.keys import StudyKey
from autoflash.tuning.space import space
from conftest import fwd_key as K

MMA, SIMT, WGMMA = (TEMPLATES[n] for n in ("flash_fwd_mma", "flash_fwd_simt", "flash_fwd_wgmma"))
PAIRS = [(192, 128), (128, 64), (64, 128)]


def dv_key(dtype, d, dv, causal=True):
    return {**K(dtype, d, causal), "head_dim_v": dv}


def test_head_dim_v_is_a_key_field_whose_absence_means_equal():
    assert "head_dim_v" in FORWARD.key_fields and FORWARD.key_defaults["head_dim_v"] == (0,)
    plain = MMA.default("sm_90", K("bf16", 128, True))
    assert plain.head_dim_v == 0 and "dv" not in plain.name and FORWARD.key_of(plain)["head_dim_v"] == 0
    assert MMA.default("sm_90", dv_key("bf16", 192, 128)).name.startswith("flash_fwd_mma_sm_90_bf16_d192_dv128_")
    assert FORWARD.describe_key(dv_key("bf16", 192, 128)) == "bf16 d192/128 causal"
    # study names of plain keys are unchanged by the new field (an off value stays out)
    assert StudyKey.of("forward", "sm_90", "H200", **K("bf16", 128, True)).study_name((1024,), 1) == \
        StudyKey.of("forward", "sm_90", "H200", **dv_key("bf16", 128, 0)).study_name((1024,), 1)



def test_a_dv_key_is_tuned_over_the_templates_that_serve_it():
    key = StudyKey.of("forward", "sm_90", "H200", **dv_key("bf16", 192, 128))
    configs = [c for c in space(key, None) if not c.problems()]
    assert configs and {c.template for c in configs} == {"flash_fwd_mma", "flash_fwd_simt", "flash_fwd_wgmma"}
    assert all(c.head_dim == 192 and c.head_dim_v == 128 for c in configs)
    problems = [FORWARD.bench_problem(key.params, 1024, 1 << 17)] + FORWARD.check_problems(key.params) + \
        FORWARD.verify_problems(key.params, 1024)
    assert all(FORWARD.problem(d).dim_v == 128 and FORWARD.problem(d).head_dim == 192 for d in problems)
    d = problems[0]
    tokens_q = d["batch"] * d["heads_q"] * d["seq_q"]
    assert FORWARD.input_bytes(d, "bf16") == 2 * (tokens_q * (192 + 128) + d["batch"] * d["heads_kv"] * d["seq_k"] * 320)


def test_an_entry_written_before_head_dim_v_serves_the_plain_key_only():
    cfg = MMA.default("sm_90", K("bf16", 128, True))
    entry = {"op": "forward", "device": "H", "template": None, "dtype": "bf16", "head_dim": 128, "causal": True,
             "window": False, "softcap": False, "sinks": False, "alibi": False, "seq_bucket": 1024,
             "config": {k: v for k, v in cfg.to_dict().items() if k not in ("head_dim_v", "paged")}}
    entry = store.with_new_flags(entry)
    assert entry["head_dim_v"] == 0
    assert store.lookup([entry], "H", "forward", K("bf16", 128, True), 1024)[0] is entry
    assert store.lookup([entry], "H", "forward", dv_key("bf16", 128, 64), 1024)[0] is None


@pytest.mark.parametrize("d, dv", PAIRS)
def test_mma_simt_and_wgmma_take_it_and_the_sm_90_default_is_wgmma(d, dv):
    key = dv_key("bf16", d, dv)
    cfg = FORWARD.default("sm_90", key)
    assert cfg.template == "flash_fwd_wgmma" and cfg.head_dim_v == dv and not cfg.problems()
    assert WGMMA.supports("sm_90a", key) and MMA.supports("sm_90", key)
    assert FORWARD.default("sm_80", key).template == "flash_fwd_mma"
    if d in SIMT.head_dims and dv in SIMT.head_dims:
        assert not FORWARD.default("sm_90", dv_key("fp32", d, dv)).problems()
    assert MMA.default("sm_90", K("bf16", d, True)).replace(head_dim_v=d).problems()  # equal dims are spelled 0


def test_render_gives_each_side_its_head_dim():
    src = render(MMA.default("sm_90", dv_key("bf16", 192, 128)))
    assert "constexpr int HEAD_DIM = 192;" in src and "constexpr int HEAD_DIM_V = 128;" in src
    plain = render(MMA.default("sm_90", K("bf16", 128, True)))
    assert "constexpr int HEAD_DIM_V = 128;" in plain  # Dv = Dqk: the same constant, the same kernel as before
    s = render(SIMT.default("sm_90", dv_key("fp32", 64, 128)))
    assert "constexpr int HEAD_DIM = 64;" in s and "constexpr int HEAD_DIM_V = 128;" in s


def test_shared_memory_counts_each_head_dim():
    cfg = MMA.config("sm_90", dv_key("bf16", 192, 128), block_m=64, block_n=32, warps=4, stages=2)
    assert MMA.smem_bytes(cfg) == 2 * (64 * (192 + 8) + 2 * 32 * (192 + 8 + 128 + 8))
    wide_v = MMA.config("sm_90", dv_key("bf16", 64, 128), block_m=64, block_n=32, warps=4, stages=2)
    assert MMA.smem_bytes(wide_v) == 2 * (64 * (128 + 8) + 2 * 32 * (64 + 8 + 128 + 8))  # Qi rows hold O rows


CASES = [("sm_80", d, dv, c) for d, dv in PAIRS for c in (False, True)] + \
        [("sm_90", d, dv, True) for d, dv in PAIRS] + [("sm_90", 40, 72, False), ("sm_80", 136, 96, True)]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-d{c[1]}-dv{c[2]}-{'causal' if c[3] else 'full'}")
def test_default_configs_compile_without_spills(case):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels import compile as afc

    arch, d, dv, causal = case
    for dtype in ("bf16",) + (("fp32",) if d in SIMT.head_dims and dv in SIMT.head_dims else ()):
        cfg = FORWARD.default(arch, dv_key(dtype, d, dv, causal))
        report = afc.compile_kernel(cfg).report
        assert report.spills == 0 and report.stack_frame == 0, (cfg.name, report)


def test_problem_and_reference_use_v_head_dim():
    p = Problem(2, 4, 2, 10, 20, 192, True, head_dim_v=128)
    assert p.dim_v == 128 and p.operand_strides()[2] == (2 * 20 * 128, 20 * 128, 128)
    assert p.operand_strides()[3] == (4 * 10 * 128, 10 * 128, 128)
    assert p.flops() == 2 * (192 + 128) * 2 * 4 * 10 * 20 / 2
    rng = np.random.default_rng(0)
    q, k, v = rng.standard_normal((1, 2, 5, 16)), rng.standard_normal((1, 1, 7, 16)), rng.standard_normal((1, 1, 7, 8))
    out, lse = reference_attention(q, k, v, causal=False)
    s = np.einsum("hqd,hkd->hqk", q[0], np.repeat(k[0], 2, 0)) / 4.0
    p_ = np.exp(s - s.max(-1, keepdims=True))
    assert out.shape == (1, 2, 5, 8)
    assert np.allclose(out[0], np.einsum("hqk,hkd->hqd", p_ / p_.sum(-1, keepdims=True), np.repeat(v[0], 2, 0)))


def test_api_refuses_dv_where_it_is_not_served():
    """Shape checks need no GPU: varlen/seqused_k calls keep one head dim; the message names the path."""
    from autoflash.serve import api

    def op(name, shape):
        return api.Operand(name, "cupy", None, 0, shape, "bf16", 0, strides=(shape[1] * shape[2] * shape[3],
                                                                            shape[2] * shape[3], shape[3], 1))
    q, k, v = op("q", (1, 4, 8, 192)), op("k", (1, 2, 8, 192)), op("v", (1, 2, 8, 128))
    with pytest.raises(ValueError, match="only attention\\(\\)'s forward"):
        api.check_inputs(q, k, v)
    p = api.check_inputs(q, k, v, head_dim_v_ok=True)
    assert p.head_dim_v == 128 and p.strides[3] == (4 * 8 * 128, 8 * 128, 128)
    assert api.check_inputs(q, k, op("v", (1, 2, 8, 192)), head_dim_v_ok=True).head_dim_v == 0
    with pytest.raises(ValueError, match="same shape"):
        api.check_inputs(q, k, op("v", (1, 2, 9, 128)), head_dim_v_ok=True)
