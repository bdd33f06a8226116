"""The product's promise over combinations of features: every call either gives the right answer or is refused with
a clear error before anything launches, never silently wrong and never a crash. Seeded random cases
(tests/combinations.py draws them: entry point, dtype, head dims (Dqk != Dv too), GQA/MQA, odd and empty lengths,
causal in either alignment, window, softcap, sinks, ALiBi, scale, LSE, strided inputs, paged caches, gradients);
each result is compared with a float64 reference that applies every feature literally (ops.reference.compare's
tolerances; gradients: ops.backward_gpu.compare_gradients, the rule of tests/test_backward_variants_gpu.py), each
refusal must be a ValueError (autoflash.ConfigError, InputError), NotImplementedError or TypeError with a message.
Any other exception, a wrong value or a wrong shape fails with the whole case printed.

AUTOFLASH_COMBO_CASES: the number of cases (default 150; case i is the same whatever the count: rerun one alone with
-k case042). AUTOFLASH_COMBO_SEED: another base seed. AUTOFLASH_COMBO_LOG: a file each case's outcome is appended to
(JSON lines); `python tests/combinations.py FILE` prints its table of refusals (under xdist the workers' output is
not shown). With -n 0 -s the table is printed at the end of the module. The CPU tests check the generator and the
reference (the latter with torch installed, on the CPU)."""
import json
import math
import os
import traceback

import numpy as np
import pytest

import autoflash
import combinations as combos
from autoflash.ops.backward_gpu import compare_gradients, compare_sink_gradient, reference_gradients, sink_terms_norm
from autoflash.ops.reference import compare, reference_attention

CASES = int(os.environ.get("AUTOFLASH_COMBO_CASES", "150"))
SEED = int(os.environ.get("AUTOFLASH_COMBO_SEED", str(combos.BASE_SEED)))
REFUSALS = (ValueError, NotImplementedError, TypeError, autoflash.ConfigError)  # InputError is a ValueError
FUNCTIONS = {"attention": autoflash.attention, "kvcache": autoflash.attention_with_kvcache,
             "varlen": autoflash.attention_varlen}
OUTCOMES: list[dict] = []


def as_numpy(x):
    return None if x is None else x.detach().double().cpu().numpy()


