"""Attention variants (issue 17) on the CPU: the float64 reference against a naive per-element loop
written from the rules, the check's handling of rows without a key, config names and problem keys,
old tuned entries read with the flags off, the kernel-argument tail, the forward's variant check
problems, routing, and the API's refusals of bad values (before anything launches)."""
import itertools
import json
import math

import numpy as np
import pytest

from autoflash import store
from autoflash.kernels.registry import TEMPLATES
from autoflash.ops.forward import FORWARD, variant_arrays
from autoflash.ops.forward_base import BOTTOM_RIGHT_PER_SEQUENCE, VARIANT_FLAGS, Problem, variant_tail
from autoflash.ops.reference import compare, reference_attention, visible_keys
from autoflash.serve import dispatch
from autoflash.serve.errors import InputError
from autoflash.serve.routing import route_attention
from autoflash.serve.variants import check_variants
from autoflash.tuning.keys import StudyKey
from conftest import fwd_key as K


def naive_attention(q, k, v, *, causal, scale, offset=0, window=(-1, -1), softcap=0.0, sinks=None, slopes=None):
    """One (batch, head, row) at a time, each rule as issue 17 / the contract states it."""
    b, hq, nq, d = q.shape
    hkv, nk = k.shape[1], k.shape[2]
    out, lse = np.zeros((b, hq, nq, d)), np.full((b, hq, nq), -math.inf)
    for bi, h, i in itertools.product(range(b), range(hq), range(nq)):
        kh = h // (hq // hkv)
        diag = i + offset
        terms, values = [], []
        for j in range(nk):
            if causal and j > diag:
                continue
            if window[0] >= 0 and j < diag - window[0]:
                continue
            if window[1] >= 0 and j > diag + window[1]:
                continue
            s = scale * float(q[bi, h, i] @ k[bi, kh, j])
            if softcap > 0:
                s = softcap * math.tanh(s / softcap)
            if slopes is not None:
                slope = slopes[h] if np.ndim(slopes) == 1 else slopes[bi, h]
                s -= slope * abs(diag - j)
            terms.append(s)
            values.append(v[bi, kh, j])
        sink = -math.inf if sinks is None else float(sinks[h])
        if not terms and sink == -math.inf:
            continue  # no key: 0 and -inf
        m = max(terms + [sink])
        weights = [math.exp(t - m) for t in terms]
        denom = sum(weights) + math.exp(sink - m)
        out[bi, h, i] = sum(w * x for w, x in zip(weights, values)) / denom if terms else 0.0
        lse[bi, h, i] = m + math.log(denom)
    return out, lse


CASES = [  # (name, kwargs) each rule alone and combined, with causal offsets both ways
    ("plain", {}),
    ("causal_top_left", dict(causal=True)),
    ("causal_bottom_right", dict(causal=True, offset=4)),
    ("causal_rows_without_key", dict(causal=True, offset=-3)),
    ("window_left", dict(window=(2, -1))),
    ("window_both", dict(window=(1, 2), offset=4)),
    ("window_zero", dict(window=(0, 0))),
    ("window_causal", dict(causal=True, window=(3, 0), offset=4)),
    ("softcap", dict(softcap=0.7)),
    ("sinks", dict(sinks=np.array([0.3, -1.0, 2.0, -math.inf]))),
    ("sinks_no_key", dict(causal=True, offset=-3, sinks=np.array([0.3, -1.0, 2.0, -math.inf]))),
    ("alibi_per_head", dict(slopes=np.array([0.5, 0.25, 0.125, 0.0625]))),
    ("alibi_per_batch", dict(slopes=np.array([[0.5, 0.25, 0.125, 0.0625], [1.0, 0.5, 0.25, 0.1]]), offset=4)),
    ("all", dict(causal=True, offset=4, window=(3, 0), softcap=0.9, sinks=np.array([0.3, -1.0, 2.0, 0.0]),
                 slopes=np.array([0.5, 0.25, 0.125, 0.0625]))),
]


