"""flash_bwd_wgmma's PERSISTENT switch (ops/backward_wgmma.py) without a GPU: off, nothing changes; on, only the
served D 64 producer tile (dq_via_producer 2, stages 2) takes the persistent grid, it compiles for sm_90a with no
spills, no local memory and no serialised wgmma, its launch is one CTA per SM with the item count as the last
argument, and the order in which the CTAs walk the work (work_units, the template's unit arithmetic in Python) visits
every (K/V tile, head) once, causal items balanced. GPU correctness: tests/test_backward_wgmma_persistent_gpu.py."""
import re
from types import SimpleNamespace

import pytest

from autoflash.kernels.render import render
from autoflash.ops import backward_gpu, backward_wgmma
from autoflash.ops.backward_gpu import BackwardLaunch
from autoflash.ops.backward_kernels import BackwardProblem
from autoflash.ops.backward_wgmma import TEMPLATE as WG
from autoflash.ops.backward_wgmma import work_units
from sass import sass as read_sass
from test_backward_wgmma import key


def valid_configs():
    return [c for dt in ("bf16", "fp16") for d in (64, 128) for causal in (False, True) for det in (False, True)
            for c in WG.space("sm_90a", key(dt, d, causal, deterministic=det)) if not c.problems()]


def served(dtype="bf16", d=64, causal=False):
    return WG.default("sm_90a", key(dtype, d, causal))


def test_off_by_default_and_only_the_served_d64_producer_tile_switches(monkeypatch):
    """Off: no config takes the schedule. On: exactly the D 64 producer tiles with dq_via_producer 2 at stages 2 (the
    served ones among them) render differently; every other valid config renders the same source as with it off."""
    assert backward_wgmma.PERSISTENT is False
    configs = valid_configs()
    assert not any(WG.persistent_schedule(c) for c in configs)
    off = {c.name: render(c) for c in configs}
    smem = {c.name: WG.smem_bytes(c) for c in configs}
    monkeypatch.setattr(backward_wgmma, "PERSISTENT", True)
    switched = [c for c in configs if WG.persistent_schedule(c)]
    assert {(c.head_dim, c.block_m, c.block_n, c.warps, c.stages, WG.dq_mode(c)) for c in switched} == {(64, 64, 128, 12, 2, 2)}
    assert all(served(dt, 64, causal) in switched for dt in ("bf16", "fp16") for causal in (False, True))
    assert not any(WG.persistent_schedule(served(dt, 128, causal)) for dt in ("bf16", "fp16") for causal in (False, True))
    for c in configs:
        source = render(c)
        assert (source != off[c.name]) == (c in switched), c.name
        assert WG.smem_bytes(c) == smem[c.name]  # (no shared memory added: named barriers, no mbarriers)
        if c in switched:
            assert "int n_items)" in source and "next_unit" in source
    print(f"{len(configs)} valid configs, {len(switched)} switched")


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize("causal", [False, True])
def test_persistent_d64_compiles_without_spills_or_serialisation(dtype, causal, tmp_path, monkeypatch):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels.compile import compile_kernel

    monkeypatch.setattr(backward_wgmma, "PERSISTENT", True)
    c = served(dtype, 64, causal)
    assert WG.persistent_schedule(c)
    kernel = compile_kernel(c)
    assert kernel.report.spills == 0 and kernel.report.stack_frame == 0, kernel.report
    assert not kernel.report.wgmma_serialized and "serialized" not in kernel.log
    main = read_sass(kernel.cubin, tmp_path, c.name)
    assert not re.search(r"\b(LDL|STL)\b", main), "local memory"
    assert "HGMMA.64x64x16" in main  # S^T, dP^T, dV, dK, dQ: all m64 n64 at D 64, 64-query tiles
    # setmaxnreg 232 / 40 (the producer holds the unit loop), one bulk dQ reduction a tile, the K/V named barrier 7
    assert "USETMAXREG.DEALLOC.CTAPOOL 0x28" in main and "USETMAXREG.TRY_ALLOC.CTAPOOL UP0, 0xe8" in main
    assert main.count("UBLKRED.G.S.ADD.F32") == 1 and "BAR.SYNC.DEFER_BLOCKING 0x7, 0x100" in main


