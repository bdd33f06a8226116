"""flash_bwd_mma's warps_q=4 (ops/backward_kernels.WARPS_Q4, issue 16: FlashAttention-2's D 64 S/dP warp layout),
without a GPU: off by default (the knob stops at 2 and a warps_q=4 config is refused); on, it adds exactly the D 64
tiles the rules keep; every other config renders the same with it on; the rendered layout covers S^T/dP^T, dK/dV and
dQ once each (its constants and warp offsets evaluated here); the sm_90 kernels compile clean (no spills, no local
memory). Float64 gradients on a GPU: tests/test_backward_mma_warps_q4_gpu.py."""
import re

import pytest

from autoflash.kernels.render import render
from autoflash.ops import backward_kernels
from autoflash.ops.backward_kernels import TEMPLATE

FLAGS = ("window", "softcap", "sinks", "alibi")


def key(d=64, causal=False, dtype="bf16", **flags):
    k = dict(dtype=dtype, head_dim=d, causal=causal, deterministic=flags.pop("deterministic", False))
    k.update({f: flags.pop(f, False) for f in FLAGS})
    return k


def wq4(bm=128, bn=64, causal=False, arch="sm_90", **extra):
    c = TEMPLATE.config(arch, key(causal=causal, d=extra.pop("d", 64), dtype=extra.pop("dtype", "bf16")),
                        block_m=bm, block_n=bn, warps=extra.pop("warps", 8), stages=extra.pop("stages", 2), warps_q=4)
    return c.replace(**extra) if extra else c


@pytest.fixture
def on(monkeypatch):
    monkeypatch.setattr(backward_kernels, "WARPS_Q4", True)


def valid_tiles(arch, causal, dtype="bf16"):
    return {(c.block_m, c.block_n, c.warps, c.stages) for c in TEMPLATE.space(arch, key(causal=causal, dtype=dtype))
            if c.warps_q == 4 and not c.problems()}


def test_off_by_default():
    assert backward_kernels.WARPS_Q4 is False
    assert TEMPLATE.knobs["warps_q"] == (1, 2)
    assert any("warps_q=4 is not one of [1, 2]" in e for e in wq4().problems())
    assert all(c.warps_q != 4 for c in TEMPLATE.space("sm_90", key()))


@pytest.mark.parametrize("causal", [False, True])
def test_on_adds_the_d64_tiles(on, causal):
    assert TEMPLATE.knobs["warps_q"] == (1, 2, 4)
    tiles = {(64, 64), (64, 128), (128, 64)} | (set() if causal else {(128, 128)})  # 128 x 128 causal spills
    assert valid_tiles("sm_90", causal) == {(bm, bn, 8, 2) for bm, bn in tiles}
    assert valid_tiles("sm_80", causal) == {(bm, bn, 8, 2) for bm, bn in tiles - {(128, 128)}}  # 163 KB
    assert valid_tiles("sm_86", causal) == valid_tiles("sm_89", causal) == {(64, 64, 8, 2)}  # 99 KB
    assert TEMPLATE.default("sm_90", key(causal=causal)).warps_q != 4  # the defaults do not change


@pytest.mark.parametrize("change,reason", [
    (dict(d=128, bm=64, bn=128), "head_dim 64 only"),
    (dict(deterministic=True), "not yet"),
    (dict(varlen=True), "not yet"),
    (dict(window=True), "not yet"),
    (dict(softcap=True), "not yet"),
    (dict(sinks=True), "not yet"),
    (dict(alibi=True), "not yet"),
    (dict(warps=4, bn=64), "warps=8 and stages=2"),
    (dict(stages=1), "warps=8 and stages=2"),
    (dict(bm=32), "block_m and block_n of 64 or 128"),
    (dict(bn=32), "block_m and block_n of 64 or 128"),
    (dict(bm=128, bn=128, causal=True), "spills registers when causal"),
], ids=lambda x: x if isinstance(x, str) else "-".join(f"{k}{v}" for k, v in x.items()))
def test_rules(on, change, reason):
    change = dict(change)
    base = dict(bm=change.pop("bm", 128), bn=change.pop("bn", 64), causal=change.pop("causal", False))
    c = wq4(**base, **{k: change.pop(k) for k in ("d", "warps", "stages") if k in change}, **change)
    assert any(reason in e for e in c.problems()), c.problems()


def test_shared_memory_as_warps_q_2(on):
    for bm, bn in ((64, 64), (64, 128), (128, 64), (128, 128)):
        c = wq4(bm, bn)
        assert TEMPLATE.smem_bytes(c) == TEMPLATE.smem_bytes(c.replace(warps_q=2))  # dS^T and P^T, not 4 tiles