@pytest.mark.parametrize("name,kw", CASES, ids=[c[0] for c in CASES])
def test_reference_applies_each_rule_literally(name, kw):
    rng = np.random.default_rng(5)
    nq, nk = 5, 9 if kw.get("offset", 0) >= 0 else 2  # a negative offset: the first rows see no key
    q = rng.standard_normal((2, 4, nq, 8)) * 2  # large enough that softcap bends scores
    k, v = rng.standard_normal((2, 2, nk, 8)), rng.standard_normal((2, 2, nk, 8))
    want, want_lse = naive_attention(q, k, v, scale=0.5, causal=kw.get("causal", False), offset=kw.get("offset", 0),
                                     window=kw.get("window", (-1, -1)), softcap=kw.get("softcap", 0.0),
                                     sinks=kw.get("sinks"), slopes=kw.get("slopes"))
    got, lse = reference_attention(q, k, v, causal=kw.get("causal", False), scale=0.5,
                                   causal_offset=kw.get("offset", 0), window=kw.get("window", (-1, -1)),
                                   softcap=kw.get("softcap", 0.0), sinks=kw.get("sinks"),
                                   alibi_slopes=kw.get("slopes"), chunk=2)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert np.array_equal(np.isneginf(lse), np.isneginf(want_lse))
    finite = np.isfinite(want_lse)
    np.testing.assert_allclose(lse[finite], want_lse[finite], rtol=1e-12, atol=1e-12)


def test_reference_rows_without_key_and_sink_only_rows():
    q = np.ones((1, 2, 4, 8))
    k = v = np.ones((1, 1, 2, 8))
    out, lse = reference_attention(q, k, v, causal=True, causal_offset=-2, sinks=np.array([1.5, -math.inf]))
    assert np.all(out[0, :, :2] == 0) and np.all(lse[0, 0, :2] == 1.5) and np.all(np.isneginf(lse[0, 1, :2]))
    big = reference_attention(q, k, v, causal=False, sinks=np.array([60.0, 60.0]))
    assert np.all(np.abs(big[0]) < 1e-20) and np.allclose(big[1], 60.0)  # a large sink takes all the mass


def test_compare_requires_exact_zero_and_minus_inf_where_no_key_is_visible():
    ref, ref_lse = np.zeros((1, 1, 2, 4)), np.array([[[-math.inf, 0.5]]])
    ref[0, 0, 1] = 1.0
    assert compare(ref.copy(), ref, "fp32", ref_lse.copy(), ref_lse).passed
    lse = ref_lse.copy()
    lse[0, 0, 0] = -80.0  # finite where the row has no key
    assert not compare(ref.copy(), ref, "fp32", lse, ref_lse).passed
    out = ref.copy()
    out[0, 0, 0, 0] = 1e-6  # a row without a key must be exactly 0
    assert not compare(out, ref, "fp32", ref_lse.copy(), ref_lse).passed


# ------------------------------------------------------------ configs, keys, store
def test_plain_config_names_unchanged_and_flags_name_their_variant():
    base = TEMPLATES["flash_fwd_mma"].default("sm_90", K("bf16", 128, True))
    assert base.name == "flash_fwd_mma_sm_90_bf16_d128_br128_bc32_w4_s1_causal"
    names = set()
    for combo in itertools.product((False, True), repeat=4):
        cfg = base.replace(**dict(zip(VARIANT_FLAGS, combo)))
        names.add(cfg.name)
        assert all((f"_{f}" in cfg.name) == on for f, on in zip(VARIANT_FLAGS, combo))
    assert len(names) == 16


