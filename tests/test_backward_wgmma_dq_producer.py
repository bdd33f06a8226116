"""flash_bwd_wgmma's dq_via_producer knob without a GPU (ops/backward_wgmma.py; BackwardConfig field, -1 = the
rule: DQ_RULE, 2 (one bulk reduction a tile, from an unpadded staging tile whose stores are rotated per lane), for
producer configs that are not deterministic and hold a staging tile; 1: a bulk reduction a row, padded rows): off
(0, or the rule off), every config renders the source it rendered before the knob existed (none of its code is in
it; an explicit 0 renders what the rule's off renders); the rules refuse an explicit value that cannot apply (no
producer warpgroup, deterministic) or equals the rule's (spelled -1), the staging tiles fit in shared memory (two
at D 64; at D 128 two unpadded or one padded, and none with the pipelined stages 3: the rule is off there), the
rotated stores (modelled on the template's index arithmetic) write every element once, to its row-major place,
2 wavefronts a store, and D 64 / D 128 compile for sm_90a with no spills or local memory, the producer within its
setmaxnreg budget, the consumers storing dQ to shared memory (no red.global) and the producer reducing it with bulk
copies (value 2, the rule's: the served configs' compiles, tests/test_backward_wgmma.py). GPU correctness:
tests/test_backward_wgmma_dq_producer_gpu.py (1), tests/test_backward_wgmma_dq_tile_gpu.py (2)."""
import re

import pytest

from autoflash.kernels.render import render
from autoflash.ops import backward_wgmma
from autoflash.ops.backward_kernels import TEMPLATE as BackwardMma, BackwardConfig
from autoflash.ops.backward_wgmma import TEMPLATE as WG
from test_backward_wgmma import SCHEDULES, _valid_configs, cfg, kernel_sass, key, tail_split_reductions

KNOB_TEXT = ("DQ_BUFS", "DQ_PSTRIDE", "dq_full_bar", "dq_empty_bar", "DQ_VIA_PRODUCER")


def on(d=128, mode=1, **kw):
    """A producer config with dQ path `mode` (1: a bulk op a row, 2: one a tile): -1 where the rule picks it (2),
    else spelled out."""
    c = cfg(d=d, warps=12, **kw)
    return c if WG.dq_mode(c) == mode else c.replace(dq_via_producer=mode)


def off(c):
    """The config with the knob off: -1 where the rule is off, else 0."""
    return c.replace(dq_via_producer=0) if WG.dq_via_producer(c) else c


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_off_renders_none_of_its_code(schedule, monkeypatch):
    """Knob off: no config's source has a line of the staging path (every valid config of every dQ schedule;
    the sha1 of all 56 split-schedule renders equalled the module switch's off renders, /tmp/BK_notes.md)."""
    configs = _valid_configs(schedule)
    monkeypatch.setattr(backward_wgmma, "DQ_OWN_KEYS", SCHEDULES[schedule][0])
    monkeypatch.setattr(backward_wgmma, "DQ_BULK_REDUCE", SCHEDULES[schedule][1])
    assert configs
    for _, c in configs:
        c = off(c)
        assert c.problems() == [], c.problems()
        source = render(c)
        assert not [t for t in KNOB_TEXT if t in source], c.name
        assert "red.global.add.v2.f32" in source or schedule == "bulk", c.name


@pytest.mark.parametrize("causal", [False, True])
def test_explicit_off_renders_the_rules_off(causal, monkeypatch):
    """dq_via_producer=0 at D 128 (where the rule is on) renders the source the rule renders where it is off,
    byte for byte but for the kernel names (their "_dqp0")."""
    c = cfg(d=128, causal=causal, warps=12)
    assert WG.dq_via_producer(c) and "DQ_PSTRIDE" in render(c)
    explicit = render(c.replace(dq_via_producer=0))
    monkeypatch.setattr(backward_wgmma, "DQ_RULE", 0)  # the rule off
    assert not WG.dq_via_producer(c)
    assert explicit == render(c).replace(c.name, c.name + "_dqp0") and c.name + "_dqp0" in explicit


