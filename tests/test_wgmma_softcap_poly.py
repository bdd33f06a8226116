"""flash_fwd_wgmma's SOFTCAP_POLY switch (forward_wgmma.SOFTCAP_POLY, 0 = off; issue 17), without a GPU: which configs
it switches (softcap without ALiBi: the CAP_R path), that off nothing changes (the full render identity against the
previous tree was a throw-away script, see NOTES), the polynomial exp2 in a float32 emulation of the kernel's
operations (error bound, masked keys exactly 0), and the served softcap tiles compiled for sm_90a: no spills, no local
memory, wgmma not serialised, fewer MUFU.EX2 in the SASS. The GPU comparison against float64:
tests/test_wgmma_softcap_poly_gpu.py."""
import re
from pathlib import Path

import numpy as np
import pytest

from autoflash import KernelConfig
from autoflash.kernels.registry import TEMPLATES
from autoflash.kernels.render import render
from autoflash.ops import forward_wgmma

from sass import sass

W = TEMPLATES["flash_fwd_wgmma"]
TEMPLATE = Path(__file__).resolve().parents[1] / "templates" / "flash_fwd_wgmma.cu.j2"
f32 = np.float32


def wgmma(head_dim=128, causal=False, block_n=128, dtype="bf16", **flags):
    """The H200's served softcap tile (tuned_configs/sm_90.json, bf16 D 64/128; causal: the default tile): 128 x 128,
    3 stages."""
    flags.setdefault("softcap", True)
    return KernelConfig("flash_fwd_wgmma", "sm_90a", dtype, head_dim, causal, 128, block_n, 12, 3, **flags)


SERVED = [wgmma(d, c) for d in (128, 64) for c in (False, True)]


@pytest.fixture
def on(monkeypatch):
    monkeypatch.setattr(forward_wgmma, "SOFTCAP_POLY", 16)


def test_off_by_default():
    assert forward_wgmma.SOFTCAP_POLY == 0
    for cfg in SERVED:
        assert W.template_values(cfg)["softcap_poly"] == 0 and "exp2_poly" not in render(cfg)


@pytest.mark.parametrize("cfg, columns", [
    (wgmma(128), 16), (wgmma(64, True, dtype="fp16"), 16), (wgmma(128, window=True, sinks=True), 16),
    (wgmma(64, block_n=64), 16), (wgmma(8, block_n=80), 16), (wgmma(96, block_n=64, dtype="fp16"), 16),
    (wgmma(128, alibi=True), 0), (wgmma(128, softcap=False), 0), (wgmma(128, softcap=False, window=True), 0),
], ids=lambda x: x.name if isinstance(x, KernelConfig) else str(x))
def test_which_configs_switch(on, cfg, columns):
    """Softcap without ALiBi takes min(SOFTCAP_POLY, block_n / 4) columns; the rest render as with the switch off."""
    assert cfg.problems() == [], cfg.problems()
    values, source = W.template_values(cfg), render(cfg)
    assert values["softcap_poly"] == columns
    assert (f"constexpr int SOFTCAP_POLY = {columns};" in source) is bool(columns)
    forward_wgmma.SOFTCAP_POLY = 0
    if not columns:
        assert source == render(cfg) and values == W.template_values(cfg)
    else:
        assert source.count("exp2_poly(sat_fma(") == 2 and "exp2_poly" not in render(cfg)


def test_at_most_every_column(monkeypatch):
    monkeypatch.setattr(forward_wgmma, "SOFTCAP_POLY", 40)
    assert W.template_values(wgmma(128, block_n=64))["softcap_poly"] == 16
    assert W.template_values(wgmma(128, block_n=256))["softcap_poly"] == 40