def test_forward_key_has_the_flags_and_tunes_plain_by_default():
    assert FORWARD.key_fields == ("head_dim", "causal", "window", "softcap", "sinks", "alibi", "head_dim_v")
    assert all(FORWARD.key_defaults[f] == (False,) for f in VARIANT_FLAGS)
    key = {**K("bf16", 128, True), "window": True, "sinks": True}
    assert FORWARD.describe_key(key) == "bf16 d128 causal window sinks"
    plain = StudyKey.of("forward", "sm_90", "GPU", None, **K("bf16", 128, False))
    assert plain.params["window"] is False and "|False|False|False|False" not in plain.study_name((1024,), 1)
    assert "True" in StudyKey.of("forward", "sm_90", "GPU", None, **key).study_name((1024,), 1)


def _entry(flags: dict, bucket=4096, ms=1.0):
    cfg = TEMPLATES["flash_fwd_simt"].default("sm_90", K("fp32", 64, False)).replace(**flags)
    entry = {"op": "forward", "device": "GPU", "template": None, "dtype": "fp32", "head_dim": 64, "causal": False,
             **{f: getattr(cfg, f) for f in VARIANT_FLAGS}, "seq_bucket": bucket, "config": cfg.to_dict(),
             "problem": {"batch": 2, "heads": 16, "seq": bucket}, "ms": ms, "tflops": 12.5, "max_rel_error": 1e-6,
             "trials": {"run": 1, "complete": 1, "pruned": 0, "failed": 0}, "spread": 0.01,
             "finalists": [{"name": cfg.name, "ms": ms}], "default_ms": 1.5, "nvrtc": "13.0", "driver": "13.0",
             "autoflash": "0.1.0", "date": "2026-11-25T05:00:00Z"}
    return entry


def test_old_entries_without_flags_read_as_plain(tmp_path):
    old = _entry({})
    for f in VARIANT_FLAGS:
        del old[f]  # as written before the variants existed
        del old["config"][f]
    path = tmp_path / "sm_90.json"
    path.write_text(json.dumps({"schema": 2, "arch": "sm_90", "entries": [old, _entry({"window": True})]}))
    entries = store.read(path)
    assert [e["window"] for e in entries] == [False, True] and entries[0]["sinks"] is False
    plain, _ = store.lookup(entries, "GPU", "forward", K("fp32", 64, False), 4096)  # a key without the flags
    assert plain is entries[0]
    win, _ = store.lookup(entries, "GPU", "forward", {**K("fp32", 64, False), "window": True}, 4096)
    assert win is entries[1]
    none, how = store.lookup(entries, "GPU", "forward", {**K("fp32", 64, False), "softcap": True}, 4096)
    assert none is None and how == "no tuned entry"
    store.write(path, entries)
    assert store.read(path) == entries


def test_tune_command_names_only_variant_flags_that_are_on():
    plain = dispatch.tune_command("sm_90", "forward", {**K("bf16", 128, True), **{f: False for f in VARIANT_FLAGS}})
    assert plain == "autoflash tune --arch sm_90 --dtype bf16 --head-dim 128 --causal yes"
    on = dispatch.tune_command("sm_90", "forward", {**K("bf16", 128, True), "window": True, "sinks": False})
    assert on.endswith("--causal yes --key window=yes")


# ------------------------------------------------------------ problems and arguments
def test_variant_tail_order_and_types():
    p = Problem(1, 2, 1, 10, 20, 64, True, cu_seqlens_q=1, cu_seqlens_k=2, seqused_k=3, window_left=4,
                window_right=5, softcap=6.5, sinks=7, alibi_slopes=8, alibi_batch_stride=9)
    tail = variant_tail(p)
    assert [type(x) for x in tail] == [np.uint64] * 3 + [np.int32] * 2 + [np.float32] + [np.uint64] * 2 + [np.int32]
    assert [float(x) for x in tail] == [1, 2, 3, 4, 5, 6.5, 7, 8, 9]
    assert [float(x) for x in variant_tail(Problem(1, 1, 1, 1, 1, 64, False))] == [0, 0, 0, -1, -1, 0, 0, 0, 0]
    assert BOTTOM_RIGHT_PER_SEQUENCE == 1 << 30


