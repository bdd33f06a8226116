"""flash_fwd_wgmma's tail split (ops/forward_wgmma.TAIL_SPLIT), without a GPU:
- the template's task numbering, emulated here (its expressions are checked against the template's text): over
  the CTAs of a grid every (item, half) runs exactly once, for dense causal launches with tail 0, tail =
  grid - 1, items < grid (one CTA per item), odd tile counts; the tail singles come heaviest first and a CTA's
  two singles are a heavy and a light one (the snake);
- the switch: off renders no tail code, on renders it; on, the tight-register causal configs compile without
  spills, local memory or serialised wgmma.
The kernels themselves: tests/test_wgmma_tail_split_gpu.py."""
from pathlib import Path

import pytest

from autoflash.kernels.registry import TEMPLATES
from autoflash.kernels.render import render
from autoflash.ops import forward_wgmma

WG = TEMPLATES["flash_fwd_wgmma"]
TEMPLATE = (Path(__file__).resolve().parents[1] / "templates" / "flash_fwd_wgmma.cu.j2").read_text()


def task_item(task: int, items: int, grid: int, bx: int, units: int) -> tuple[int, int]:
    """The template's task_item() of a causal dense launch: (item, half) of a CTA's task, item -1 when the CTA is
    done (all operands non-negative: // and % are C's)."""
    k, half = task // 2, task % 2
    if (k + 1) * grid <= items:
        return bx + k * grid, half  # a whole round
    rounds, tail = items // grid, items % grid
    first = task == 2 * rounds and bx < 2 * tail
    s = bx if first else 2 * grid - 1 - bx
    if task > 2 * rounds + (bx < 2 * tail) or s >= 2 * tail:
        return -1, half
    half = 0 if s < tail else 1
    r = s if s < tail else 2 * tail - 1 - s
    f = tail // units
    a = units - (tail - f * units)
    u = 0
    while r >= f + (u >= a):
        r -= f + (u >= a)
        u += 1
    return items - tail + (u - a if u >= a else u - a + units) + r * units, half


def cta_tasks(items: int, grid: int, bx: int, units: int) -> list[tuple[int, int]]:
    """A CTA's (item, half) sequence: its loop runs until task_item says -1."""
    tasks = []
    while (task := task_item(len(tasks), items, grid, bx, units))[0] >= 0:
        tasks.append(task)
    return tasks


def test_the_expressions_are_the_templates():
    for text in ("const int n = grid_n(), bx = cta(), k = task / PER_ITEM;", "half = task % PER_ITEM;",
                 "if (!split) return bx + k * n < items ? bx + k * n : -1;",
                 "if ((k + 1) * n <= items) return bx + k * n;  // a whole round",
                 "const int rounds = items / n, tail = items - rounds * n;",
                 "const bool first = task == 2 * rounds && bx < 2 * tail;",
                 "const int s = first ? bx : 2 * n - 1 - bx;",
                 "if (task > 2 * rounds + (bx < 2 * tail) || s >= 2 * tail) return -1;",
                 "half = s < tail ? 0 : 1;",
                 "int r = s < tail ? s : 2 * tail - 1 - s;",
                 "const int f = tail / units, a = units - (tail - f * units);",
                 "for (; r >= f + (u >= a); ++u) r -= f + (u >= a);",
                 "return items - tail + (u >= a ? u - a : u - a + units) + r * units;",
                 "const bool split = CAUSAL && !packed;",
                 "const int units = CAUSAL ? (q_tiles + 1) / 2 : q_tiles;"):
        assert text in TEMPLATE, text


def schedule(q_tiles: int, hb: int, grid: int) -> list[list[tuple[int, int]]]:
    """Each CTA's (item, half) sequence for q_tiles query tiles and hb (head, batch) pairs."""
    units = (q_tiles + 1) // 2
    items = units * hb
    return [cta_tasks(items, grid, bx, units) for bx in range(grid)]


