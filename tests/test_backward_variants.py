"""The backward's attention variants (issue 17) on the CPU: the float64 reference gradients of
window, softcap, ALiBi and sinks (dsinks included) against finite differences of the float64
forward; config names and problem keys; every flag combination rendered and compiled (sm_80,
sm_90) without spills; the launch plan's variant tail and sink kernel. GPU checks of the kernels:
tests/test_backward_variants_gpu.py."""
import itertools
import re
from types import SimpleNamespace

import numpy as np
import pytest

from autoflash.key_flags import with_new_flags
from autoflash.kernels.render import render
from autoflash.ops.backward import OPERATION, BackwardConfig, BackwardProblem, check_inputs
from autoflash.ops.backward_gpu import BackwardLaunch, compare_sink_gradient, reference_gradients, sink_terms_norm
from autoflash.ops.reference import reference_attention

FLAGS = ("window", "softcap", "sinks", "alibi")
COMBOS = [dict(zip(FLAGS, bits)) for bits in itertools.product((False, True), repeat=4)]


def key(dtype="bf16", head_dim=128, causal=False, deterministic=False, **flags):
    return dict(dtype=dtype, head_dim=head_dim, causal=causal, deterministic=deterministic,
                **{f: flags.get(f, False) for f in FLAGS})


# ---------------------------------------------------------------- float64 reference gradients
# (causal, offset, window, softcap, scale, sinks, alibi per batch?) on tiny shapes: each variant
# alone, large logits under softcap, sinks -inf / large, rows with no key, and all together.
FD_CASES = {
    "window_two_sided": (False, 0, (2, 1), 0.0, 0.4, None, None),
    "window_left_causal_bottom_right": (True, 3, (1, -1), 0.0, 0.4, None, None),
    "window_zero_rows_without_key": (True, -2, (0, 0), 0.0, 0.4, None, None),
    "softcap": (False, 0, (-1, -1), 1.5, 0.6, None, None),
    "softcap_large_logits": (True, 0, (-1, -1), 2.0, 3.0, None, None),
    "alibi_per_head": (False, 2, (-1, -1), 0.0, 0.4, None, "head"),
    "alibi_per_batch_causal": (True, 0, (-1, -1), 0.0, 0.4, None, "batch"),
    "sinks": (False, 0, (-1, -1), 0.0, 0.4, [0.3, -1.0], None),
    "sinks_inf_and_large": (True, -2, (-1, -1), 0.0, 0.4, [-np.inf, 4.0], None),
    "all_four_bottom_right": (True, 2, (2, 0), 1.5, 0.6, [0.5, -0.5], "batch"),
    "all_four_no_causal": (False, -1, (1, 2), 3.0, 0.8, [1.0, 0.0], "head"),
}