@pytest.mark.parametrize("nq,nk,causal,offset,window", [
    (100, 100, False, 0, (10, 5)), (64, 300, True, 236, (50, 0)), (300, 64, True, -236, (7, 0)),
    (50, 50, False, 0, (0, 0)), (37, 91, False, 54, (-1, 3)), (20, 20, True, 0, (-1, -1))])
def test_visible_pairs_counts_the_mask(nq, nk, causal, offset, window):
    p = Problem(1, 1, 1, nq, nk, 64, causal, causal_offset=offset, window_left=window[0], window_right=window[1])
    visible = visible_keys(np.arange(nq)[:, None] + offset, np.arange(nk)[None, :], causal=causal, window=window)
    assert p.visible_pairs() == int(visible.sum())
    if window != (-1, -1):
        assert p.flops() == 4.0 * 64 * visible.sum()


@pytest.mark.parametrize("flag", VARIANT_FLAGS)
@pytest.mark.parametrize("causal", [False, True])
def test_check_problems_exercise_each_flag(flag, causal):
    key = {**K("bf16", 128, causal), **{f: f == flag for f in VARIANT_FLAGS}}
    problems = FORWARD.check_problems(key)
    assert any(p["seq_q"] != p["seq_k"] and p["causal_offset"] == p["seq_k"] - p["seq_q"] for p in problems)
    for i, d in enumerate(problems):
        p = FORWARD.problem(d)
        arrays = variant_arrays(d, seed=i)
        needs = p.variant_flags() | {"sinks": "sinks" in arrays, "alibi": "alibi_slopes" in arrays}
        assert needs == {f: f == flag for f in VARIANT_FLAGS}, (d, needs)
        if flag == "window" and causal:
            assert p.window_right == 0 and p.window_left > 0
    for d in FORWARD.verify_problems(key, 4096) + [FORWARD.bench_problem(key, 4096, 131072)]:
        assert FORWARD.problem(d).variant_flags()[flag] or variant_arrays(d, 0)
    plain = FORWARD.check_problems(K("bf16", 128, causal))  # plain keys: the problems of before
    assert all(set(d) == {"batch", "heads_q", "heads_kv", "seq_q", "seq_k", "head_dim", "causal"} for d in plain)


def test_variant_arrays_values():
    d = {**FORWARD.check_problems({**K("bf16", 64, False), "sinks": True, "alibi": True})[1]}
    arrays = variant_arrays(d, seed=3)
    assert arrays["sinks"].shape == (d["heads_q"],) and arrays["sinks"].dtype == np.float32
    assert arrays["alibi_slopes"].shape == (d["batch"], d["heads_q"])  # the second problem: per (batch, head)
    np.testing.assert_allclose(arrays["alibi_slopes"][0], 2.0 ** (-8.0 * np.arange(1, d["heads_q"] + 1) / d["heads_q"]))


# ------------------------------------------------------------ API checks (no GPU needed)
class FakeTensor:
    """What check_variants reads of a torch tensor, without torch."""
    __module__ = "torch"

    def __init__(self, shape, dtype="torch.float32", device=0, contiguous=True, cuda=True):
        self.shape, self.dtype, self._device, self._contiguous, self.is_cuda = shape, dtype, device, contiguous, cuda
        self.device = f"cuda:{device}" if cuda else "cpu"

    def get_device(self):
        return self._device if self.is_cuda else -1

    def is_contiguous(self):
        return self._contiguous

    def data_ptr(self):
        return 4096


def variants(**kw):
    return check_variants(**{"causal": False, "kind": "torch", "device": 0, "batch": 2, "heads_q": 4, **kw})


@pytest.mark.parametrize("window,fragment", [
    ((-2, 0), "window_size left must be an int >= -1"), ((0, -5), "window_size right"), ((1.5, 0), "int >= -1"),
    ((True, 0), "int >= -1"), (5, "pair"), ((1, 2, 3), "pair"), ((2**31, 0), "32-bit")])