def run_case(c: dict, device: str = "cuda") -> dict:
    """The case's outcome: verdict "ok" (within tolerance of the reference), "refused" (message: the error's) or
    "failed" (detail: why)."""
    torch = combos.torch
    gen = torch.Generator(device=device).manual_seed(c["seed"])
    args, kw = combos.inputs(c, gen, device)
    try:
        res = FUNCTIONS[c["api"]](*args, **kw)
        torch.cuda.synchronize()  # a kernel fault surfaces here: a failure, not a refusal
    except REFUSALS as exc:
        if not str(exc).strip():
            return dict(verdict="failed", detail=f"{type(exc).__name__} without a message")
        return dict(verdict="refused", error=type(exc).__name__, message=str(exc))
    except Exception as exc:  # noqa: BLE001  (any other exception is the failure this test looks for)
        return dict(verdict="failed", detail=f"{type(exc).__module__}.{type(exc).__name__}: {exc}")
    out, lse = res if c["return_lse"] else (res, None)
    q, k, v = (x.detach().double().requires_grad_(c["grad"]) for x in args[:3])  # the reference's leaves
    sinks = None if kw["sinks"] is None else kw["sinks"].detach().double().requires_grad_(c["sinks_grad"])
    ref_out, ref_lse = combos.reference(c, q, k, v, sinks, kw["alibi_slopes"], kw.get("block_table"))
    shapes = (tuple(out.shape), None if lse is None else tuple(lse.shape))
    want = (tuple(ref_out.shape), None if lse is None else tuple(ref_lse.shape))
    if shapes != want:
        return dict(verdict="failed", detail=f"out/lse shapes {shapes}, expected {want}")
    errors = {}
    if ref_out.numel():
        check = compare(as_numpy(out), as_numpy(ref_out), c["dtype"], as_numpy(lse),
                        as_numpy(ref_lse) if lse is not None else None)
        errors["forward"] = check.describe()
        if not check.passed:
            return dict(verdict="failed", detail=f"forward {check.describe()}", errors=errors)
    if c["grad"]:
        dout = torch.randn(out.shape, generator=gen, device=device).to(out.dtype)
        try:
            out.backward(dout)
            torch.cuda.synchronize()
        except Exception as exc:  # noqa: BLE001  (refusing only now breaks README's promise: refused at the call)
            return dict(verdict="failed", detail=f"backward raised {type(exc).__name__}: {exc}", errors=errors)
        # Every flash backward takes delta = rowsum(dO o O) from the stored forward output, rounded to the dtype; its
        # gradients are then exactly those of L - sum_i (delta~_i - delta_i) LSE_i (d LSE_i / d S_ij = P_ij), so the
        # reference takes the same delta~ and the check measures the kernel's own error. (One visible key beside a
        # sink: P ~ 1, dP - delta cancels, and O's rounding alone moves dq and dk past the tolerance.)
        d64 = dout.double()
        shift = (d64 * (out.detach().double() - ref_out.detach())).sum(-1)
        shift = shift.T if c["api"] == "varlen" else shift  # (total, H) -> the LSE's (H, total)
        live_lse = torch.where(torch.isneginf(ref_lse), torch.zeros_like(ref_lse), ref_lse)
        ((ref_out * d64).sum() - (shift * live_lse).sum()).backward()
        if any(x.grad is None for x in args[:3]):
            return dict(verdict="failed", detail="q, k or v got no gradient", errors=errors)
        check = compare_gradients([as_numpy(x.grad) for x in args[:3]], [as_numpy(x.grad) for x in (q, k, v)],
                                  c["dtype"])
        errors["dq/dk/dv"] = check.describe()
        if c["sinks_grad"]:
            delta, lse64 = (dout.double() * ref_out).sum(-1).detach(), ref_lse.detach()
            if c["api"] == "varlen":  # (total, H) and (H, total) as the (1, H, total) sink_terms_norm takes
                delta, lse64 = delta.T[None], lse64[None]
            norm = sink_terms_norm(as_numpy(lse64), as_numpy(delta), c["sinks"])
            sink_check = compare_sink_gradient(as_numpy(kw["sinks"].grad), as_numpy(sinks.grad), norm, c["dtype"])
            errors["dsinks"] = sink_check.describe()
            check = sink_check if check.passed else check  # the first that fails
        if not check.passed:
            return dict(verdict="failed", detail=f"gradients {errors}", errors=errors)
    return dict(verdict="ok", errors=errors)


def record(c: dict, outcome: dict) -> None:
    OUTCOMES.append(dict(c, **outcome))
    if os.environ.get("AUTOFLASH_COMBO_LOG"):  # one line per write: xdist workers may share the file
        with open(os.environ["AUTOFLASH_COMBO_LOG"], "a") as f:
            f.write(json.dumps(OUTCOMES[-1]) + "\n")


@pytest.fixture(scope="module")
def outcome_table():
    yield
    if OUTCOMES:
        print("\n" + combos.summarize(OUTCOMES))


@pytest.mark.gpu
@pytest.mark.parametrize("i", range(CASES), ids=lambda i: f"case{i:03d}")
def test_combination(i, torch_cuda, outcome_table):
    c = combos.draw_case(i, SEED)
    try:
        outcome = run_case(c)
    except Exception:  # checking what the call returned tripped (a tuple for an array, say): fail with the case
        outcome = dict(verdict="failed", detail="checking the result raised:\n" + traceback.format_exc())
    record(c, outcome)
    assert outcome["verdict"] != "failed", (f"{c['id']}: {outcome['detail']}\ncase: {combos.describe(c)}\n"
                                            f"rerun: pytest -n 0 tests/test_combinations_gpu.py -k {c['id']}")


# --- CPU: the generator and the reference ---------------------------------------------------------------------------

def longest_keys(c: dict) -> int:
    return max(c["lens_k"]) if c["api"] == "varlen" else c["nk"]


