"""flash_bwd_wgmma's DQ_STAGE_ROTATE switch without a GPU (ops/backward_wgmma.py; 0 = off, not timed yet): with
dq_via_producer=2 the consumers' float2 stores to the unpadded dQ staging tile put the 8 rows of a warp's store on
the same 8 banks (rows 256 / 512 B apart: 8 wavefronts a store); at R (1, 2), lane g stores column block
b ^ (g % 2 ** R) at step b (values moved by R rounds of selects): 4 / 2 wavefronts a store, the tile still
dq_accum's row-major range.
Checked here: off, every config renders byte-identical to the templates before the switch (git BEFORE); on, only
configs staging dQ unpadded change; the lanes' store pattern (modelled on the template's index arithmetic) writes
every element of the tile once, to its row-major place, conflict-free per half-warp; D 64 / D 128 (causal and
not, stages 3) compile with no spills, no local memory, one bulk reduction and the same 16 float2 stores.
GPU correctness: tests/test_backward_wgmma_bd_gpu.py."""
import re

import pytest

from autoflash.kernels.render import render
from autoflash.ops import backward_wgmma
from autoflash.ops.backward_wgmma import TEMPLATE as WG
from template_history import templates_at
from test_backward_wgmma import SCHEDULES, _valid_configs, cfg, kernel_sass, key

BEFORE = "38072a2"  # the tree before DQ_STAGE_ROTATE (the sixth session's end)
FILES = ("flash_bwd_wgmma.cu.j2", "flash_bwd_wgmma_steps.cuh.j2", "hopper_bwd_ptx.cuh.j2")
MARK = "(DQ_STAGE_ROTATE)"


def tile_config(d=64, causal=True, stages=2, dtype="bf16"):
    """The producer tile with dq_via_producer=2 (the D 64 rule's value: spelled -1 there)."""
    c = cfg(dtype=dtype, d=d, causal=causal, warps=12, stages=stages)
    return c if WG.dq_mode(c) == 2 else c.replace(dq_via_producer=2)


def every_config():
    """Every valid config of every dQ schedule (the rule), with each explicit dq_via_producer value that applies,
    fp16 twins and the deterministic defaults."""
    out = []
    for schedule in SCHEDULES:
        for _, c in _valid_configs(schedule):
            out.append((schedule, c))
            if schedule == "split":
                for mode in (0, 1, 2):
                    x = c.replace(dq_via_producer=mode)
                    if not x.problems():
                        out.append((schedule, x))
    out += [("split", c.replace(dtype="fp16")) for s, c in list(out) if s == "split"]
    out += [("split", WG.default("sm_90a", key("bf16", d, cz, deterministic=True))) for d in (64, 128) for cz in (False, True)]
    return out


def _render_in(schedule, c, monkeypatch, fn):
    monkeypatch.setattr(backward_wgmma, "DQ_OWN_KEYS", SCHEDULES[schedule][0])
    monkeypatch.setattr(backward_wgmma, "DQ_BULK_REDUCE", SCHEDULES[schedule][1])
    return fn(c)


def test_off_renders_the_templates_before_it(tmp_path, monkeypatch):
    """Switch off: every config's source is byte-identical to the three templates at BEFORE (the new template value
    dq_rotate is unused there)."""
    before = templates_at(BEFORE, FILES, tmp_path).get_template(WG.template_file)
    assert backward_wgmma.DQ_STAGE_ROTATE == 0
    configs = every_config()
    assert len(configs) >= 60 and sum(WG.dq_mode(c) == 2 for _, c in configs) >= 8
    for schedule, c in configs:
        new = _render_in(schedule, c, monkeypatch, render)
        # (BEFORE's templates also read dq_alternate: DQ_ALTERNATE, off then, removed since)
        old = _render_in(schedule, c, monkeypatch, lambda x: before.render(**WG.values(x), dq_alternate=False))
        assert new == old and MARK not in new, c.name


@pytest.mark.parametrize("rounds", [1, 2])
def test_on_changes_only_the_unpadded_staging(rounds, monkeypatch):
    """On: configs staging dQ unpadded (mode 2) render the rotated stores; every other config renders as off."""
    configs = every_config()
    off = {c.name + s: _render_in(s, c, monkeypatch, render) for s, c in configs}
    monkeypatch.setattr(backward_wgmma, "DQ_STAGE_ROTATE", rounds)
    changed = 0
    for s, c in configs:
        source = _render_in(s, c, monkeypatch, render)
        if WG.dq_mode(c) == 2 and WG.producer(c):
            changed += 1
            assert MARK in source and source != off[c.name + s], c.name
            assert "*reinterpret_cast<float2*>(row + (b ^ rot) * 8) = v[b];" in source
            assert f"constexpr int ROT = {2 ** rounds};" in source
        else:
            assert source == off[c.name + s], c.name
    assert changed >= 8