def poly_columns(k: int, n: int) -> list[int]:
    """The template's poly_column: which of a thread's n columns a row take the polynomial."""
    return [c for c in range(n) if (c + 1) * k // n > c * k // n]


@pytest.mark.parametrize("k, n", [(1, 32), (8, 32), (13, 32), (16, 32), (26, 32), (32, 32), (5, 12)])
def test_columns_spread_evenly(k, n):
    cols = poly_columns(k, n)
    assert len(cols) == k and (k < 2 or max(np.diff(cols)) <= -(-n // k))


def coefficients() -> list[float]:
    """The degree-3 polynomial's coefficients, as the template writes them (highest first)."""
    line = next(x for x in TEMPLATE.read_text().splitlines() if "const float p = fmaf(fmaf(fmaf(" in x)
    return [float.fromhex(h[:-1]) for h in re.findall(r"0x1\.[0-9a-f]+p-?\d+f", line)]


def fma32(a, b, c):
    """fmaf in float32: the exact a * b (float64 holds it) plus c, rounded once to float32 (float64's own rounding
    of the sum is far below float32's)."""
    return (np.asarray(a, np.float64) * np.asarray(b, np.float64) + np.asarray(c, np.float64)).astype(f32)


def exp2_poly(u):
    """exp2_poly(u) in float32, step for step as the template (a sat_fma result u in [0, 1])."""
    c3, c2, c1, c0 = (f32(x) for x in coefficients())
    magic = f32(12582912.0)
    t = fma32(u, f32(128), magic)
    f = fma32(u, f32(128), (magic - t).astype(f32))
    p = fma32(fma32(fma32(c3, f, c2), f, c1), f, c0)
    scale = (t.view(np.uint32) << np.uint32(23)).view(f32)
    return (p * scale).astype(f32)


def p_poly(r, c, b):
    """P of a poly column: u = sat(r c / 128 + (b / 128 + 127 / 128)), then exp2_poly (the kernel's order)."""
    cu = (c * f32(1 / 128)).astype(f32)
    bu = fma32(b, f32(1 / 128), f32(127 / 128))
    with np.errstate(invalid="ignore", over="ignore"):
        u = np.clip(np.nan_to_num(fma32(r, cu, bu), nan=0.0, posinf=1.0, neginf=0.0), 0, 1).astype(f32)
    return exp2_poly(u)


def test_polynomial_error_on_a_dense_grid():
    """2^f on [-0.5, 0.5] (the reduced argument) within 7.5e-5 relative, and 2^a for a in [-126, 0] given exactly as
    u = a / 128 + 127 / 128 (u's float32 rounding moves a by at most 128 * 2^-25)."""
    with np.errstate(over="ignore"):
        a = np.linspace(-126.0, 0.0, 2_000_001)
        u = (a / 128 + 127 / 128).astype(f32)
        exact = 2.0 ** (128 * u.astype(np.float64) - 127)
    got = exp2_poly(u).astype(np.float64)
    rel = np.abs(got / exact - 1)
    assert rel.max() < 7.6e-5, rel.max()
    assert np.abs(got / 2.0 ** a - 1).max() < 7.6e-5 + 128 * 2.0 ** -25 * np.log(2) * 1.01
    assert exp2_poly(f32([0.0]))[0] == 0 and exp2_poly(f32([0.5 / 128]))[0] == 0  # k = 0: +0, a < -126.5
    assert exp2_poly(f32([1.0]))[0] == 2 * f32(coefficients()[3])  # u = 1: a = 1, k = 128, 2^1 p(0)


@pytest.mark.parametrize("cap, bound", [(1.0, 1e-4), (5.0, 1e-4), (30.0, 1e-4), (50.0, 1e-4), (500.0, 1.5e-4)])
def test_p_of_the_cap_r_path(cap, bound):
    """P = 2^(r c + b) of the CAP_R path (c = -2 cap_out, b = cap_out - m, r in [0, 1]; masked keys r = +inf) through
    u and the polynomial, against float64 of the kernel's float32 r, c, b: within 1e-4 relative (caps to 50) wherever
    2^a is a normal float32 above 2^-125, exactly 0 for masked keys and below 2^-126.5. bu = b / 128 + 127 / 128 is
    rounded once (b up to 2 cap_out): its error grows with the cap (cap 500: 1.5e-4; bf16 P rounds at 2^-9)."""
    log2e = 1.4426950408889634
    cap_out = f32(cap * log2e)
    c = f32(-2) * cap_out
    rng = np.random.default_rng(int(cap))
    r = np.r_[np.linspace(0, 1, 200_001), rng.random(200_000)].astype(f32)
    for rmin in (0.0, 1e-3, 0.25, 0.5, 0.999, 0.99999):
        mu = fma32(f32(-2) * cap_out, f32(rmin), cap_out)  # the row max: cap_out - 2 cap_out min(r)
        b = (cap_out - mu).astype(f32)
        rr = r[r >= f32(rmin)]
        a = rr.astype(np.float64) * np.float64(c) + np.float64(b)
        got = p_poly(rr, c, b).astype(np.float64)
        big = a > -125
        rel = np.abs(got[big] / 2.0 ** a[big] - 1)
        assert rel.max() < bound, (cap, rmin, rel.max())
        assert (got[a < -126.5 - 1e-3] == 0).all() and (got <= 1 + 1e-4).all()
        assert p_poly(f32([np.inf]), c, b)[0] == 0  # a masked key: u = 0, P = +0


COMPILED = SERVED + [wgmma(128, dtype="fp16"), wgmma(64, True, dtype="fp16")]


@pytest.mark.parametrize("cfg", COMPILED, ids=lambda c: c.name)
def test_compiles_without_spills_local_memory_or_serialisation(cfg, tmp_path, monkeypatch):
    """Off and SOFTCAP_POLY = 16 (half of the 32 columns a row): 0 B spilled, no LDL/STL, not serialised; MUFU.EX2
    falls by 2 rows x 16 columns in every online_softmax instantiation, nothing else becomes a MUFU op."""
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels import compile as afc

    counts = {}
    for k in (0, 16):
        monkeypatch.setattr(forward_wgmma, "SOFTCAP_POLY", k)
        kernel = afc.compile_kernel(cfg, use_cache=False)
        report = kernel.report
        assert report.spills == 0 and report.stack_frame == 0 and not report.wgmma_serialized, (k, report)
        code = sass(kernel.cubin, tmp_path)
        assert not re.search(r"\b(LDL|STL)\b", code), "local memory"
        counts[k] = (len(re.findall(r"MUFU\.EX2", code)), len(re.findall(r"\bMUFU\b", code)))
    saved = counts[0][0] - counts[16][0]
    assert saved > 0 and saved % 32 == 0 and counts[0][1] - counts[16][1] == saved, counts
