"""flash_bwd_wgmma without a GPU: its rules refuse what it does not implement (variants, D 256,
the deterministic mode beside the other dQ schedules) and the tiles that do not fit, its defaults are valid, it renders and
compiles for sm_90a with no spills or local memory, and its SASS has HGMMA (the wgmma products), the vector
dQ reductions and, with a producer warpgroup, setmaxnreg and mbarrier waits. GPU correctness and speed: tests/test_backward_wgmma_gpu.py,
benchmarks/bench_backward_wgmma.py."""

import re

import pytest

from autoflash.kernels.registry import TEMPLATES
from autoflash.ops.backward import OPERATION
from autoflash.ops.backward_wgmma import TEMPLATE as WG
from sass import sass as read_sass


def key(dtype="bf16", d=128, causal=False, **flags):
    k = dict(dtype=dtype, head_dim=d, causal=causal, deterministic=False, window=False, softcap=False,
             sinks=False, alibi=False)
    k.update(flags)
    return k


def cfg(dtype="bf16", d=128, causal=False, bm=64, bn=128, warps=None, stages=2, **flags):
    return WG.config("sm_90a", key(dtype, d, causal, **flags), block_m=bm, block_n=bn,
                     warps=warps if warps is not None else 4 * (bn // 64), stages=stages, warps_q=1)


def test_registered_with_the_backward_operation():
    assert TEMPLATES["flash_bwd_wgmma"] is WG and WG in OPERATION.templates


def test_defaults_take_the_producer_warpgroup():
    """D 64 and D 128 default to two consumers and a producer warpgroup (H200: 8-9 % at D 128, 3-5 % at D 64
    over the same tiles without one), stages 2 (the pipelined stages 3 ran 2-6 % slower)."""
    for d in (64, 128):
        c = WG.default("sm_90a", key("bf16", d, False))
        assert (c.block_m, c.block_n, c.warps, c.stages) == (64, 128, 12, 2) and WG.producer(c), c.name
    det64 = WG.default("sm_90a", key("bf16", 64, False, deterministic=True))  # (the producer tile: 12 % slower)
    assert (det64.block_m, det64.warps, det64.deterministic) == (128, 8, True)
    assert WG.producer(WG.default("sm_90a", key("bf16", 128, True, deterministic=True)))


def test_defaults_are_valid():
    for dtype in WG.dtypes:
        for d in (64, 128):
            for causal in (False, True):
                c = WG.default("sm_90a", key(dtype, d, causal))
                assert c.problems() == [], c.name


@pytest.mark.parametrize("bad,reason", [
    (cfg(warps=4), "4 per warpgroup"),
    (cfg(d=128, bn=64), "one warpgroup spills"),
    (cfg(d=64, bm=128, bn=64), "one warpgroup spills"),
    (cfg(d=128, bm=128), "accumulator registers"),  # dK, dV 128 + S^T, dP^T 128 + P^T 32
    (cfg(d=64, bm=64, bn=128), "must split over 2 warpgroups"),  # 32-column dQ slices
    (cfg(d=64, bm=128, warps=12), "consumers get 240 registers"),  # producer: spills at D 64 x 128 queries
    (cfg(bn=64, warps=8), "needs ONE_CONSUMER"),  # one consumer + a producer: D 128 needs 182 KB (two CTAs an SM)
    (cfg(stages=3), "needs a producer warpgroup"),  # the pipelined schedule waits on the producer's mbarriers
    (cfg(stages=4, warps=12), "not one of"),
    (cfg(warps=16), "not one of"),
    (cfg(d=256, bn=64), "head_dim 256 is not supported"),
    (cfg(dtype="fp32"), "does not support dtype fp32"),
    (cfg(window=True), "window True is not supported"),
    (cfg(softcap=True), "softcap True is not supported"),
    (cfg(sinks=True), "sinks True is not supported"),
    (cfg(alibi=True), "alibi True is not supported"),
])
def test_rules_refuse_before_compiling(bad, reason):
    problems = bad.problems()
    assert any(reason in p for p in problems), problems


def test_unsupported_keys_are_not_claimed():
    assert WG.supports("sm_90a", key())
    assert not WG.supports("sm_90", key())  # wgmma needs the arch-specific target
    assert WG.supports("sm_90a", key(deterministic=True))
    for flag in ("window", "softcap", "sinks", "alibi"):
        assert not WG.supports("sm_90a", key(**{flag: True})), flag


def test_serving_config_only_where_it_serves():
    from autoflash.ops.backward_wgmma import serving_config

    c = serving_config("sm_90", key("fp16", 64, True))
    assert c.template == "flash_bwd_wgmma" and c.arch == "sm_90a" and c.problems() == []
    assert serving_config("sm_80", key()) is None and serving_config("sm_89", key()) is None
    assert serving_config("sm_90", key(d=256)) is None
    for flag in ("window", "softcap", "sinks", "alibi"):
        assert serving_config("sm_90", key(**{flag: True})) is None, flag
    det = serving_config("sm_90", key(deterministic=True))  # (SERVE_DETERMINISTIC: its GPU tests passed)
    assert det.template == "flash_bwd_wgmma" and det.deterministic and det.problems() == []
    incomplete = key()
    del incomplete["window"]  # a key missing a flag is not claimed
    assert serving_config("sm_90", incomplete) is None


def test_pipelined_schedule_shared_memory():
    """stages 3: three query-tile buffers and a dS^T tile each, one more dS^T tile where the uneven dQ
    split (D 64) lets the second warpgroup run ahead while dQ reads a tile's dS^T an iteration late."""
    even, uneven = cfg(d=128, warps=12, stages=3), cfg(d=64, warps=12, stages=3)
    assert even.problems() == [] and uneven.problems() == []
    assert WG.ds_buffers(even) == 3 and WG.ds_buffers(uneven) == 4 and WG.ds_buffers(cfg(d=128, warps=12)) == 2
    lay = WG.smem_layout(even)
    assert lay["total"] == 2 * lay["kv"] + 6 * lay["qo"] + 3 * lay["ds"] + 6 * 4 * 64 + 16 * 3
    assert WG.smem_bytes(even) <= 227 * 1024


def test_search_space_has_valid_configs():
    for d in (64, 128):
        valid = [c for c in WG.space("sm_90a", key(d=d)) if not c.problems()]
        assert len(valid) >= 1, d


def assert_compiles_clean(c) -> None:
    """c's kernels compile with no spills, no stack frame and wgmma not serialised (skipped without CuPy)."""
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels.compile import compile_kernel

    report = compile_kernel(c).report
    assert report.spills == 0 and report.stack_frame == 0 and not report.wgmma_serialized, report


def tail_split_reductions(c) -> int:
    """red.global instructions of ops/backward_wgmma.TAIL_SPLIT's epilogue in c's SASS (a part adds dK and dV, a float
    pair an instruction: the tile's head dim / 2 of them), 0 where c renders no split."""
    values = WG.template_values(c)
    return values["head_dim"] // 2 if values["tail_split"] else 0


def kernel_sass(kernel, name: str, tmp_path) -> str:
    """The SASS of kernel `name` in a compiled kernel's cubin (skips the test without cuobjdump)."""
    return read_sass(kernel.cubin, tmp_path, name)


SCHEDULES = {"split": (False, False), "own_keys": (True, False), "bulk": (False, True)}  # (DQ_OWN_KEYS, DQ_BULK_REDUCE)


def _valid_configs(schedule):
    """Every valid bf16 config of a dQ schedule, dq_via_producer at its rule (-1; the explicit values:
    tests/test_backward_wgmma_dq_producer.py)."""
    from autoflash.ops import backward_wgmma

    saved = backward_wgmma.DQ_OWN_KEYS, backward_wgmma.DQ_BULK_REDUCE
    backward_wgmma.DQ_OWN_KEYS, backward_wgmma.DQ_BULK_REDUCE = SCHEDULES[schedule]
    try:
        return [(schedule, c) for d in (64, 128) for causal in (False, True)
                for c in WG.space("sm_90a", key("bf16", d, causal), {"dq_via_producer": (-1,)}) if not c.problems()]
    finally:
        backward_wgmma.DQ_OWN_KEYS, backward_wgmma.DQ_BULK_REDUCE = saved


def test_loops_split_pair_indices_without_dividing():
    # an integer division by per_head was ~20 instructions a tile (I2F, MUFU.RCP, F2I...): head_and_tile multiplies
    # (H200: -0.5..+2.6 % against an A/A copy, benchmarks/NOTES.md "Thirteenth session")
    from autoflash.kernels.render import render

    division = re.compile(r"(\bit|\bcur|\bj|\btile|\(it - 1\)) [/%] per_head")
    for _, c in _valid_configs("split"):
        code = "\n".join(line.split("//")[0] for line in render(c).splitlines())
        assert not division.search(code) and "head_and_tile(" in code, c.name


def test_ds_is_stored_by_stmatrix():
    # four STS.32 a k-step and their swizzle arithmetic became one stmatrix.x4 (H200: D 64 +1.5..+2.7 % against an
    # A/A, D 128 level; benchmarks/NOTES.md "Thirteenth session")
    from autoflash.kernels.render import render

    for _, c in _valid_configs("split"):
        source = render(c)
        assert "stmatrix_x4(ds_row" in source and "= dfrag[kk][i];" not in source, c.name


def test_schedules_exclude_each_other(monkeypatch):
    from autoflash.ops import backward_wgmma

    monkeypatch.setattr(backward_wgmma, "DQ_OWN_KEYS", True)
    monkeypatch.setattr(backward_wgmma, "DQ_BULK_REDUCE", True)
    assert any("not with DQ_OWN_KEYS" in p for p in cfg().problems())
    for own, bulk in ((True, False), (False, True)):
        monkeypatch.setattr(backward_wgmma, "DQ_OWN_KEYS", own)
        monkeypatch.setattr(backward_wgmma, "DQ_BULK_REDUCE", bulk)
        assert any("deterministic serialises" in p for p in cfg(deterministic=True).problems())


@pytest.mark.parametrize("schedule,c", [x for s in SCHEDULES for x in _valid_configs(s)] +
                         [("split", WG.default("sm_90a", key("fp16", d, c, deterministic=det)))
                          for d in (64, 128) for c in (False, True) for det in (False, True)] +
                         [("split", WG.default("sm_90a", key("bf16", d, c, deterministic=True)))
                          for d in (64, 128) for c in (False, True)] +
                         [("split", cfg(d=128, causal=True, warps=8, deterministic=True)),
                          ("split", cfg(d=64, bm=64, causal=True, warps=12, deterministic=True))] +
                         [("split", cfg(d=d, bm=64, causal=c, warps=12, stages=3, deterministic=True))
                          for d in (64, 128) for c in (False, True)],
                         ids=lambda x: x.name if hasattr(x, "name") else x)
def test_compiles_without_spills_and_uses_hgmma(schedule, c, tmp_path, monkeypatch):
    """Every valid bf16 config of every dQ schedule and every served (default) config, bf16 and fp16: no spills,
    no local memory, HGMMA in the SASS, and the dQ reductions the schedule makes (red.global from registers, or
    bulk from shared memory)."""
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels.compile import compile_kernel
    from autoflash.ops import backward_wgmma

    monkeypatch.setattr(backward_wgmma, "DQ_OWN_KEYS", SCHEDULES[schedule][0])
    monkeypatch.setattr(backward_wgmma, "DQ_BULK_REDUCE", SCHEDULES[schedule][1])
    kernel = compile_kernel(c)
    assert kernel.report.spills == 0 and kernel.report.registers <= 255 and not kernel.report.wgmma_serialized, \
        kernel.report
    assert "serialized" not in kernel.log  # ptxas did not serialise the wgmmas (a register hazard)
    main = kernel_sass(kernel, c.name, tmp_path)
    assert not re.search(r"\b(LDL|STL)\b", main), "local memory"
    # S^T, dP^T (m64 n block_m), dV, dK (m64 n D) and dQ (m64 n D / column groups)
    rows, cols = WG.dq_split(c)
    shapes = {f"HGMMA.64x{c.block_m}x16", f"HGMMA.64x{c.head_dim}x16", f"HGMMA.64x{c.head_dim // cols}x16"}
    for shape in shapes:
        assert shape in main, shape
    if WG.producer(c):  # the producer gives its registers up, the consumers wait on mbarriers
        producer_regs = WG.template_values(c)["producer_regs"]  # (24; PERSISTENT's walk holds 56)
        assert f"USETMAXREG.DEALLOC.CTAPOOL {producer_regs:#x}" in main and "USETMAXREG.TRY_ALLOC.CTAPOOL" in main
        assert "SYNCS.PHASECHK.TRANS64.TRYWAIT" in main
        rows, cols = WG.dq_split(c)
        if rows * cols < WG.consumers(c):  # dQ on fewer warpgroups: the others arrive, on alternating ids
            assert "BAR.ARV" in main and "BAR.SYNC.DEFER_BLOCKING R" in main
        elif WG.consumers(c) > 1:  # (ONE_CONSUMER's tile has no other warpgroup to wait for)
            assert schedule == "own_keys" or "BAR.SYNC.DEFER_BLOCKING 0x3, 0x100" in main  # the dS^T barrier
    if c.deterministic:  # the semaphore: an acquire load, a fence before the release add
        assert "LDG.E.STRONG.GPU" in main and "MEMBAR" in main, "no dq_sem ordering"
    if schedule == "bulk" or WG.dq_via_producer(c):  # (the rule: producer configs but D 128 stages 3)
        # bulk reductions only (but TAIL_SPLIT's fp32 dK, dV sums in the epilogue)
        assert "UBLKRED.G.S.ADD.F32" in main and main.count("REDG") == tail_split_reductions(c)
    else:
        assert "REDG.E.ADD.F32x2" in main  # the dQ tile's vector reductions
    if WG.producer(c) and WG.dq_mode(c) == 2:  # one bulk op a tile; the stmatrix staging stores (dS^T's are STSM too):
        # no float2 stores of dQ
        # (PERSISTENT: one in the walk, one in the drain of the last tiles after it)
        bulk_ops = 2 if WG.persistent(c) else 1
        assert main.count("UBLKRED.G.S.ADD.F32") == bulk_ops and "STSM" in main and "STS.64" not in main
