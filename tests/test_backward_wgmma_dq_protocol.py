"""The DQ_VIA_PRODUCER synchronisation of flash_bwd_wgmma (templates/flash_bwd_wgmma_steps.cuh.j2:
produce_and_reduce_dq, stage_dq; the loops of flash_bwd_wgmma.cu.j2), checked without a GPU: the kernel's order
of waits and arrivals, per actor, transcribed as a program, and every interleaving of the actors explored. An
actor: the producer's threads that reduce dQ rows (r < BLOCK_M: they load too), its other threads (load only),
each consumer warpgroup. mbarrier waits pass as the hardware's try_wait.parity does (on the parity of the
completed phases), so a waiter one phase early or two late shows up; named barriers count arrivals as the
hardware does, so a warpgroup arriving twice on one barrier id shows up. Checked for every interleaving: no
deadlock, no early parity pass, no double arrival, a query stage never rewritten while a consumer reads it, a
staging tile never rewritten before the producer has read it, and read only once all of its slices are stored; a
dS^T buffer never rewritten while dQ's warpgroup reads it, and read only holding its tile from both warpgroups."""
import pytest

from autoflash.ops.backward_wgmma import TEMPLATE as WG
from model_check import reachable
from test_backward_wgmma import key


def producer(n, stages, bufs, reduces):
    ops = []
    for it in range(n + stages):
        if it < n:
            st = it % stages
            if it >= stages:
                ops.append(("wait", ("empty", st), it // stages - 1))
            ops += [("load", st, it), ("arrive", ("full", st))]
        j = it - stages
        if reduces and j >= 0:
            b = j % bufs
            ops += [("wait", ("dq_full", b), j // bufs), ("reduce", b, j), ("arrive", ("dq_empty", b))]
    return ops


def consumer(wg, n, stages, bufs, dq_wgs, pipeline, consumers=2):
    uneven = dq_wgs < consumers
    ds_bufs = stages + 1 if pipeline and uneven else stages  # the template's DS_BUFS (a producer config)
    ops, does_dq = [], wg < dq_wgs

    def ds_barrier(st, tile):  # store_ds: dQ's warpgroups bar.sync, the others bar.arrive (uneven: an id per stage)
        bar = ("ds", st if uneven else 0)
        ops = [("ds_write", tile % ds_bufs, tile, wg), ("bar_arrive", bar)]
        return ops + ([("bar_wait", bar)] if does_dq else [])

    def ds_read(tile):  # dQ's wgmma reads the tile's dS^T (issue_dq) ...
        return [("ds_read", tile % ds_bufs, tile, wg)] if does_dq else []

    def ds_done(tile):  # ... until wgmma_wait<0>
        return [("ds_done", tile % ds_bufs, tile, wg)] if does_dq else []

    def stage_dq(tile):
        if not does_dq or not bufs:
            return []
        b = tile % bufs
        wait = [("wait", ("dq_empty", b), tile // bufs - 1)] if tile >= bufs else []
        return wait + [("stage", b, tile, wg), ("arrive", ("dq_full", b))]

    for it in range(n + 1 if pipeline else n):
        tile = it < n
        st = (it if tile else it - 1) % stages
        if tile:
            ops += [("wait", ("full", st), it // stages), ("read", st, it)]
        if not pipeline:
            ops += ds_barrier(st, it) + ds_read(it) + ds_done(it)
            ops += [("done", st), ("arrive", ("empty", st))] + stage_dq(it)  # (reads retired: wgmma_wait<0>)
        else:  # the previous tile's dQ issued behind dK, before this tile's dS^T is stored
            ops += ds_read(it - 1) if it > 0 else []
            ops += ds_barrier(st, it) if tile else []
            ops += (ds_done(it - 1) + stage_dq(it - 1)) if it > 0 else []
            ops += [("done", st), ("arrive", ("empty", st))] if tile else []
    return ops


def explore(n, stages, bufs, dq_wgs, pipeline):
    """Every interleaving; raises AssertionError at the first violation. Returns the number of states.
    bufs 0: the consumers' own dQ adds (no staging tiles; the producer only loads)."""
    programs = [producer(n, stages, max(bufs, 1), bool(bufs)), producer(n, stages, 1, False)]
    programs += [consumer(w, n, stages, bufs, dq_wgs, pipeline) for w in range(2)]
    expected = {"full": 2, "empty": 2, "dq_full": dq_wgs, "dq_empty": 1}
    start = (tuple(0 for _ in programs), (), (), (), (), (), ())
    return reachable(start,
                     lambda state: (step(a, prog[state[0][a]], state, expected)
                                    for a, prog in enumerate(programs) if state[0][a] < len(prog)),
                     lambda state: all(pc == len(p) for pc, p in zip(state[0], programs)), lambda state: state[0])


def step(a, op, state, expected):
    """The state after actor a runs op, or None if op waits."""
    pcs, mbars, bars, stages, staging, targets, ds = (dict(x) if i else list(x) for i, x in enumerate(state))
    kind = op[0]
    if kind == "wait":
        completed = mbars.get(op[1], (0, 0))[1]
        if (completed & 1) == (op[2] & 1):
            return None  # try_wait.parity: the phase of that parity is not complete
        assert completed == op[2] + 1, f"actor {a} passed {op} with {completed} phases completed"
    elif kind == "arrive":
        count, completed = mbars.get(op[1], (0, 0))
        count += 1
        mbars[op[1]] = (0, completed + 1) if count == expected[op[1][0]] else (count, completed)
    elif kind == "bar_arrive":
        arrivers, generation = bars.get(op[1], ((), 0))
        assert a not in arrivers, f"actor {a} arrived twice on named barrier {op[1]}"
        arrivers += (a,)
        targets[a] = generation + 1
        bars[op[1]] = ((), generation + 1) if len(arrivers) == 2 else (arrivers, generation)
    elif kind == "bar_wait":
        if bars[op[1]][1] < targets[a]:
            return None
    elif kind == "load":
        tile, readers = stages.get(op[1], (None, ()))
        assert not readers, f"stage {op[1]} rewritten with tile {op[2]} while {readers} read tile {tile}"
        stages[op[1]] = (op[2], ())
    elif kind == "read":
        tile, readers = stages.get(op[1], (None, ()))
        assert tile == op[2], f"consumer {a} reads tile {op[2]} from stage {op[1]} holding {tile}"
        stages[op[1]] = (tile, readers + (a,))
    elif kind == "done":
        tile, readers = stages[op[1]]
        stages[op[1]] = (tile, tuple(r for r in readers if r != a))
    elif kind == "stage":
        tile, writers, read = staging.get(op[1], (None, (), True))
        assert read or tile == op[2], f"staging tile {op[1]} rewritten with tile {op[2]} before tile {tile} was read"
        staging[op[1]] = (op[2], (writers if tile == op[2] else ()) + (op[3],), False)
    elif kind == "reduce":
        tile, writers, read = staging.get(op[1], (None, (), True))
        assert tile == op[2] and not read and len(writers) == expected["dq_full"], \
            f"reduce of tile {op[2]} finds staging {op[1]} = {tile, writers, read}"
        staging[op[1]] = (tile, writers, True)
    elif kind == "ds_write":
        tile, writers, readers = ds.get(op[1], (None, (), ()))
        assert tile == op[2] or not readers, f"dS^T buffer {op[1]} rewritten with tile {op[2]} while {readers} read {tile}"
        ds[op[1]] = (op[2], (writers if tile == op[2] else ()) + (op[3],), () if tile != op[2] else readers)
    elif kind == "ds_read":
        tile, writers, readers = ds.get(op[1], (None, (), ()))
        assert tile == op[2] and len(writers) == 2, f"dQ of tile {op[2]} reads dS^T buffer {op[1]} = {tile, writers}"
        ds[op[1]] = (tile, writers, readers + (op[3],))
    elif kind == "ds_done":
        tile, writers, readers = ds[op[1]]
        ds[op[1]] = (tile, writers, tuple(r for r in readers if r != op[3]))
    pcs[a] += 1
    return (tuple(pcs), *(tuple(sorted(d.items())) for d in (mbars, bars, stages, staging, targets, ds)))


# (stages, staging tiles, dQ warpgroups, pipelined). The shapes the rules accept with dQ staged (D 128 s2 with one
# staging tile, or two with dq_via_producer=2; D 64 s2 and s3 with two) and the uneven split with the consumers' own
# adds (bufs 0: D 64's producer tile with dq_via_producer=0 or deterministic), each to 5 tiles: a stages-2 ring's
# barriers then complete a third phase (the first's parity again), so a waiter two phases late would pass.
ACCEPTED = [(2, 1, 2, False), (2, 2, 1, False), (3, 2, 1, True), (2, 2, 2, False), (2, 0, 1, False)]
# Two the rules refuse (D 128 s3 with one staging tile: shared memory; D 64 s2 with one: two always fit there), to
# 3 tiles only: test_the_checked_shapes_are_the_rules_ones fails if the rules ever accept one.
REFUSED = [(3, 1, 2, True), (2, 1, 1, False)]


def _shape_id(s):
    return "s{}_bufs{}_dqwgs{}{}".format(*s[:3], "_pipe" if s[3] else "")


@pytest.mark.parametrize("shape,n", [pytest.param(s, n, id=f"{_shape_id(s)}-{n}")
                                     for shapes, depths in ((ACCEPTED, (1, 2, 3, 5)), (REFUSED, (1, 2, 3)))
                                     for s in shapes for n in depths])
def test_every_interleaving_is_safe(shape, n):
    assert explore(n, *shape) > n


def test_the_checked_shapes_are_the_rules_ones():
    """Every producer config of flash_bwd_wgmma's space that stages dQ has a shape of ACCEPTED, and each shape of
    ACCEPTED is some valid config's (so neither list goes stale when the rules or the shared memory change)."""
    shapes = set()
    for dtype in WG.dtypes:
        for d in WG.key_values["head_dim"]:
            for causal in (False, True):
                for det in (False, True):
                    for c in WG.space("sm_90a", key(dtype, d, causal, deterministic=det)):
                        if not c.problems() and WG.producer(c):
                            rows, cols = WG.dq_split(c)
                            shapes.add((c.stages, WG.smem_layout(c)["dq_bufs"], rows * cols, c.stages == 3))
    assert {s for s in shapes if s[1]} <= set(ACCEPTED) <= shapes, shapes


def test_the_checker_finds_a_shared_ds_barrier_id():
    """With one dS^T barrier id for every tile (not one per stage), the warpgroup that computes no dQ runs ahead and
    arrives twice: the id per stage is what keeps a run-ahead arrival out of the previous tile's barrier."""
    original = consumer

    def one_id(*args, **kw):
        return [(op[0], ("ds", 0)) if op[0].startswith("bar_") else op for op in original(*args, **kw)]

    globals()["consumer"] = one_id
    try:
        with pytest.raises(AssertionError):
            explore(3, 2, 0, 1, False)
    finally:
        globals()["consumer"] = original


def test_the_checker_finds_a_missing_wait():
    """Without the consumers' dq_empty wait a staging tile is overwritten before the producer read it."""
    original = consumer

    def no_wait(*args, **kw):
        return [op for op in original(*args, **kw) if not (op[0] == "wait" and op[1][0] == "dq_empty")]

    globals()["consumer"] = no_wait
    try:
        with pytest.raises(AssertionError, match="rewritten .* before"):
            explore(3, 2, 1, 2, False)
    finally:
        globals()["consumer"] = original