@pytest.mark.parametrize("case", FD_CASES, ids=list(FD_CASES))
def test_reference_gradients_match_finite_differences(case):
    """The closed-form float64 gradients (ops/backward_gpu.reference_gradients) are those of the
    float64 forward (ops/reference.reference_attention), sinks' gradient included."""
    causal, offset, window, softcap, scale, sinks, alibi = FD_CASES[case]
    rng = np.random.default_rng(7)
    b, hq, hkv, nq, nk, d = 2, 2, 1, 5, 6, 4
    q, dout = rng.standard_normal((2, b, hq, nq, d))
    k, v = rng.standard_normal((2, b, hkv, nk, d))
    sinks = None if sinks is None else np.array(sinks)
    slopes = {None: None, "head": np.array([0.5, 0.25]), "batch": np.array([[0.5, 0.25], [0.3, 0.7]])}[alibi]
    kw = dict(causal=causal, scale=scale, causal_offset=offset, window=window, softcap=softcap, alibi_slopes=slopes)
    out, lse, *grads = reference_gradients(q, k, v, dout, sinks=sinks, **kw)
    ref_out, ref_lse = reference_attention(q, k, v, sinks=sinks, **kw)
    np.testing.assert_allclose(out, ref_out, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(np.isneginf(lse), np.isneginf(ref_lse))
    np.testing.assert_allclose(lse[np.isfinite(lse)], ref_lse[np.isfinite(ref_lse)], rtol=1e-12, atol=1e-12)
    assert (sinks is None) == (len(grads) == 3)

    def loss(q_, k_, v_, sinks_):
        return float((reference_attention(q_, k_, v_, sinks=sinks_, **kw)[0] * dout).sum())

    eps = 1e-6
    args = [q, k, v, sinks]
    for i, g in enumerate(grads):
        x = args[i]
        numeric = np.zeros_like(x)
        for idx in np.ndindex(x.shape):
            if not np.isfinite(x[idx]):  # a -inf sink: no gradient (it adds e^-inf = 0)
                continue
            plus, minus = list(args), list(args)
            plus[i], minus[i] = x.copy(), x.copy()
            plus[i][idx] += eps
            minus[i][idx] -= eps
            numeric[idx] = (loss(*plus) - loss(*minus)) / (2 * eps)
        np.testing.assert_allclose(g, numeric, rtol=1e-5, atol=1e-7, err_msg=("dq", "dk", "dv", "dsinks")[i])
    if causal and offset < 0:  # rows before the first diagonal key see nothing: dq 0
        assert (grads[0][..., :-offset, :] == 0).all()


def test_sink_gradient_is_minus_sum_of_sink_probability_times_delta():
    """dsink_h = -sum_{b,i} e^(sink_h - LSE_i) delta_i, delta = rowsum(dO * O): the closed form the
    sink kernel computes from the backward's own lse2 and delta."""
    rng = np.random.default_rng(3)
    q, dout = rng.standard_normal((2, 2, 3, 7, 8))
    k, v = rng.standard_normal((2, 2, 3, 9, 8))
    sinks = np.array([0.2, -0.7, 1.5])
    out, lse, *_, dsinks = reference_gradients(q, k, v, dout, causal=False, scale=0.3, sinks=sinks)
    delta = (dout * out).sum(-1)
    np.testing.assert_allclose(dsinks, -(np.exp(sinks[None, :, None] - lse) * delta).sum((0, 2)), rtol=1e-12)
    norm = sink_terms_norm(lse, delta, sinks)
    assert norm >= np.linalg.norm(dsinks)
    assert compare_sink_gradient(dsinks + 1e-7, dsinks, norm, "fp16").passed
    assert not compare_sink_gradient(dsinks * 1.1, dsinks, norm, "bf16").passed
    assert not compare_sink_gradient(dsinks * np.nan, dsinks, norm, "bf16").passed


# ---------------------------------------------------------------- configs, keys, problems
def test_flags_are_config_and_key_fields_and_plain_names_are_unchanged():
    assert OPERATION.key_fields == ("head_dim", "causal", "deterministic") + FLAGS
    plain = OPERATION.default("sm_90", key())
    assert plain.name == "flash_bwd_mma_sm_90_bf16_d128_bm64_bn128_w8_s2_wq2"
    names = {OPERATION.default("sm_90", key(**c)).name for c in COMBOS}
    assert len(names) == 16
    every = OPERATION.default("sm_90", key(causal=True, **dict.fromkeys(FLAGS, True)))
    assert every.name == plain.name + "_causal_window_softcap_sinks_alibi"
    assert OPERATION.key_of(every) == key(causal=True, **dict.fromkeys(FLAGS, True))
    assert BackwardConfig.from_dict(every.to_dict()) == every
    assert OPERATION.key_defaults == dict.fromkeys(FLAGS, (False,))


def test_old_entries_without_the_flags_read_as_plain():
    entry = {"op": "backward", "dtype": "bf16", "head_dim": 64, "causal": True, "deterministic": False}
    assert with_new_flags(entry) == {**entry, **dict.fromkeys(FLAGS, False)}
    cfg = OPERATION.default("sm_90", key(head_dim=64, causal=True)).to_dict()
    old = {f: v for f, v in cfg.items() if f not in FLAGS}
    assert BackwardConfig.from_dict(old) == BackwardConfig.from_dict(cfg)


@pytest.mark.parametrize("causal", [False, True])
def test_check_problems_of_a_variant_key_carry_its_values(causal):
    k = key(head_dim=64, causal=causal, **dict.fromkeys(FLAGS, True))
    problems = OPERATION.check_problems(k)
    assert len(problems) == len(OPERATION.check_problems(key(head_dim=64, causal=causal))) + 1
    for p in problems:
        bp = BackwardProblem.from_dict(p)
        assert bp.window_left >= 0 and bp.softcap > 0 and p["with_sinks"] and p["with_alibi"]
        assert bp.window_right == (0 if causal else bp.window_right)
    assert any(p["alibi_per_batch"] for p in problems) and any(p.get("causal_offset", 0) > 0 for p in problems)
    assert all("window_left" not in p and "with_sinks" not in p for p in OPERATION.check_problems(key()))
    bench = OPERATION.bench_problem(k, 4096, 1 << 20)
    assert bench["window_left"] == 1024 and bench["softcap"] == 30.0
    # work counts the visible pairs of the window (the forward's rule), 2.5x
    assert OPERATION.work(bench) < OPERATION.work({**bench, "window_left": -1, "window_right": -1})


def spec(name, shape, dtype="bf16"):
    from autoflash.ops.backward import TensorSpec

    return TensorSpec(name, tuple(shape), dtype, "cuda:0")


def specs(b=2, hq=4, hkv=2, nq=40, nk=100, d=128):
    return [spec("q", (b, hq, nq, d)), spec("k", (b, hkv, nk, d)), spec("v", (b, hkv, nk, d)),
            spec("out", (b, hq, nq, d)), spec("lse", (b, hq, nq), "fp32"), spec("grad_out", (b, hq, nq, d))]


@pytest.mark.parametrize("causal,window,stride,offset", [
    (False, (-1, -1), -1, 0),      # plain non-causal: top-left diagonal, whatever the alignment
    (False, (8, 8), -1, 60),       # window: the diagonal follows the alignment, causal or not
    (False, (-1, -1), 4, 60),      # ALiBi too
    (True, (8, 0), 0, 60)])
def test_check_inputs_set_the_variant_fields_and_the_diagonal(causal, window, stride, offset):
    p = check_inputs(*specs(), causal, "bottom_right", window=window, softcap=30.0, alibi_batch_stride=stride)
    assert (p.window_left, p.window_right, p.softcap) == (*window, 30.0)
    assert p.causal_offset == offset and p.alibi_batch_stride == max(stride, 0)


# ---------------------------------------------------------------- launch plan
class FakeFunction:
    def __init__(self, name, calls):
        self.name, self.calls = name, calls

    def __call__(self, grid, block, args, **kw):
        self.calls.append((self.name, grid, args))


def plan_for(flags, causal=True, window=(16, 0), softcap=30.0, stride=0):
    cfg = OPERATION.default("sm_90", key(causal=causal, **flags))
    p = check_inputs(*specs(), causal, "bottom_right", window=window if flags.get("window") else (-1, -1),
                     softcap=softcap if flags.get("softcap") else 0.0,
                     alibi_batch_stride=stride if flags.get("alibi") else -1)
    calls = []
    kernel = SimpleNamespace(config=cfg, function=FakeFunction("main", calls), smem=0,
                             function_named=lambda s: FakeFunction(s, calls))
    return cfg, BackwardLaunch(kernel, p, 0.1), calls


@pytest.mark.parametrize("flags", [dict.fromkeys(FLAGS, True), dict(sinks=True), dict(window=True, alibi=True), {}],
                         ids=["all", "sinks", "window_alibi", "plain"])
def test_launch_plan_passes_the_variant_tail_the_kernel_declares(flags):
    """The main kernel's parameters (rendered source) end with the forward's variant tail less its
    varlen pointers; the plan passes them in that order; a sinks kernel's module has <name>_sink,
    launched between the preprocess and the main kernel with sinks and dsinks."""
    cfg, plan, calls = plan_for(flags)
    source = render(cfg)
    signature = source[source.index(f"{cfg.name}(const elem_t*"):]
    params = [" ".join(x.split()) for x in signature[:signature.index(")")].split(",")]
    assert [x.split()[-1] for x in params[-6:]] == ["window_left", "window_right", "softcap", "sinks", "alibi_slopes",
                                                   "alibi_batch_stride"]
    assert len(params) == 10 + len(plan.main_tail) + len(plan.variant_tail())
    plan(*range(1, 11), stream=None, sinks=111, alibi_slopes=222, dsinks=333)
    names = [c[0] for c in calls]
    assert names == (["_pre", "_sink", "main", "_dq"] if flags.get("sinks") else ["_pre", "main", "_dq"])
    main_args = calls[names.index("main")][2]
    assert [float(x) for x in main_args[-6:]] == [16 if flags.get("window") else -1, 0 if flags.get("window") else -1,
                                                  30.0 if flags.get("softcap") else 0.0, 111, 222, 0]
    assert int(plan.main_tail[-1]) == 60  # bottom-right causal
    if flags.get("sinks"):
        assert f"{cfg.name}_sink(" in source
        sink_args = calls[1][2]
        assert calls[1][1] == (4, 1, 1) and [int(x) for x in sink_args[2:4]] == [111, 333]
    else:
        assert f"{cfg.name}_sink(" not in source


def test_launch_plan_refuses_missing_pointers_and_a_mismatched_problem():
    _, plan, _ = plan_for(dict(sinks=True, alibi=True))
    with pytest.raises(ValueError, match="sinks and dsinks"):
        plan(*range(1, 11), stream=None, alibi_slopes=5)
    _, plan, _ = plan_for(dict(alibi=True))
    with pytest.raises(ValueError, match="alibi_slopes"):
        plan(*range(1, 11), stream=None)
    with pytest.raises(ValueError, match="cannot run window"):
        cfg = OPERATION.default("sm_90", key(causal=True, window=True))
        BackwardLaunch(SimpleNamespace(config=cfg, function=None, smem=0, function_named=lambda s: None),
                       check_inputs(*specs(), True), 0.1)


# ---------------------------------------------------------------- templates: render, compile
def test_plain_source_has_no_variant_code():
    """No flag: the variant code is not rendered at all (only the unused tail parameters and
    constexpr false flags), so plain kernels compile to the same registers as before (ptxas
    comparison before/after in the commit message)."""
    for k in (key(), key(head_dim=64, causal=True), key(head_dim=256, deterministic=True)):
        cfg = OPERATION.default("sm_80", k)
        source = render(cfg)
        for word in ("win_s", "slope2", "dcap", f"{cfg.name}_sink(", "cap_out *"):
            assert word not in source, word
    cfg = OPERATION.default("sm_80", key(causal=True, **dict.fromkeys(FLAGS, True)))
    every = render(cfg)
    for word in ("win_s", "slope2", "dcap", f"{cfg.name}_sink(", "constexpr bool SOFTCAP = true"):
        assert word in every, word


def _reports(log: str, name: str, suffixes) -> dict:
    out = {}
    for suffix in suffixes:
        start = log.index(f"Function properties for {name}{suffix}\n")
        section = log[start:start + 400]
        out[suffix] = {f: int(re.search(p, section).group(1)) for f, p in
                       (("spills", r"(\d+) bytes spill stores"), ("stack", r"(\d+) bytes stack frame"))}
    return out


# Every flag combination on each arch (head dim, causality and dtype rotating through them), and
# all four flags on every head dim both ways, deterministic too.
COMPILE_CASES = [(arch, ("bf16", "fp16")[i % 2], (64, 128, 256)[i % 3], bool(i & 4), False, i)
                 for arch in ("sm_80", "sm_90") for i in range(16)]
COMPILE_CASES += [(arch, "bf16", d, causal, det, 15) for arch in ("sm_80", "sm_90") for d in (64, 128, 256)
                  for causal, det in ((False, False), (True, False), (True, True))]


@pytest.mark.parametrize("arch,dtype,head_dim,causal,det,combo", COMPILE_CASES,
                         ids=[f"{a}-{t}-d{d}-{'c' if c else 'nc'}{'-det' if det else ''}-"
                              + ("".join(f[0] for f in FLAGS if COMBOS[i][f]) or "plain")
                              for a, t, d, c, det, i in COMPILE_CASES])
def test_variant_configs_compile_without_spills(arch, dtype, head_dim, causal, det, combo):
    pytest.importorskip("cupy")
    from autoflash.kernels.compile import compile_kernel

    cfg = OPERATION.default(arch, key(dtype, head_dim, causal, det, **COMBOS[combo]))
    compiled = compile_kernel(cfg, use_cache=False)
    suffixes = ("", "_pre", "_dq") + (("_sink",) if cfg.sinks else ())
    for suffix, rep in _reports(compiled.log, cfg.name, suffixes).items():
        assert rep["spills"] == 0 and rep["stack"] == 0, (cfg.name + suffix, rep)