def test_on_changes_only_producer_configs():
    """On: producer configs render the staging path (and no longer the consumers' red.global adds)."""
    for d in (64, 128):
        c = on(d=d, causal=True)
        source = render(c)
        assert all(t in source for t in KNOB_TEXT[:4]), d
        assert "add_pair(dq_rows" not in source and "bulk_reduce_add(dq_accum" in source
        assert f"constexpr int DQ_BUFS = {2 if d == 64 else 1};" in source


def test_rule():
    """-1: DQ_RULE (2, one bulk op a tile) for producer configs, not deterministic, with room for a staging tile (D
    64 stages 2 and 3, D 128 stages 2); off without a producer, deterministic, and at D 128 stages 3 (no room); D 256
    has no config here."""
    assert backward_wgmma.DQ_RULE == 2
    assert WG.dq_mode(cfg(d=128, warps=12)) == 2 and WG.dq_mode(cfg(d=128, causal=True, warps=12)) == 2
    assert WG.dq_mode(cfg(d=64, warps=12)) == 2 and WG.dq_mode(cfg(d=64, warps=12, stages=3, causal=True)) == 2
    for c in (cfg(d=128, warps=8), cfg(d=64, bm=128, warps=8), cfg(d=64, warps=12, deterministic=True),
              cfg(d=128, warps=12, deterministic=True), cfg(d=128, warps=12, stages=3)):
        assert c.problems() == [] and not WG.dq_via_producer(c) and WG.dq_staging_bytes(c) == 0, c.name
    assert any("head_dim 256 is not supported" in p for p in cfg(d=256, warps=12).problems())


@pytest.mark.parametrize("bad,reason", [
    (lambda: cfg(warps=8, dq_via_producer=1), "dq_via_producer=1: the producer warpgroup reduces dQ"),
    (lambda: cfg(d=64, bm=128, warps=8, dq_via_producer=1), "has none"),
    (lambda: cfg(warps=12, deterministic=True, dq_via_producer=1), "deterministic keeps the consumers' dQ adds"),
    (lambda: cfg(d=128, warps=12, stages=3, dq_via_producer=1), "shared memory"),  # three stages + a 34 KB tile
    (lambda: cfg(d=128, warps=12, stages=3, dq_via_producer=2), "shared memory"),  # unpadded: 32 KB, still too much
    (lambda: cfg(d=128, warps=12, dq_via_producer=2), "is the rule's value"),  # spelled -1
    (lambda: cfg(d=64, warps=12, dq_via_producer=2), "spelled -1"),
    (lambda: cfg(warps=8, dq_via_producer=0), "spelled -1"),
    (lambda: cfg(d=128, warps=12, stages=3, dq_via_producer=0), "spelled -1"),
    (lambda: cfg(warps=12, dq_via_producer=3), "dq_via_producer=3 is not one of [-1, 0, 1, 2]"),
    (lambda: cfg(warps=12, dq_via_producer=True), "dq_via_producer must be an integer"),
    (lambda: BackwardMma.default("sm_90", key("bf16", 128, False)).replace(dq_via_producer=0),
     "dq_via_producer=0 is a flash_bwd_wgmma knob; flash_bwd_mma needs -1"),
])
def test_rules_refuse_with_the_reason(bad, reason):
    problems = bad().problems()
    assert any(reason in p for p in problems), problems


def test_names_and_stored_entries():
    """Named only when set (entries written before the knob keep their names and get the rule); a stored
    config without the field reads as -1, one with it round-trips."""
    c = cfg(d=128, causal=True, warps=12)
    assert c.name.endswith("_w12_s2_wq1_causal") and c.replace(dq_via_producer=0).name.endswith("_causal_dqp0")
    data = c.to_dict()
    del data["dq_via_producer"]
    assert BackwardConfig.from_dict(data) == c
    d64 = cfg(d=64, warps=12, dq_via_producer=1)
    assert BackwardConfig.from_dict(d64.to_dict()) == d64 and d64.name.endswith("_dqp1")


