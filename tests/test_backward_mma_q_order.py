"""flash_bwd_mma's query-tile order switch (ops/backward_kernels.Q_ORDER, issue 16), without a GPU: off (0) by default;
the order the rendered kernel computes (its C expression, evaluated here) visits every query tile of a K/V block's
range exactly once per query head, in each order; only plain configs (dense, not deterministic, no variant, Dv = Dqk,
2 stages) take it; the A/B's kernels compile clean (no spills, no local memory). Float64 gradients on a GPU:
tests/test_backward_mma_q_order_gpu.py."""
import re

import pytest

from autoflash.kernels.render import render
from autoflash.ops import backward_kernels
from autoflash.ops.backward_kernels import TEMPLATE, q_order

LOOP_LINE = re.compile(r"const int q_start = \((.*)\) \* BLOCK_M;")
LOAD_LINE = re.compile(r"const int qs = \((.*)\) \* BLOCK_M;")


def cfg(d=128, causal=False, **extra):
    key = dict(dtype="bf16", head_dim=d, causal=causal, deterministic=extra.pop("deterministic", False))
    for flag in ("window", "softcap", "sinks", "alibi"):
        key[flag] = extra.pop(flag, False)
    bm, bn = (128, 128) if d == 64 else (64, 128) if d == 128 else (64, 64)  # the H200's served tiles
    c = TEMPLATE.config("sm_90", key, block_m=bm, block_n=bn, warps=8, stages=2, warps_q=2)
    return c.replace(**extra) if extra else c


def tile_expression(source: str) -> str:
    loop, load = LOOP_LINE.findall(source), LOAD_LINE.findall(source)
    assert len(loop) == 1 and len(load) == 1 and loop == load, (loop, load)  # the loads and the loop agree
    return loop[0]


def test_off_by_default():
    assert backward_kernels.Q_ORDER == 0
    assert tile_expression(render(cfg())) == "q_tile0 + it % per_head"


@pytest.mark.parametrize("order", [0, 1, 2])
@pytest.mark.parametrize("d,causal", [(64, False), (64, True), (128, False), (128, True), (256, True)])
def test_every_query_tile_once_per_head(order, d, causal, monkeypatch):
    """The rendered expression, evaluated for many (q_tile0, per_head, group, kv_tile): a permutation of the K/V
    block's tiles q_tile0 .. q_tile0 + per_head - 1 for each query head of the group (C's % = Python's here: every
    operand is >= 0)."""
    monkeypatch.setattr(backward_kernels, "Q_ORDER", order)
    c = cfg(d, causal)
    assert TEMPLATE.template_values(c)["q_order"] == order
    expr = tile_expression(render(c))
    firsts = set()
    for q_tile0 in (0, 3):
        for per_head in (1, 2, 5, 64):
            for group in (1, 4):
                for kv_tile in (0, 1, 7, 130):
                    steps = [eval(expr, {}, dict(q_tile0=q_tile0, per_head=per_head, it=it, kv_tile=kv_tile))
                             for it in range(group * per_head)]
                    for h in range(group):
                        assert sorted(steps[h * per_head:(h + 1) * per_head]) == list(
                            range(q_tile0, q_tile0 + per_head))
                    firsts.add((per_head, kv_tile, steps[0] - q_tile0))
    start = {0: lambda p, k: 0, 1: lambda p, k: p - 1, 2: lambda p, k: k % p}[order]
    assert all(first == start(p, k) for p, k, first in firsts)


@pytest.mark.parametrize("extra", [dict(deterministic=True), dict(varlen=True), dict(window=True), dict(softcap=True),
                                   dict(sinks=True), dict(alibi=True)], ids=lambda e: next(iter(e)))
def test_only_plain_configs_take_it(extra, monkeypatch):
    monkeypatch.setattr(backward_kernels, "Q_ORDER", 2)
    plain, other = cfg(64, True), cfg(64, True, **extra)  # (D 64's served tile is valid with each of them)
    assert other.problems() == [], other.problems()
    assert q_order(plain) == 2 and q_order(other) == 0
    monkeypatch.setattr(backward_kernels, "Q_ORDER", 0)
    before = render(other)
    monkeypatch.setattr(backward_kernels, "Q_ORDER", 2)
    assert render(other) == before


def test_one_stage_configs_keep_the_order(monkeypatch):
    """(ptxas: with one stage the reordered index spilled 4-40 B at D 128 warps_q 1 and D 256 32 x 32 causal)"""
    monkeypatch.setattr(backward_kernels, "Q_ORDER", 2)
    one = TEMPLATE.config("sm_90", dict(dtype="bf16", head_dim=128, causal=False, deterministic=False),
                          block_m=64, block_n=128, warps=8, stages=1, warps_q=1)
    assert one.problems() == [] and q_order(one) == 0 and q_order(one.replace(stages=2)) == 2


def test_head_dim_v_pairs_keep_the_order(monkeypatch):
    monkeypatch.setattr(backward_kernels, "Q_ORDER", 1)
    pair = TEMPLATE.config("sm_90", dict(dtype="bf16", head_dim=128, head_dim_v=64, causal=False, deterministic=False),
                           block_m=64, block_n=64, warps=8, stages=2, warps_q=2)
    assert pair.problems() == [] and q_order(pair) == 0


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("d,causal", [(64, False), (64, True), (128, False), (128, True)])
def test_ab_kernels_compile_clean(order, d, causal, monkeypatch, tmp_path):
    """The A/B's kernels (the H200's served flash_bwd_mma tiles, bf16) in each order: 0 spills, no stack frame, no
    LDL/STL (NVRTC 13.5 here; 13.0.88, the device's, gave the same by hand: benchmarks/NOTES.md)."""
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels.compile import compile_kernel
    from sass import sass

    monkeypatch.setattr(backward_kernels, "Q_ORDER", order)
    c = cfg(d, causal)
    kernel = compile_kernel(c)
    assert kernel.report.spills == 0 and kernel.report.stack_frame == 0, kernel.report
    assert not re.search(r"\b(LDL|STL)\b", sass(kernel.cubin, tmp_path, c.name)), "local memory"