def test_other_configs_render_the_same_with_it_on(monkeypatch):
    """(The full sweep, every valid config before and after, is in the commit's notes: /tmp/MB2_notes.md.)"""
    cfgs = [c for arch in ("sm_80", "sm_90") for causal in (False, True) for d in (64, 128)
            for c in TEMPLATE.space(arch, key(d=d, causal=causal)) if not c.problems()]
    assert len(cfgs) > 40
    before = [render(c) for c in cfgs]
    monkeypatch.setattr(backward_kernels, "WARPS_Q4", True)
    assert [render(c) for c in cfgs] == before


CONST = re.compile(r"^constexpr int (\w+) = ([^;]+);", re.M)


def constants(source: str) -> dict:
    """The rendered integer constants (C's / on non-negative ints = Python's //)."""
    values = {}
    for name, expr in CONST.findall(source):
        try:
            values[name] = eval(expr.replace("/", "//"), {}, dict(values))
        except (NameError, SyntaxError):
            pass
    return values


def offsets(source: str, line_start: str, names: list, c: dict, warp: int) -> dict:
    """Evaluate a rendered `const int a = ..., b = ...;` line for one warp."""
    line = next(x for x in source.splitlines() if x.strip().startswith(line_start)).split("//")[0]
    out = {}
    for part in line.strip()[len("const int "):].rstrip(";").split(","):
        name, expr = (x.strip() for x in part.split("=", 1))
        out[name] = eval(expr.replace("/", "//"), {}, dict(c, warp=warp))
    return {n: out[n] for n in names}


@pytest.mark.parametrize("bm,bn", [(64, 64), (64, 128), (128, 64), (128, 128)])
def test_rendered_layout_covers_each_tile_once(on, bm, bn):
    src = render(wq4(bm, bn))
    c = constants(src)
    assert (c["WARPS_Q"], c["WARPS_K"], c["WARPS_D"], c["WARPS_KV"]) == (4, 2, 2, 4)
    assert (c["QUERIES_W"], c["KEYS_W"], c["KEYS_KV"], c["DKV_COLS"], c["DQ_ROWS"]) == (bm // 4, bn // 2, bn // 4, 32,
                                                                                         32)
    s_cells, kv_cells, dq_cells = [], [], []
    for warp in range(8):
        o = offsets(src, "const int kw0 =", ["kw0", "q0", "d0"], c, warp)
        kv0 = offsets(src, "const int kv0 =", ["kv0"], c, warp)["kv0"]
        s_cells += [(o["kw0"] + i, o["q0"] + j) for i in range(c["KEYS_W"]) for j in range(c["QUERIES_W"])]
        kv_cells += [(kv0 + i, o["d0"] + j) for i in range(c["KEYS_KV"]) for j in range(c["DKV_COLS"])]
        dq_m, dq_d = warp % c["DQ_MGROUPS"], warp // c["DQ_MGROUPS"]
        dq_cells += [(dq_m * c["DQ_ROWS"] + i, dq_d * c["DQ_COLS"] + j) for i in range(c["DQ_ROWS"])
                     for j in range(c["DQ_COLS"])]
    assert sorted(s_cells) == [(i, j) for i in range(bn) for j in range(bm)]  # S^T, dP^T [key][query]
    assert sorted(kv_cells) == [(i, j) for i in range(bn) for j in range(64)]  # dK, dV [key][column]
    assert sorted(dq_cells) == [(i, j) for i in range(bm) for j in range(64)]  # dQ [query][column]
    # the dK/dV operands and stores use the dK/dV keys (kv0), S^T/dP^T the S keys (kw0)
    assert "sP + (kv0 + lane % 16)" in src and "sdS + (kv0 + lane % 16)" in src
    assert "(kv0 + mt * 16 + g + 8 * h) * STRIDE" in src
    assert "sK + (kw0 + lane % 16)" in src and "float acc_dk[KV_TILES][DKV_TILES][4]" in src


@pytest.mark.parametrize("bm,bn,causal", [(64, 64, False), (64, 64, True), (64, 128, False), (64, 128, True),
                                          (128, 64, False), (128, 64, True), (128, 128, False)])
def test_compile_clean(on, bm, bn, causal, tmp_path):
    """Every sm_90 bf16 warps_q=4 config: 0 spills, no stack frame, no LDL/STL (NVRTC here; the commit's notes
    have all 34 valid configs under 13.5 and the device's 13.0.88)."""
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels.compile import compile_kernel
    from sass import sass

    c = wq4(bm, bn, causal)
    assert c.problems() == []
    kernel = compile_kernel(c)
    assert kernel.report.spills == 0 and kernel.report.stack_frame == 0, kernel.report
    assert not kernel.report.wgmma_serialized
    assert not re.search(r"\b(LDL|STL)\b", sass(kernel.cubin, tmp_path, c.name)), "local memory"