def test_bad_windows_refused(window, fragment):
    with pytest.raises(InputError, match=fragment.replace("(", r"\(")):
        variants(window_size=window)


@pytest.mark.parametrize("softcap", [0, 0.0, -1.0, math.inf, math.nan, True, "30"])
def test_bad_softcaps_refused(softcap):
    with pytest.raises(InputError, match="softcap must be a finite number > 0"):
        variants(softcap=softcap)


@pytest.mark.parametrize("name", ["sinks", "alibi_slopes"])
@pytest.mark.parametrize("bad,fragment", [
    (FakeTensor((3,)), "must have shape"), (FakeTensor((4,), dtype="torch.float16"), "must be float32"),
    (FakeTensor((4,), device=1), "q's device"), (FakeTensor((4,), cuda=False), "q's device"),
    (FakeTensor((4,), contiguous=False), "contiguous"), (np.zeros(4, np.float32), "device array like q")])
def test_bad_sinks_and_slopes_refused(name, bad, fragment):
    with pytest.raises(InputError, match=fragment):
        variants(**{name: bad})


def test_slopes_shapes_and_causal_window():
    assert variants(alibi_slopes=FakeTensor((4,))).alibi_batch_stride == 0
    assert variants(alibi_slopes=FakeTensor((2, 4))).alibi_batch_stride == 4
    with pytest.raises(InputError, match="shape"):
        variants(sinks=FakeTensor((2, 4)))  # sinks are per head only
    v = variants(window_size=(64, 32), causal=True)
    assert (v.window_left, v.window_right) == (64, 0)  # causal forces the right bound to 0
    assert not variants(window_size=(-1, 32), causal=True).any  # that is plain causal
    v = variants(window_size=(8, -1), softcap=30, sinks=FakeTensor((4,)), alibi_slopes=FakeTensor((4,)))
    assert v.flags() == {f: True for f in VARIANT_FLAGS} and v.names() == ["window_size", "softcap", "sinks",
                                                                          "alibi_slopes"]
    p = Problem(2, 4, 2, 10, 10, 64, False)
    assert v.apply(p) is v
    assert p.variant_flags() == v.flags() and p.softcap == 30.0 and p.sinks == p.alibi_slopes == 4096


def test_variant_calls_reach_decode_only_where_its_diagonal_agrees():
    shape = dict(kind="torch", dtype="bf16", arch="sm_90", batch=1, heads_q=8, heads_kv=2, seq_q=1, seq_k=4096,
                 head_dim=128, causal=False)
    assert route_attention(**shape).op == "decode"
    for names in (("window_size",), ("alibi_slopes", "sinks"), ("softcap",)):
        assert route_attention(**shape, causal_alignment="bottom_right", variants=names).op == "decode"
    assert route_attention(**shape, variants=("softcap", "sinks")).op == "decode"  # no diagonal involved
    route = route_attention(**shape, variants=("window_size",))  # top-left window, seq_q != seq_k
    assert route.op == "forward" and "window_size" in route.reason and "bottom-right" in route.reason


# ------------------------------------------------------------ attention()'s host path, faked GPU
class FakeCupyArray:
    """What as_operand and check_variants read of a CuPy array (no GPU): shape, dtype, strides, pointer."""
    __module__ = "cupy._core.core"

    def __init__(self, shape, dtype="float16", ptr=1 << 20, itemsize=2, strides=None):
        import types
        self.shape, self.dtype, self.itemsize = tuple(shape), dtype, itemsize
        contiguous = [int(np.prod(shape[i + 1:])) * itemsize for i in range(len(shape))]
        self.strides = tuple(strides) if strides else tuple(contiguous)
        self.data, self.device = types.SimpleNamespace(ptr=ptr), types.SimpleNamespace(id=0)
        self.flags = types.SimpleNamespace(c_contiguous=strides is None)
        self.values = None

    def get(self):
        return self.values