def test_search_space_has_every_value():
    """The tuner's space (Template.space over the knobs) holds the knob: the rule (2) and the other values (1 too,
    dominated on the H200), per producer tile of stages 2."""
    assert WG.knobs["dq_via_producer"] == (-1, 0, 1, 2)
    for d in (64, 128):
        valid = [c for c in WG.space("sm_90a", key("bf16", d, False)) if not c.problems() and WG.producer(c)]
        stages2 = {c.dq_via_producer for c in valid if c.stages == 2}
        assert stages2 == {-1, 0, 1}, (d, stages2)


def test_default_keys_get_the_rule():
    """The defaults stay the tiles they were (names unchanged): D 64's and D 128's stage dQ for the producer (one
    bulk op a tile), the deterministic ones do not."""
    for d in (64, 128):
        for det in (False, True):
            c = WG.default("sm_90a", key("bf16", d, True, deterministic=det))
            assert c.problems() == [] and c.dq_via_producer == -1 and "dqp" not in c.name
            assert WG.dq_mode(c) == (0 if det else 2), c.name


def test_staging_shared_memory():
    """A staging tile is BLOCK_M rows of D + 8 floats; two where they fit (D 64: 137 KB), else one (D 128:
    196 KB; two would need 231.5 KB + the 1 KB alignment, over sm_90's 227 KB)."""
    for d, bufs in ((64, 2), (128, 1)):
        c = on(d=d)
        lay = WG.smem_layout(c)
        assert lay["dq_staging"] == 64 * (d + 8) * 4 and lay["dq_bufs"] == bufs
        assert WG.smem_bytes(c) <= 232448  # sm_90's limit a block
        assert (WG.smem_bytes(c) + lay["dq_staging"] + 16 > 232448) == (bufs == 1)  # (room for a second one?)
    assert WG.smem_layout(off(cfg(d=128, warps=12)))["dq_bufs"] == 0


def _producer_max_register(sass: str) -> int:
    """The highest register the producer warpgroup's code names (from its setmaxnreg.dec to its exit)."""
    lines = sass.splitlines()
    start = next(i for i, line in enumerate(lines) if "USETMAXREG.DEALLOC" in line)
    end = next(i for i in range(start, len(lines)) if re.search(r"\bEXIT\b", lines[i]))
    return max(int(r) for line in lines[start:end + 1] for r in re.findall(r"\bR(\d+)\b", line))


@pytest.mark.parametrize("d,causal,stages,dtype", [(64, True, 2, "bf16"), (128, True, 2, "bf16"),
                                                   (64, False, 2, "fp16"), (128, False, 2, "fp16"),
                                                   (64, True, 3, "bf16")])
def test_compiles_without_spills(d, causal, stages, dtype, tmp_path):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels.compile import compile_kernel

    c = on(dtype=dtype, d=d, causal=causal, stages=stages)
    assert c.problems() == []
    kernel = compile_kernel(c)
    print(f"{c.name}: {kernel.report.registers} registers, {kernel.report.spills} B spilled")
    assert kernel.report.spills == 0 and kernel.report.registers <= 168, kernel.report  # (384 threads, 1 block)
    assert "serialized" not in kernel.log
    main = kernel_sass(kernel, c.name, tmp_path)
    # the producer's bulk reductions only (but TAIL_SPLIT's fp32 dK, dV sums in the epilogue)
    assert "UBLKRED.G.S.ADD.F32" in main and main.count("REDG") == tail_split_reductions(c)
    assert not re.search(r"\b(LDL|STL)\b", main), "local memory"
    assert "STS.64" in main  # the consumers' float2 stores of dQ to the staging tile
    assert "USETMAXREG.DEALLOC.CTAPOOL 0x18" in main and _producer_max_register(main) < 24


def test_rule_picks_the_tile_reduction(monkeypatch):
    """DQ_RULE = 2 (H200: over 1 +8-11 % at D 128, +21-25 % at D 64) serves the D 64 and D 128 producer defaults
    with one bulk op a tile from the stmatrix stores; the deterministic defaults keep the consumers' adds; 2 is
    spelled -1."""
    monkeypatch.setattr(backward_wgmma, "CAUSAL_WALK", False)  # (the walk's producer reduces dQ in its own loop)
    for d in (64, 128):
        c = WG.default("sm_90a", key("bf16", d, True))
        source = render(c)
        assert WG.dq_mode(c) == 2 and "(dq_via_producer=2)" in source and STAGED in source and "dqp" not in c.name
        assert any("spelled -1" in p for p in c.replace(dq_via_producer=2).problems())
        assert WG.dq_mode(WG.default("sm_90a", key("bf16", d, True, deterministic=True))) == 0