def test_case_generator_is_deterministic_and_covers_the_features():
    cases = [combos.draw_case(i) for i in range(150)]
    assert cases == [combos.draw_case(i) for i in range(150)]
    assert combos.draw_case(7, SEED + 1) != combos.draw_case(7, SEED)
    assert len({combos.describe(c) for c in cases}) == len(cases)
    assert all(json.loads(combos.describe(c))["id"] == c["id"] for c in cases)  # plain values, logged as JSON
    seen = set()
    for c in cases:
        api = c["api"]
        seen |= {api, (api, c["dtype"]), (api, c["layout"]), c["softcap"], c["alibi"], (api, "grad", c["grad"])}
        seen |= {("window", tuple(c["window"])), "window>N" if c["window"][0] > longest_keys(c) else None}
        seen |= {"dv", c["d"], c["dv"]} if c["d"] != c["dv"] else {c["d"]}
        seen |= {("group", c["hq"] // c["hkv"]), "mqa" if c["hkv"] == 1 < c["hq"] else None}
        seen |= {"sink -inf"} if c["sinks"] and -math.inf in c["sinks"] else set()
        seen |= {"scale"} if c["scale"] else set()
        if api == "kvcache":
            seen |= {("paged", bool(c["page"])), ("prefill", c["nq"] > 16)}
            seen |= {("empty cache", 0 in (c["seqlens"] or []))}
        if api == "varlen":
            seen |= {("empty seq", 0 in c["lens_q"] + c["lens_k"]), ("seqused", c["seqused"] is not None)}
        if api != "kvcache":
            seen |= {(api, c["alignment"], c["causal"])}
    want = {*combos.APIS, ("attention", "fp32"), ("varlen", "fp32"), 30.0, 1.0, 0.0, "head", "batch", "dv", "mqa",
            ("attention", "grad", True), ("varlen", "grad", True), ("window", (0, 0)), ("window", (1, -1)), "window>N",
            "sink -inf", "scale", ("paged", True), ("prefill", True), ("empty cache", True), ("empty seq", True),
            ("seqused", True), *combos.HEAD_DIMS, *(("group", r) for r in (1, 2, 4, 8))}
    want |= {(a, x) for a in combos.APIS for x in ("fp16", "bf16", "contiguous", "transposed", "padded")}
    want |= {(a, al, on) for a in ("attention", "varlen") for al in ("top_left", "bottom_right") for on in (0, 1)}
    assert not want - seen, f"the default cases never draw {want - seen}"


def numpy_reference(c: dict, q, k, v, sinks, slopes, table):
    """The case's (out, lse) from ops.reference.reference_attention, sequence by sequence, in NumPy float64
    (the pages gathered one key at a time): an independent assembly of what combinations.reference computes."""
    rules = dict(causal=c["causal"], scale=c["scale"] or 1 / math.sqrt(c["d"]), window=tuple(c["window"]),
                 softcap=c["softcap"] or 0.0, sinks=sinks)
    heads_first = lambda x: x.transpose(1, 0, 2)[None]  # noqa: E731  (N, H, D) -> (1, H, N, D)

    def one(b, q, k, v, offset):  # one sequence, token-major
        row = None if slopes is None else (slopes if slopes.ndim == 1 else slopes[b])
        o, lse = reference_attention(heads_first(q), heads_first(k), heads_first(v), causal_offset=offset,
                                     alibi_slopes=row, **rules)
        return o[0].transpose(1, 0, 2), lse[0]  # (N, H, Dv), (H, N)

    if c["api"] == "attention":
        off = c["nk"] - c["nq"] if c["alignment"] == "bottom_right" else 0
        pieces = [one(b, *(x[b].transpose(1, 0, 2) for x in (q, k, v)), off) for b in range(c["batch"])]
        return np.stack([o.transpose(1, 0, 2) for o, _ in pieces]), np.stack([lse for _, lse in pieces])
    if c["api"] == "kvcache":
        if table is not None:
            p = c["page"]
            k, v = (np.stack([[x[row[j // p], j % p] for j in range(c["nk"])] for row in table]) for x in (k, v))
        lens = c["seqlens"] or [c["nk"]] * c["batch"]
        pieces = [one(b, q[b], k[b, :n], v[b, :n], n - c["nq"]) for b, n in enumerate(lens)]
        return np.stack([o for o, _ in pieces]), np.stack([lse for _, lse in pieces])
    cq, ck = combos.offsets(c["lens_q"]), combos.offsets(c["lens_k"])
    used = c["seqused"] or c["lens_k"]
    pieces = [one(b, q[cq[b]:cq[b + 1]], k[ck[b]:ck[b] + n], v[ck[b]:ck[b] + n],
                  n - c["lens_q"][b] if c["alignment"] == "bottom_right" else 0) for b, n in enumerate(used)]
    return np.concatenate([o for o, _ in pieces]), np.concatenate([lse for _, lse in pieces], axis=1)


def small(c: dict) -> bool:
    """Cases the CPU reference checks quickly."""
    return max(c.get("nq", 0), *c.get("lens_q", ()), longest_keys(c)) <= 257


@pytest.mark.parametrize("api", combos.APIS)
def test_reference_matches_ops_reference(api):
    """combinations.reference (torch float64) against ops.reference.reference_attention on drawn cases of each
    entry point, their inputs built on the CPU as the GPU test builds them (layouts, pages, lengths, variants)."""
    torch = pytest.importorskip("torch")
    cases = [c for c in (combos.draw_case(i) for i in range(400)) if c["api"] == api and small(c)][:12]
    for c in cases:
        args, kw = combos.inputs(c, torch.Generator().manual_seed(c["seed"]), device="cpu")
        q, k, v = (x.detach().double() for x in args[:3])
        table = kw.get("block_table")
        out, lse = combos.reference(c, q, k, v, None if kw["sinks"] is None else kw["sinks"].double(),
                                    kw["alibi_slopes"], table)
        want = numpy_reference(c, *(as_numpy(x) for x in (q, k, v, kw["sinks"], kw["alibi_slopes"])),
                               None if table is None else table.numpy())
        assert out.shape == want[0].shape and lse.shape == want[1].shape, combos.describe(c)
        np.testing.assert_allclose(out.numpy(), want[0], rtol=1e-9, atol=1e-12, err_msg=combos.describe(c))
        np.testing.assert_array_equal(np.isneginf(lse.numpy()), np.isneginf(want[1]))
        np.testing.assert_allclose(lse.numpy(), want[1], rtol=1e-9, atol=1e-12, err_msg=combos.describe(c))


@pytest.mark.parametrize("causal, offset, window, softcap, sinks, alibi", [
    (False, 0, (-1, -1), 0.0, None, None),
    (True, -20, (-1, -1), 0.0, None, None),                           # bottom-right, Nq > Nk: rows without a key
    (True, 30, (12, 0), 1.0, [0.5, -math.inf, 2.0, -1.0], "head"),    # everything, a head without a sink
    (False, -5, (3, 7), 30.0, [-math.inf] * 4, "batch"),              # rows without a key and no sink
    (False, 0, (0, 0), 0.0, [1.0, 2.0, 0.0, -3.0], None),             # one key a row; rows past Nk see a sink only
])
def test_reference_gradients_match_closed_form(causal, offset, window, softcap, sinks, alibi):
    """autograd of combinations.attend against ops.backward_gpu.reference_gradients' closed form (NumPy): outputs,
    LSE, dq, dk, dv and dsinks, finite where rows see no key."""
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(1)
    b, hq, hkv, nq, nk, d, dv = 2, 4, 2, 45, 33, 16, 8
    q, k, v, dout = (torch.randn(s, generator=g, dtype=torch.float64) for s in
                     ((b, hq, nq, d), (b, hkv, nk, d), (b, hkv, nk, dv), (b, hq, nq, dv)))
    slopes = None if alibi is None else torch.rand((hq,) if alibi == "head" else (b, hq), generator=g)
    rows = [slopes if alibi != "batch" else slopes[i] for i in range(b)]  # each batch's slopes
    leaves = [x.clone().requires_grad_() for x in (q, k, v)]
    sink = None if sinks is None else torch.tensor(sinks, dtype=torch.float64, requires_grad=True)
    rules = dict(scale=0.3, causal=causal, offset=offset, window=window, softcap=softcap, sinks=sink)
    pieces = [combos.attend(*(x[i] for x in leaves), slopes=rows[i], **rules) for i in range(b)]
    out, lse = torch.stack([o for o, _ in pieces]), torch.stack([x for _, x in pieces])
    out.backward(dout)
    want = reference_gradients(*(x.numpy() for x in (q, k, v, dout)), causal=causal, scale=0.3, causal_offset=offset,
                               window=window, softcap=softcap, sinks=None if sinks is None else np.array(sinks),
                               alibi_slopes=None if slopes is None else slopes.numpy())
    got = [out, lse, *(x.grad for x in leaves)] + ([sink.grad] if sinks is not None else [])
    for name, x, w in zip(("out", "lse", "dq", "dk", "dv", "dsinks"), got, want):
        assert not torch.isnan(x).any(), name
        np.testing.assert_allclose(x.detach().numpy(), w, rtol=1e-9, atol=1e-12, err_msg=name)