@pytest.fixture
def fake_launch(monkeypatch):
    """attention()/attention_varlen() down to the launch: the plan call records (config, problem)."""
    import contextlib
    import types

    from autoflash.serve import api, frameworks, varlen

    launches = []

    def fake_plan(kernel, p, scale):
        return lambda *args: launches.append((kernel, p, scale, args))

    fake_cupy = types.SimpleNamespace(cuda=types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDevice=lambda: 0), Device=lambda i: contextlib.nullcontext()))
    monkeypatch.setattr(api, "plan", fake_plan)  # api.launch_forward launches for both modules
    for mod in (api, varlen):
        monkeypatch.setattr(mod, "device_arch", lambda device: ("sm_90", "Fake GPU"))
    monkeypatch.setattr(api, "loaded_kernel", lambda cfg, device: cfg)
    monkeypatch.setattr(frameworks, "cupy", lambda: fake_cupy)
    monkeypatch.setattr(api, "_empty_like", lambda ref, shape, dtype: FakeCupyArray(shape, ptr=1 << 30))
    return launches


@pytest.mark.parametrize("alignment,offset", [("top_left", 0), ("bottom_right", 400)])
def test_attention_passes_the_variants_to_a_variant_kernel(fake_launch, alignment, offset):
    import autoflash

    q = FakeCupyArray((2, 8, 100, 128))
    k = v = FakeCupyArray((2, 2, 500, 128))
    sinks, slopes = FakeCupyArray((8,), "float32", ptr=4096, itemsize=4), FakeCupyArray((2, 8), "float32", 8192, 4)
    autoflash.attention(q, k, v, causal=True, causal_alignment=alignment, window_size=(64, 7), softcap=30,
                        sinks=sinks, alibi_slopes=slopes, return_lse=True)
    cfg, p, scale, _ = fake_launch[-1]
    assert {f: getattr(cfg, f) for f in VARIANT_FLAGS} == {f: True for f in VARIANT_FLAGS} and cfg.causal
    assert (p.window_left, p.window_right, p.softcap, p.causal_offset) == (64, 0, 30.0, offset)
    assert (p.sinks, p.alibi_slopes, p.alibi_batch_stride) == (4096, 8192, 8)
    autoflash.attention(q, k, v, alibi_slopes=FakeCupyArray((8,), "float32", ptr=4096, itemsize=4),
                        causal_alignment=alignment)  # non-causal ALiBi: the diagonal still follows the alignment
    cfg, p, _, _ = fake_launch[-1]
    assert cfg.alibi and not (cfg.causal or cfg.window) and p.causal_offset == offset and p.alibi_batch_stride == 0
    autoflash.attention(q, k, v, causal=True, window_size=(-1, 5))  # plain causal: the plain kernel
    cfg, p, _, _ = fake_launch[-1]
    assert not any(getattr(cfg, f) for f in VARIANT_FLAGS) and (p.window_left, p.window_right) == (-1, -1)


def test_pinned_config_must_have_the_variants(fake_launch):
    import autoflash

    q = k = v = FakeCupyArray((1, 4, 64, 64))
    plain = TEMPLATES["flash_fwd_mma"].default("sm_90", K("fp16", 64, False))
    with pytest.raises(InputError, match="softcap"):
        autoflash.attention(q, k, v, softcap=30.0, config=plain)
    autoflash.attention(q, k, v, softcap=30.0, config=plain.replace(softcap=True))
    assert fake_launch[-1][0].softcap


def test_export_writes_the_tail_and_refuses_variant_configs():
    from autoflash.export import exportable, header_text

    plain = TEMPLATES["flash_fwd_mma"].default("sm_90", K("bf16", 128, True))
    header = header_text(plain)
    assert "const float* sinks, const float* alibi_slopes, int alibi_batch_stride);" in header  # the kernel's tail
    assert "&no_index, &no_index, &no_index, &no_window, &no_window, &no_softcap" in header  # dense, plain
    assert exportable(plain) is None
    why = exportable(plain.replace(window=True, sinks=True))
    assert why and "window, sinks" in why and "plain config" in why
