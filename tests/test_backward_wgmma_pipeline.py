"""flash_bwd_wgmma's S^T / dP^T look-ahead (ops/backward_wgmma.PIPELINE) without a GPU: off (the default) renders no
look-ahead anywhere; on, exactly the D 64 producer configs with block_m 64 render it (stages 2 and 3, every dQ mode,
deterministic too; at stages 3 instead of the deferred-dQ loop, with a dS^T buffer per stage and the dQ read lag) and
every other config renders as off; those compile for sm_90a with 0 spills, no stack and no serialised wgmma, and
their SASS issues the next tile's S^T / dP^T HGMMAs inside the loop, after this tile's dV and before its dK and dQ.
Gradients: tests/test_backward_wgmma_pipeline_gpu.py; A/B: benchmarks/bench_backward_pipeline.py."""
import re

import pytest

from autoflash.kernels.render import render
from autoflash.ops import backward_wgmma

from sass import sass
from test_backward_wgmma import key

W = backward_wgmma.TEMPLATE
MARK = "tile it + 1's S^T, dP^T into the accumulators just freed"


def valid_configs():
    """Every valid config of the space: bf16/fp16, D 64/128, causal or not, deterministic or not, every knob."""
    return [c for t in ("bf16", "fp16") for d in (64, 128) for causal in (False, True) for det in (False, True)
            for c in W.space("sm_90a", key(t, d, causal, deterministic=det)) if not c.problems()]


def applies(c) -> bool:
    return W.producer(c) and c.head_dim == 64 and c.block_m == 64


def served(dtype="bf16", causal=False, **knobs):
    c = W.config("sm_90a", key(dtype, 64, causal, deterministic=knobs.pop("deterministic", False)), block_m=64,
                 block_n=128, warps=12, stages=2, warps_q=1)
    return c.replace(**knobs) if knobs else c


@pytest.fixture
def on(monkeypatch):
    monkeypatch.setattr(backward_wgmma, "PIPELINE", True)


def test_off_by_default_renders_no_look_ahead():
    assert backward_wgmma.PIPELINE is False
    for c in valid_configs():
        assert not W.pipelines(c) and MARK not in render(c), c.name


def test_on_exactly_the_d64_producer_tiles_look_ahead(monkeypatch):
    configs = valid_configs()
    off = {c.name: render(c) for c in configs}
    monkeypatch.setattr(backward_wgmma, "PIPELINE", True)
    on = {c.name: render(c) for c in configs}
    with_it = {c.name for c in configs if MARK in on[c.name]}
    assert with_it == {c.name for c in configs if applies(c)} == {c.name for c in configs if W.pipelines(c)}
    # every dQ mode of the served tile and its deterministic variant, both dtypes, causal or not
    assert {(c.dtype, c.causal, c.deterministic, W.dq_mode(c)) for c in configs if applies(c)} >= {
        (t, causal, False, 2) for t in ("bf16", "fp16") for causal in (False, True)} | {
        (t, causal, True, 0) for t in ("bf16", "fp16") for causal in (False, True)}
    assert all(on[n] == off[n] for n in off if n not in with_it)  # the others ignore the switch
    assert all(on[n] != off[n] for n in with_it)
    assert {c.stages for c in configs if applies(c)} == {2, 3}
    for c in configs:  # stages 3: the look-ahead loop, not the deferred dQ; a dS^T buffer per stage; the read lag
        if applies(c) and c.stages == 3:
            assert "constexpr bool PIPELINE = false;" in on[c.name] and W.ds_buffers(c) == 3, c.name
            monkeypatch.setattr(backward_wgmma, "PIPELINE", False)
            assert W.ds_buffers(c) == 4 and not W.reads_dq_with_lag(c), c.name
            monkeypatch.setattr(backward_wgmma, "PIPELINE", True)
            assert W.reads_dq_with_lag(c) == (W.dq_mode(c) == 2), c.name


def hgmma_kinds(code: str) -> list[str]:
    """The main kernel's HGMMAs in issue order: 's' S^T / dP^T (both operands from shared memory, K-major), 'kv'
    dV / dK (A from registers), 'q' dQ (both transposed); ptxas's null HGMMA.64x8x16 left out."""
    kinds = []
    for line in code.splitlines():
        m = re.search(r"HGMMA\.64x(\d+)x16\S* (R\d+|RZ), (\S+)", line)
        if not m or m.group(2) == "RZ":
            continue
        kinds.append("q" if ".tnspA" in line else "kv" if m.group(3).startswith("R") else "s")
    return kinds


@pytest.mark.parametrize("c", [served("bf16"), served("bf16", True), served("fp16", True),
                               served("bf16", True, dq_via_producer=0), served("bf16", False, dq_via_producer=1),
                               served("fp16", False, deterministic=True), served("bf16", True).replace(stages=3),
                               served("bf16", False, deterministic=True).replace(stages=3)], ids=lambda c: c.name)
def test_on_compiles_clean_and_issues_the_next_tile_before_this_tiles_dq(on, c, tmp_path):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels.compile import compile_kernel

    assert W.pipelines(c) and MARK in render(c)
    kernel = compile_kernel(c, use_cache=False)
    rep = kernel.report
    assert rep.spills == 0 and rep.stack_frame == 0 and not rep.wgmma_serialized, rep
    code = sass(kernel.cubin, tmp_path, c.name)
    assert "LDL" not in code and "STL" not in code
    steps = 4  # k16 steps of each product at D 64, block_m 64 (S^T, dP^T over the head dim; dV, dK over queries)
    # the prologue's S^T, dP^T; in the loop: dV, the next tile's S^T, dP^T, dK, then dQ over the block's 128 keys
    assert hgmma_kinds(code) == ["s"] * 2 * steps + ["kv"] * steps + ["s"] * 2 * steps + ["kv"] * steps + ["q"] * 8