def _launch(cfg, p, sms=132):
    calls = []
    fn = lambda name: lambda grid, block, args, **kw: calls.append((name, grid, args))  # noqa: E731
    kernel = SimpleNamespace(config=cfg, function=fn("main"), function_named=fn, smem=0)
    return BackwardLaunch(kernel, p, 0.125), calls


@pytest.mark.parametrize("causal", [False, True])
def test_launch_is_one_cta_per_sm_with_the_item_count(causal, monkeypatch):
    p = BackwardProblem(3, 8, 4, 1000, 4097, 64, causal, 3097 if causal else 0)
    tiles = -(-4097 // 128)  # 33 K/V tiles: 17 causal pairs
    off, _ = _launch(served("bf16", 64, causal), p)
    assert off.main_grid == (tiles, 4, 3) and off.items_tail == ()
    monkeypatch.setattr(backward_wgmma, "PERSISTENT", True)
    monkeypatch.setattr(backward_gpu, "_sm_count", lambda: 132)
    plan, calls = _launch(served("bf16", 64, causal), p)
    items = (17 if causal else 33) * 4 * 3
    assert plan.main_grid == (132, 1, 1) and [int(x) for x in plan.items_tail] == [items]
    plan(*range(1, 11), stream=None)
    main = [args for name, grid, args in calls if name == "main"][0]
    assert int(main[-1]) == items  # the last argument, after the variant tail
    small = BackwardProblem(1, 2, 1, 64, 300, 64, causal)  # fewer items than SMs: one CTA each
    plan, _ = _launch(served("bf16", 64, causal), small)
    assert plan.main_grid == ((2 if causal else 3), 1, 1)
    d128, _ = _launch(served("bf16", 128, causal), BackwardProblem(1, 2, 1, 64, 300, 128, causal))
    assert d128.main_grid == (3, 1, 1) and d128.items_tail == ()  # D 128 ignores the switch


def _cost(tile, n_kv_tiles):
    """Query tiles a causal K/V tile meets (seq_q = seq_k, block_m = block_n / 2): about 2 (n - tile)."""
    return 2 * (n_kv_tiles - tile)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n_kv_tiles,pairs,ctas", [(1, 1, 132), (32, 64, 132), (33, 24, 132), (7, 5, 3), (2, 1, 1),
                                                    (129, 2, 132), (5, 200, 132), (8, 16, 128)])
def test_every_unit_is_walked_once(causal, n_kv_tiles, pairs, ctas):
    half = -(-n_kv_tiles // 2)
    items = (half if causal else n_kv_tiles) * pairs
    grid = min(items, ctas)  # the launch's grid
    walks = [work_units(n_kv_tiles, pairs, causal, grid, cta) for cta in range(grid)]
    seen = [u for w in walks for u in w]
    assert sorted(seen) == [(t, h) for t in range(n_kv_tiles) for h in range(pairs)]
    assert all(walks)  # no CTA idles
    if causal:  # a CTA takes both tiles of a pair in a row, so every item meets about the same query tiles
        for w in walks:
            for a, b in zip(w, w[1:]):
                if a[0] < n_kv_tiles - 1 - a[0]:
                    assert b == (n_kv_tiles - 1 - a[0], a[1])
        # every item (a pair, or the middle tile of an odd count alone) costs per_item or its half, and the CTAs'
        # item counts differ by at most one: the static stride stays balanced to about one item
        per_item = 2 * n_kv_tiles + 2  # cost(p) + cost(n - 1 - p)
        for w in walks:
            firsts = [u for u in w if u[0] <= n_kv_tiles - 1 - u[0]]
            costs = [_cost(t, n_kv_tiles) + (_cost(n_kv_tiles - 1 - t, n_kv_tiles) if 2 * t + 1 != n_kv_tiles else 0)
                     for t, _ in firsts]
            assert sum(costs) == sum(_cost(t, n_kv_tiles) for t, _ in w)
            assert all(c in (per_item, n_kv_tiles + 1) for c in costs), costs
        counts = [len([u for u in w if u[0] <= n_kv_tiles - 1 - u[0]]) for w in walks]
        assert max(counts) - min(counts) <= 1 and sum(counts) == items
    else:  # K/V tiles fastest: CTAs running together share heads
        first_round = [w[0] for w in walks]
        assert first_round == [(i % n_kv_tiles, i // n_kv_tiles) for i in range(grid)]