STAGED = "stmatrix_x4(row + 64 * k"  # the stmatrix staging store (dq_accum's permuted order)
PERMUTED = "row[(2 * c) ^ (r % 8)]"  # the _dq kernel's read of that order


def test_tile_reduce_value(monkeypatch):
    """dq_via_producer=2: the staging rows unpadded (the tile one contiguous range of dq_accum, so D 128 holds two
    staging tiles), stored by stmatrix and read back permuted by the _dq kernel, one producer thread reduces it and frees it (count 1); 1 keeps none of
    that code."""
    monkeypatch.setattr(backward_wgmma, "CAUSAL_WALK", False)  # (as above)
    for d in (64, 128):
        rows = render(on(d=d))
        assert "(dq_via_producer=2)" not in rows and STAGED not in rows and PERMUTED not in rows
        assert "DQ_PSTRIDE = HEAD_DIM + 8;" in rows
    for d, bufs in ((64, 2), (128, 2)):
        c = on(d=d, mode=2, causal=True)
        source, lay = render(c), WG.smem_layout(c)
        assert c.problems() == [] and WG.dq_mode(c) == 2 and c.name.endswith("_causal")
        assert "(dq_via_producer=2)" in source and "DQ_PSTRIDE = HEAD_DIM + 0;" in source
        assert STAGED in source and PERMUTED in source
        assert "mbar_init(dq_empty_bar + 8 * b, 1);" in source and lay["dq_bufs"] == bufs
        assert lay["dq_staging"] == 64 * d * 4 and WG.smem_bytes(c) <= 232448
    for bad, reason in ((cfg(warps=8, dq_via_producer=2), "dq_via_producer=2: the producer warpgroup"),
                        (cfg(warps=12, deterministic=True, dq_via_producer=2), "dq_via_producer=2: deterministic")):
        assert any(reason in p for p in bad.problems()), bad.problems()


def _stmatrix_places(d: int) -> dict:
    """(row, column) -> byte offset where the stmatrix staging puts dQ's fp32 in a 16-row slice, as the template
    computes it: lane 4g + t holds row g + 8h, column 8b + 2t + e of the accumulator as matrix (b, e)'s b16 pair t;
    lane 8 mi + mr gives row mr's address of matrix mi of x4 number k (matrices (2k, 0), (2k, 1), (2k + 1, 0),
    (2k + 1, 1)) by the template's per-lane offsets."""
    place = {}
    for h in range(2):
        for k in range(d // 16):
            for mi in range(4):
                b, e = 2 * k + mi // 2, mi % 2
                for mr in range(8):
                    flip = (mr // 4) * 64
                    offset = mr * d * 4 + (mi ^ (mr % 4)) * 16 + 64 * k + (-flip if k % 2 else flip)
                    for t in range(4):
                        place[(8 * h + mr, 8 * b + 2 * t + e)] = 8 * h * d * 4 + offset + 4 * t
    return place


@pytest.mark.parametrize("d", [64, 128])
def test_stmatrix_staging_is_what_the_dq_kernel_reads(d):
    """Every value stored once; the _dq kernel's thread c finds column 8c + i at chunk (2c + i % 2) ^ (r % 8), float
    i // 2; a matrix's 8 rows fall on 8 distinct 16-byte bank groups (one wavefront a matrix)."""
    place = _stmatrix_places(d)
    assert sorted(place.values()) == list(range(0, 16 * d * 4, 4))
    for (row, col), byte in place.items():
        c, i = divmod(col, 8)
        assert byte == row * d * 4 + (((2 * c + i % 2) ^ (row % 8)) * 4 + i // 2) * 4, (row, col)
    for h in range(2):
        for b in range(d // 8):
            for e in range(2):
                assert len({(place[(8 * h + mr, 8 * b + e)] % 128) // 16 for mr in range(8)}) == 8