def cost(item: int, half: int, q_tiles: int) -> int:
    """Key tiles of an (item, half) (top-left causal, block_n = block_m); 0 for odd T's middle light half."""
    u = item % ((q_tiles + 1) // 2)
    t = q_tiles - 1 - u if half == 0 else u
    return 0 if half == 1 and t == q_tiles - 1 - u else t + 1


CASES = [(q, hb, grid) for q in (1, 2, 3, 7, 8, 16, 33) for hb in (1, 5, 16, 64, 256) for grid in (1, 2, 7, 132, 133)]
CASES += [(2, 263, 132), (1, 527, 132), (8, 256, 132), (8, 33, 132), (8, 34, 132), (16, 64, 131), (32, 64, 132),
          (24, 64, 132)]  # tail 131, tail 0 and 4 at the H200's 132 CTAs


@pytest.mark.parametrize("q_tiles,hb,grid", CASES)
def test_every_item_half_runs_once(q_tiles, hb, grid):
    units = (q_tiles + 1) // 2
    items = units * hb
    grid = min(grid, items)  # the host's grid: persistent at most one CTA per item
    runs = [task for cta in schedule(q_tiles, hb, grid) for task in cta]
    assert sorted(runs) == [(i, h) for i in range(items) for h in (0, 1)]


def test_the_interesting_tails_are_covered():
    tails = {(units * hb) % min(grid, units * hb) for q, hb, grid in CASES for units in [(q + 1) // 2]}
    grids = {min(grid, (q + 1) // 2 * hb) for q, hb, grid in CASES}
    assert 0 in tails and 131 in tails and 1 in tails and 132 in grids
    assert any((q + 1) // 2 * hb < grid for q, hb, grid in CASES)  # items < grid


@pytest.mark.parametrize("q_tiles,hb,grid", [(8, 256, 132), (8, 34, 132), (16, 64, 132), (7, 100, 132), (2, 263, 132),
                                             (33, 16, 132), (4, 300, 132)])
def test_tail_singles_heaviest_first_dealt_in_a_snake(q_tiles, hb, grid):
    units = (q_tiles + 1) // 2
    items = units * hb
    rounds, tail = divmod(items, grid)
    assert tail
    ctas = schedule(q_tiles, hb, grid)
    singles = {}
    for bx, tasks in enumerate(ctas):
        assert tasks[:2 * rounds] == [(bx + k // 2 * grid, k % 2) for k in range(2 * rounds)]  # whole rounds as today
        for k, task in enumerate(tasks[2 * rounds:]):
            s = bx if k == 0 and bx < 2 * tail else 2 * grid - 1 - bx
            singles[s] = task
    assert sorted(singles) == list(range(2 * tail))
    costs = [cost(*singles[s], q_tiles) for s in range(2 * tail)]
    real = [c for c in costs if c]  # odd T: the middle item's light half (cost 0) runs nothing
    assert real == sorted(real, reverse=True)  # heavy halves by u ascending, then light ones by u descending
    # the tail round's busiest CTA: at most the heaviest single plus the lightest one it gets paired with
    tail_cost = [sum(cost(*t, q_tiles) for t in tasks[2 * rounds:]) for tasks in ctas]
    pair_cost = q_tiles + 1  # a pair: (T - u) + (u + 1) key tiles
    assert max(tail_cost) <= max(costs[0], pair_cost)


def config(d=64, block_m=192, block_n=128, stages=3, causal=True, **flags):
    cfg = WG.default("sm_90a", {"dtype": "bf16", "head_dim": d, "causal": causal, **flags})
    return type(cfg)(**{**cfg.to_dict(), "block_m": block_m, "block_n": block_n, "stages": stages,
                        "warps": 4 * (block_m // 64 + 1)})


def test_the_switch_is_off_and_renders_the_tail_code_only_on(monkeypatch):
    assert forward_wgmma.TAIL_SPLIT is False
    off = render(config())
    assert "task_item" not in off and "grid_n" not in off
    monkeypatch.setattr(forward_wgmma, "TAIL_SPLIT", True)
    on = render(config())
    assert on.count("task_item(task, half)") == 2 and on.count("if (item < 0) break;") == 2 and on != off
    # non-causal and paged kernels render as today (paged: its producer spilled 40 B at D 128 with the split)
    for cfg in (config(causal=False), config(128, 128, 128, 3, paged=True)):
        monkeypatch.setattr(forward_wgmma, "TAIL_SPLIT", True)
        on = render(cfg)
        monkeypatch.setattr(forward_wgmma, "TAIL_SPLIT", False)
        assert on == render(cfg), cfg.name


# The tightest register budgets (the producer's 24 registers spilled 4-24 B of hoisted tail arithmetic, or of
# varlen's cu_seqlens_q address, in earlier forms): three consumers at D 64, the served D 64 / 128 / 256 tiles, the
# D 64 window tiles, one consumer at block_n 240.
@pytest.mark.parametrize("d,block_m,block_n,stages,flags", [
    (64, 192, 128, 2, {}), (64, 192, 128, 3, {}), (64, 192, 96, 2, {}), (64, 128, 128, 4, {}), (64, 128, 112, 2, {}),
    (64, 128, 224, 2, {}), (128, 128, 160, 2, {}), (256, 128, 80, 2, {}), (128, 64, 128, 3, {}), (64, 64, 240, 2, {}),
    (64, 128, 128, 3, {"window": True}), (64, 128, 128, 4, {"window": True, "sinks": True}),
    (64, 192, 128, 3, {"window": True})])
def test_tail_split_compiles_without_spills(d, block_m, block_n, stages, flags, monkeypatch):
    from autoflash.kernels.compile import compile_kernel

    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    monkeypatch.setattr(forward_wgmma, "TAIL_SPLIT", True)
    cfg = config(d, block_m, block_n, stages, **flags)
    assert not cfg.problems()
    report = compile_kernel(cfg).report
    assert report.spills == 0 and report.stack_frame == 0 and not report.wgmma_serialized, report