def test_bad_switch_value_is_refused(monkeypatch):
    monkeypatch.setattr(backward_wgmma, "DQ_STAGE_ROTATE", 3)
    with pytest.raises(ValueError, match="DQ_STAGE_ROTATE=3"):
        render(tile_config())


def _store_pattern(rounds, dq_n=64):
    """(step, lane) -> (row, column, value's column) of the staging stores of one warp and h, as the template
    computes them: the value v[b] after the select rounds, stored at column block b ^ rot (rounds 0: the plain
    loop)."""
    out = {}
    rot_n = 2 ** rounds
    for lane in range(32):
        g, t = lane // 4, lane % 4
        rot = g % rot_n
        v = list(range(dq_n // 8))  # v[b] = column block b's float2
        for bit in (b for b in (1, 2) if b < rot_n):
            for b in range(dq_n // 8):
                if not b & bit:
                    x, y = v[b], v[b + bit]
                    v[b], v[b + bit] = (y, x) if rot & bit else (x, y)
        for b in range(dq_n // 8):
            out[b, lane] = (g, (b ^ rot) * 8 + 2 * t, v[b] * 8 + 2 * t)
    return out


def _wavefronts(addresses):
    """Shared-memory wavefronts of one warp's 64-bit stores: per half-warp, the most distinct 8-byte words a bank
    pair (32 pairs of 4-byte banks cover 128 B) is asked for."""
    total = 0
    for half in (addresses[:16], addresses[16:]):
        words = {}
        for a in half:
            words.setdefault((a // 8) % 16, set()).add(a // 8)
        total += max(len(w) for w in words.values())
    return total


@pytest.mark.parametrize("d", [64, 128])
def test_rotated_stores_cover_the_tile_conflict_free(d):
    """Each value lands at its own column (row-major, unpadded: the one bulk op reads it linearly), every (row,
    column pair) once; a store is 2 wavefronts with two rounds, 4 with one (was 8)."""
    for rounds, waves in ((0, 8), (1, 4), (2, 2)):
        pattern = _store_pattern(rounds)
        assert all(col == value_col for _, col, value_col in pattern.values())
        assert len({(r, c) for r, c, _ in pattern.values()}) == 32 * 8  # 8 rows x 8 blocks x 4 lanes
        for b in range(8):
            rows_cols = [pattern[b, lane] for lane in range(32)]
            assert _wavefronts([(r * d + c) * 4 for r, c, _ in rows_cols]) == waves, (rounds, b)


@pytest.mark.parametrize("d,causal,stages,dtype,rounds", [(64, True, 2, "bf16", 2), (64, False, 2, "fp16", 2),
                                                          (128, True, 2, "bf16", 2), (128, False, 2, "fp16", 2),
                                                          (64, True, 3, "bf16", 2), (64, True, 2, "bf16", 1),
                                                          (128, True, 2, "bf16", 1)])
def test_compiles_without_spills(d, causal, stages, dtype, rounds, tmp_path, monkeypatch):
    """On: no spills, no local memory, ptxas keeps the wgmmas asynchronous; the consumers still issue 16 float2
    stores a tile (one loop, or the pipelined one), the selects are FSELs, the producer one bulk reduction."""
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels.compile import compile_kernel

    c = tile_config(d, causal, stages, dtype)
    assert c.problems() == []
    plain = kernel_sass(compile_kernel(c), c.name, tmp_path)
    monkeypatch.setattr(backward_wgmma, "DQ_STAGE_ROTATE", rounds)
    kernel = compile_kernel(c)
    print(f"{c.name}: {kernel.report.registers} registers, {kernel.report.spills} B spilled")
    assert kernel.report.spills == 0 and kernel.report.registers <= 168 and "serialized" not in kernel.log
    main = kernel_sass(kernel, c.name, tmp_path)
    assert main.count("UBLKRED.G.S.ADD.F32") == 1 and "REDG" not in main
    assert not re.search(r"\b(LDL|STL)\b", main), "local memory"
    assert main.count("STS.64") == plain.count("STS.64") and main.count("STS.64") % 16 == 0
    assert main.count("FSEL") >= plain.count("FSEL") + 32 * rounds  # a select round over 32 floats each
