"""The backward on the CPU: template rules, NVRTC compiles with no register spills (sm_80,
sm_90), input checks, and the float64 reference gradients against finite differences."""
import re

import numpy as np
import pytest

from autoflash.kernels.config import ConfigError
from autoflash.kernels.registry import OPERATIONS, TEMPLATES
from autoflash.ops.backward import (OPERATION, TEMPLATE, BackwardConfig, BackwardProblem, TensorSpec, check_inputs)
from autoflash.ops.backward_gpu import reference_gradients
from autoflash.ops.reference import reference_attention

KERNEL_SUFFIXES = ("", "_pre", "_dq")  # main kernel, preprocess, dQ conversion


def key(dtype="bf16", head_dim=128, causal=False, deterministic=False, **flags):
    """A backward problem key; variant flags (tests/test_backward_variants.py) False unless given."""
    return dict(dtype=dtype, head_dim=head_dim, causal=causal, deterministic=deterministic,
                **{f: flags.get(f, False) for f in ("window", "softcap", "sinks", "alibi")})


def test_registered_with_the_op_contract():
    assert OPERATIONS["backward"] is OPERATION
    assert TEMPLATES["flash_bwd_mma"] is TEMPLATE


def test_rules():
    valid = [c for c in TEMPLATE.space("sm_90", key()) if not c.problems()]
    assert valid
    # 16 keys a warp (warps_q 1); 16 or 32 (warps_q 2); at D 128 with one query buffer block_m 64 spills with
    # warps_q 2 and 32 keys a warp, and with warps_q 1 (the rules say so); block_m 128 at D 128 only with
    # warps_q 2, 16 keys a warp and 8 warps (a 64-register dQ tile)
    assert {(c.block_m, c.block_n, c.warps, c.stages, c.warps_q) for c in valid} == {
        (m, n, w, s, wq) for m in (32, 64) for n in (32, 64, 128) for w in (4, 8) for s in (1, 2) for wq in (1, 2)
        if n * wq // w in ((16,) if wq == 1 else (16, 32)) and n * wq % w == 0
        and not (m == 64 and s == 1 and (wq == 1 or n * 2 // w == 32))} | {(128, 64, 8, 1, 2), (128, 64, 8, 2, 2)}
    d64_128 = {(c.block_n, c.warps, c.stages) for c in TEMPLATE.space("sm_90", key(head_dim=64))
               if c.block_m == 128 and not c.problems()}
    assert d64_128 == {(32, 4, 1), (32, 4, 2), (64, 8, 1), (64, 8, 2), (128, 8, 2)}  # FA2's D 64 tile among them
    assert TEMPLATE.config("sm_90", key(deterministic=True), block_m=64, block_n=128, warps=8, stages=2,
                           warps_q=2).problems()
    d64 = TEMPLATE.config("sm_90", key(head_dim=64), block_m=32, block_n=128, warps=8, stages=2, warps_q=2)
    assert any("16-column dQ slices" in e for e in d64.problems())
    bad = TEMPLATE.config("sm_90", key(), block_m=64, block_n=64, warps=8, stages=2)
    assert any("16 keys x warps" in e for e in bad.problems())
    for field, value in (("head_dim", 100), ("dtype", "fp32")):
        cfg = TEMPLATE.config("sm_90", {**key(), field: value}, block_m=64, block_n=64, warps=4, stages=2)
        assert cfg.problems(), (field, value)
    # D 256: only 16 keys x 128 columns of dK, dV a warp fit; the dQ tile at most 64 registers
    d256 = key(head_dim=256)
    assert any("head_dim 256 needs warps_q=2" in e for e in TEMPLATE.config(
        "sm_90", d256, block_m=64, block_n=128, warps=8, stages=2, warps_q=2).problems())
    assert any("dQ tile takes 128 registers" in e for e in TEMPLATE.config(
        "sm_90", d256, block_m=64, block_n=32, warps=4, stages=2, warps_q=2).problems())
    assert TEMPLATE.config("sm_90", d256, block_m=64, block_n=64, warps=8, stages=2, warps_q=2).problems() == []
    with pytest.raises(ConfigError):
        BackwardConfig.from_dict({**TEMPLATE.default("sm_90", key()).to_dict(), "block_m": "64"})
    with pytest.raises(ConfigError):
        BackwardConfig.from_dict({**TEMPLATE.default("sm_90", key()).to_dict(), "unrolled": 1})


@pytest.mark.parametrize("arch", ["sm_80", "sm_86", "sm_89", "sm_90"])
def test_default_fits_every_arch(arch):
    for dtype in ("bf16", "fp16"):
        for d in (64, 128, 256):
            for det in (False, True):
                if d == 256 and det and arch in ("sm_86", "sm_89"):  # 99 KB: only stages 1 fits, which spills
                    with pytest.raises(ValueError, match="no flash_bwd_mma config fits"):
                        OPERATION.default(arch, key(dtype, d, True, det))
                    continue
                cfg = OPERATION.default(arch, key(dtype, d, True, det))
                assert cfg.problems() == [] and TEMPLATE.smem_bytes(cfg) <= cfg.limits.smem_per_block


def test_work_is_two_and_a_half_forwards():
    p = dict(batch=2, heads_q=4, heads_kv=2, seq_q=100, seq_k=300, head_dim=64, causal=False)
    assert OPERATION.work(p) == 2.5 * 4 * 2 * 4 * 100 * 300 * 64
    assert OPERATION.work({**p, "causal": True}) == OPERATION.work(p) / 2


def _reports(log: str, name: str) -> dict:
    """ptxas -v lines per kernel of one module (exact names: the three share a prefix)."""
    out = {}
    for suffix in KERNEL_SUFFIXES:
        start = log.index(f"Function properties for {name}{suffix}\n")
        section = log[start:start + 400]
        out[suffix] = {f: int(re.search(p, section).group(1)) for f, p in
                       (("spills", r"(\d+) bytes spill stores"), ("stack", r"(\d+) bytes stack frame"),
                        ("registers", r"Used (\d+) registers"))}
    return out


COMPILE_CASES = [(arch, dtype, d, causal, det) for arch in ("sm_80", "sm_90") for d in (64, 128, 256)
                 for dtype, causal, det in (("bf16", False, False), ("fp16", True, False), ("bf16", True, True))]
KNOB_SWEEP = [c.to_dict() for c in TEMPLATE.space("sm_90", key()) if not c.problems()]


def _compile_and_check(cfg):
    pytest.importorskip("cupy")
    from autoflash.kernels.compile import compile_kernel

    compiled = compile_kernel(cfg, use_cache=False)
    for suffix, rep in _reports(compiled.log, cfg.name).items():
        assert rep["spills"] == 0 and rep["stack"] == 0, (cfg.name + suffix, rep)
    assert compiled.report.registers == _reports(compiled.log, cfg.name)[""]["registers"]  # main kernel's report


@pytest.mark.parametrize("arch,dtype,head_dim,causal,det", COMPILE_CASES)
def test_default_compiles_without_spills(arch, dtype, head_dim, causal, det):
    _compile_and_check(OPERATION.default(arch, key(dtype, head_dim, causal, deterministic=det)))


@pytest.mark.parametrize("cfg", KNOB_SWEEP, ids=lambda c: BackwardConfig(**c).name)
def test_every_valid_knob_compiles_without_spills(cfg):
    _compile_and_check(BackwardConfig(**cfg))


def spec(name, shape, dtype="bf16", device="cuda:0", **kw):
    return TensorSpec(name, tuple(shape), dtype, device, **kw)


def specs(b=2, hq=4, hkv=2, nq=33, nk=65, d=64, **override):
    s = dict(q=spec("q", (b, hq, nq, d)), k=spec("k", (b, hkv, nk, d)), v=spec("v", (b, hkv, nk, d)),
             out=spec("out", (b, hq, nq, d)), lse=spec("lse", (b, hq, nq), "fp32"),
             grad_out=spec("grad_out", (b, hq, nq, d)))
    s.update(override)
    return s


def test_input_checks_accept_a_good_problem():
    assert check_inputs(**specs(), causal=True) == BackwardProblem(2, 4, 2, 33, 65, 64, True)


@pytest.mark.parametrize("nq,nk,causal,alignment,offset", [
    (33, 65, True, "bottom_right", 32), (65, 33, True, "bottom_right", -32), (33, 65, True, "top_left", 0),
    (33, 65, False, "bottom_right", 0)])
def test_input_checks_give_the_forwards_causal_offset(nq, nk, causal, alignment, offset):
    p = check_inputs(**specs(nq=nq, nk=nk), causal=causal, causal_alignment=alignment)
    assert p.causal_offset == offset
    with pytest.raises(ValueError, match="causal_alignment"):
        check_inputs(**specs(), causal=True, causal_alignment="bottom-right")


@pytest.mark.parametrize("causal,alignment", [(True, "bottom_right"), (True, "top_left"), (False, "bottom_right")])
def test_launch_plan_passes_the_offset_the_kernel_declares(causal, alignment):
    """The main kernel's parameters (rendered source) are the launch plan's: 10 pointers, its tail
    (causal_offset last, 0 when not causal), then the variant tail (tests/test_backward_variants.py)."""
    from types import SimpleNamespace

    from autoflash.kernels.render import render
    from autoflash.ops.backward_gpu import BackwardLaunch

    cfg = OPERATION.default("sm_90", key(causal=causal))
    p = check_inputs(**specs(nq=40, nk=100, d=128), causal=causal, causal_alignment=alignment)
    kernel = SimpleNamespace(config=cfg, function="main", function_named=lambda s: s, smem=0)
    plan = BackwardLaunch(kernel, p, 0.1)
    assert int(plan.main_tail[-1]) == (60 if causal and alignment == "bottom_right" else 0)
    source = render(cfg)
    signature = source[source.index(f"{cfg.name}(const elem_t*"):]
    params = signature[:signature.index(")")].split(",")
    assert len(params) == 10 + len(plan.main_tail) + len(plan.variant_tail())
    assert params[9 + len(plan.main_tail)].split() == ["int", "causal_offset"]


@pytest.mark.parametrize("override,message", [
    (dict(q=spec("q", (2, 4, 33, 64), device="cpu")), "on cpu"),
    (dict(k=spec("k", (2, 2, 65, 64), device="cuda:1")), "one GPU"),
    (dict(q=spec("q", (2, 4, 33, 64), "fp32")), "no fp32 path"),
    (dict(grad_out=spec("grad_out", (2, 4, 33, 64), "fp16")), "share one dtype"),
    (dict(lse=spec("lse", (2, 4, 33), "bf16")), "lse must be float32"),
    (dict(lse=spec("lse", (2, 4, 32), "fp32")), "lse must be float32 of shape"),
    (dict(out=spec("out", (2, 4, 32, 64))), "out must have q's shape"),
    (dict(v=spec("v", (2, 2, 64, 64))), "same shape"),
    (dict(q=spec("q", (2, 3, 33, 64)), out=spec("out", (2, 3, 33, 64)), grad_out=spec("grad_out", (2, 3, 33, 64)),
          lse=spec("lse", (2, 3, 33), "fp32")), "multiple of key/value heads"),
    (dict(k=spec("k", (2, 2, 65, 32)), v=spec("v", (2, 2, 65, 32))), "differ in batch or head_dim"),
    (dict(k=spec("k", (2, 2, 65))), "4 dimensions"),
    (dict(q=spec("q", (2, 4, 33, 64), contiguous=False)), "not contiguous"),
    (dict(lse=spec("lse", (2, 4, 33), "fp32", aligned=False)), "16-byte aligned"),
])
def test_input_checks_reject(override, message):
    with pytest.raises(ValueError, match=message):
        check_inputs(**specs(**override), causal=False)


def test_input_checks_reject_unsupported_head_dim_and_empty():
    s = specs(d=100)  # (every multiple of 8 to 256 has a backward)
    assert check_inputs(**specs(d=256), causal=False).head_dim == 256
    with pytest.raises(ValueError, match="head_dim 100"):
        check_inputs(**s, causal=False)
    with pytest.raises(ValueError, match="empty"):
        check_inputs(**specs(nk=0), causal=False)


@pytest.mark.parametrize("causal,hq,hkv,nq,nk,offset", [
    (False, 2, 1, 5, 7, 0), (True, 2, 2, 6, 4, 0), (True, 3, 1, 4, 9, 0),
    (True, 2, 1, 4, 9, 5),     # bottom-right, Nq < Nk
    (True, 2, 2, 7, 4, -3)])   # bottom-right, Nq > Nk: the first 3 rows see no key (dq 0, no NaN)
def test_reference_gradients_match_finite_differences(causal, hq, hkv, nq, nk, offset):
    """The closed-form float64 gradients are those of the float64 forward (ops.reference)."""
    rng = np.random.default_rng(0)
    q, dout = rng.standard_normal((2, 1, hq, nq, 8))
    k, v = rng.standard_normal((2, 1, hkv, nk, 8))
    scale = 0.4
    out, lse, *grads = reference_gradients(q, k, v, dout, causal=causal, scale=scale, causal_offset=offset)
    ref_out, ref_lse = reference_attention(q, k, v, causal=causal, scale=scale, causal_offset=offset)
    if offset < 0:
        assert np.isneginf(lse[..., :-offset]).all() and (grads[0][..., :-offset, :] == 0).all()
    np.testing.assert_allclose(out, ref_out, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(lse, ref_lse, rtol=1e-12, atol=1e-12)

    def loss(q_, k_, v_):
        return float((reference_attention(q_, k_, v_, causal=causal, scale=scale, causal_offset=offset)[0]
                      * dout).sum())

    eps = 1e-6
    for i, (x, g) in enumerate(zip((q, k, v), grads)):
        numeric = np.zeros_like(x)
        for idx in np.ndindex(x.shape):
            args = [q, k, v]
            plus, minus = x.copy(), x.copy()
            plus[idx] += eps
            minus[idx] -= eps
            args[i] = plus
            f_plus = loss(*args)
            args[i] = minus
            numeric[idx] = (f_plus - loss(*args)) / (2 * eps)
        np.testing.assert_allclose(g, numeric, rtol=1e-5, atol=1e-7)


def test_gradient_check_handles_exactly_zero_gradients():
    """One visible key per query row (Nk = 1): dq = dk = 0 exactly; rounding noise passes, a wrong
    gradient does not (the first H200 run failed these cases on a 0-norm denominator)."""
    from autoflash.ops.backward_gpu import compare_gradients

    rng = np.random.default_rng(1)
    q, dout = rng.standard_normal((2, 1, 3, 64, 64))
    k, v = rng.standard_normal((2, 1, 1, 1, 64))
    _, _, *refs = reference_gradients(q, k, v, dout, causal=False, scale=0.125)
    assert np.linalg.norm(refs[0]) < 1e-12 and np.linalg.norm(refs[2]) > 1
    noisy = [r + 1e-7 * rng.standard_normal(r.shape) for r in refs]
    assert compare_gradients(noisy, refs, "fp16").passed
    wrong = [noisy[0] + 0.1, noisy[1], noisy[2]]
    assert not compare_gradients(wrong, refs, "bf16").passed
    nan = [noisy[0], noisy[1], noisy[2] * np.nan]
    assert not compare_gradients(nan, refs, "bf16").passed


def test_tune_backward_through_the_stand_in_runner(tmp_path, capsys):
    """`autoflash tune --op backward` end to end without a GPU: the stand-in runner's times, the
    backward's own search space (warps_q among its knobs), an entry whose config validates as a
    BackwardConfig of the tuned key, listed by show and compiled without spills by verify."""
    from autoflash import cli, store

    out_dir = tmp_path / "tuned"
    rc = cli.main(["tune", "--stand-in", "--op", "backward", "--arch", "sm_90", "--out", str(out_dir),
                   "--log", str(tmp_path / "log.json"), "--seq-len", "1024", "--trials", "4", "--dtype", "bf16",
                   "--head-dim", "64", "--causal", "yes", "--key", "deterministic=no", "--knob", "block_m=64",
                   "--knob", "warps=8"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "backward bf16 64 True False" in out and "1 entry merged" in out
    (entry,) = store.read(out_dir / "sm_90.json")
    cfg = BackwardConfig.from_dict(entry["config"])
    assert entry["op"] == "backward" and OPERATION.key_of(cfg) == key("bf16", 64, True, False)
    assert (cfg.block_m, cfg.warps) == (64, 8) and cfg.warps_q in (1, 2)
    assert cli.main(["show", "--dir", str(out_dir)]) == 0
    assert cfg.name in capsys.readouterr().out
    assert cli.main(["verify", "--compile-only", "--arch", "sm_90", "--dir", str(out_dir)]) == 0
    assert "1/1 sm_90 configs compiled: all pass" in capsys.readouterr().out


def test_check_problems_cover_bottom_right_for_causal_keys():
    """The tuner verifies a causal backward key on bottom-right problems too (both ways); the launch
    plan of each passes its offset."""
    causal = OPERATION.check_problems(key(causal=True))
    offsets = sorted(BackwardProblem.from_dict(p).causal_offset for p in causal)
    assert offsets[0] < 0 < offsets[-1]
    assert all(BackwardProblem.from_dict(p).causal_offset == 0 for p in OPERATION.check_problems(key()))


def test_attention_backward_serves_the_tuned_entries(monkeypatch):
    """attention_backward's config (no config given): the flash_bwd_mma entry tuned for the key and length
    (tuned_configs/sm_90.json holds H200 ones), else the heuristic default; no GPU needed to choose."""
    from autoflash.serve import autograd

    monkeypatch.setattr(autograd, "device_arch", lambda device: ("sm_90", "NVIDIA H200"))
    if hasattr(autograd, "serving_config"):  # another template's serving rule has its own tests; here flash_bwd_mma's
        monkeypatch.setattr(autograd, "serving_config", lambda arch, k: None)
    d64 = autograd._served_config(0, key(head_dim=64), 4096)
    assert (d64.template, d64.block_m, d64.block_n, d64.warps_q) == ("flash_bwd_mma", 128, 128, 2)
    assert autograd._served_config(0, key(head_dim=64), 5000) == d64  # the nearest bucket (4096)
    d128_causal = key(head_dim=128, causal=True)  # no entry (the H200 tuner pruned its default: spills at NVRTC 13.0)
    assert autograd._served_config(0, d128_causal, 4096) == TEMPLATE.default("sm_90", d128_causal)
