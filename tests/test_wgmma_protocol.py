"""flash_fwd_wgmma's synchronisation, checked without a GPU: the order of waits, arrivals and shared-memory reads
of the producer thread and of the two consumer warpgroups (templates/flash_fwd_wgmma.cu.j2, dense TMA path, ping-pong
on), transcribed as programs over a CTA's work items, and every interleaving explored. mbarrier waits pass as
try_wait.parity does (on the parity of the completed phases: one phase early or two late shows up); ping-pong's named
barriers count arrivals (a warpgroup arriving twice on one barrier generation shows up). Checked: no deadlock, no early
pass, no double arrival, a Qi / K / V slot never reloaded while a warpgroup's wgmma still reads it, and every read
finds the tile it expects. With O over Qi (forward_wgmma.o_via_q: dense plain configs above D 128) a warpgroup writes O over its Qi rows after its last
P.V and hands Qi back only once its TMA store has read them (modelled as a last read of Qi in the epilogue), and the
producer loads an item's Qi after its first key tile."""
import pytest

from model_check import reachable

CONSUMERS = 2


def producer(items, stages, o_via_q=False):
    """The producer thread: per item its Qi (once the previous item's is released), then its key tiles' K and V
    (o_via_q: Qi after the first key tile's K and V)."""
    ops, g = [], 0
    for i, n in enumerate(items):
        load_q = ([("wait", ("empty_q", 0), i - 1)] if i else []) + [("load", ("q", 0), i, ("full_q", 0))]
        if not o_via_q:
            ops += load_q
        for t in range(n):
            s, fill = g % stages, g // stages
            for kv in ("k", "v"):
                if fill:
                    ops.append(("wait", (f"empty_{kv}", s), fill - 1))
                ops.append(("load", (kv, s), g, (f"full_{kv}", s)))
            ops += load_q if o_via_q and t == 0 else []
            g += 1
    return ops


def ring_ops(stages):
    """A consumer's operations on the K/V rings of `stages` slots: tile (kv, t)'s slot, the wait for it to land,
    and its release (reads done, empty arrive)."""
    def tile(kv, t):
        return (kv, t % stages)

    def wait_full(kv, t):
        return ("wait", (f"full_{kv}", t % stages), t // stages)

    def release(kv, t):
        return [("done", tile(kv, t), t), ("arrive", (f"empty_{kv}", t % stages))]

    return tile, wait_full, release


def consumer(wg, items, stages, o_via_q=False):
    """One consumer warpgroup: the OVERLAP loop with ping-pong turns; reads last from a wgmma's issue to the
    release that follows its wgmma_wait. o_via_q: Qi is released after the epilogue's O staging and store."""
    ops = [("bar_arrive", 1)] if wg == CONSUMERS - 1 else []  # warpgroup 0 goes first
    turn_begin = [("bar_arrive", 1 + wg), ("bar_wait", 1 + wg)]
    turn_end = [("bar_arrive", 1 + (wg + 1) % CONSUMERS)]

    tile, wait_full, release = ring_ops(stages)

    g = 0
    for i, n in enumerate(items):
        q = ("q", 0)
        ops += [("wait", ("full_q", 0), i)]
        release_q = [("done", q, i), ("arrive", ("empty_q", 0))]
        epilogue = [("read", q, i)] + release_q if o_via_q else []  # O over Qi's rows, read by the TMA store
        release_q = [] if o_via_q else release_q
        ops.append(wait_full("k", g))  # tile 0
        ops += turn_begin + [("read", q, i), ("read", tile("k", g), g)]
        ops += turn_end + release("k", g) + (release_q if n == 1 else [])
        for j in range(1, n):
            t = g + j
            ops += [wait_full("k", t), wait_full("v", t - 1)] + turn_begin
            ops += [("read", q, i), ("read", tile("k", t), t), ("read", tile("v", t - 1), t - 1)] + turn_end
            ops += release("k", t) + (release_q if j == n - 1 else []) + release("v", t - 1)
        last = g + n - 1
        ops += [wait_full("v", last)] + turn_begin + [("read", tile("v", last), last)] + turn_end + release("v", last)
        ops += epilogue
        g += n
    if wg == 0:
        ops += [("bar_arrive", 1), ("bar_wait", 1)]  # consumes the last warpgroup's unmatched turn signal
    return ops


EXPECTED = {"full_q": 1, "full_k": 1, "full_v": 1, "empty_q": CONSUMERS, "empty_k": CONSUMERS, "empty_v": CONSUMERS}


def step(a, op, state):
    """The state after actor a runs op, or None if op must wait. A load is a TMA copy: it is issued here and lands
    (writing its buffer, then completing its full barrier) at any later point (`land`), in any order."""
    pcs, mbars, bars, targets, buffers = (dict(x) if i else list(x) for i, x in enumerate(state[:5]))
    flight = set(state[5])
    kind, what = op[0], op[1]
    if kind == "wait":
        completed = mbars.get(what, (0, 0))[1]
        if (completed & 1) == (op[2] & 1):
            return None  # try_wait.parity: that phase is not complete
        assert completed == op[2] + 1, f"actor {a} passed {op} with {completed} phases completed"
    elif kind == "arrive":
        count, completed = mbars.get(what, (0, 0))
        count += 1
        mbars[what] = (0, completed + 1) if count == EXPECTED[what[0]] else (count, completed)
    elif kind == "bar_arrive":
        arrivers, generation = bars.get(what, ((), 0))
        assert a not in arrivers, f"actor {a} arrived twice on named barrier {what} (generation {generation})"
        arrivers += (a,)
        targets[a] = generation + 1
        bars[what] = ((), generation + 1) if len(arrivers) == CONSUMERS else (arrivers, generation)
    elif kind == "bar_wait":
        if bars.get(what, ((), 0))[1] < targets[a]:
            return None
    elif kind == "load":
        held, readers = buffers.get(what, (None, ()))
        assert not readers, f"{what} reloaded with tile {op[2]} while warpgroups {readers} read tile {held}"
        flight.add(op[1:])
    elif kind == "read":
        held, readers = buffers.get(what, (None, ()))
        assert held == op[2], f"actor {a} read {what} expecting tile {op[2]}, found {held}"
        buffers[what] = (held, readers if a in readers else readers + (a,))
    elif kind == "done":
        held, readers = buffers[what]
        assert held == op[2] and a in readers, f"actor {a} released {what} tile {op[2]}: held {held}, {readers}"
        buffers[what] = (held, tuple(r for r in readers if r != a))
    pcs[a] += 1
    return pack(pcs, mbars, bars, targets, buffers, flight)


def pack(pcs, mbars, bars, targets, buffers, flight):
    return (tuple(pcs),) + tuple(tuple(sorted(x.items())) for x in (mbars, bars, targets, buffers)) + (
        tuple(sorted(flight)),)


def land(copy, state):
    """The state after the TMA copy `copy` (buffer, tile, full barrier) lands."""
    pcs, mbars, bars, targets, buffers = (dict(x) if i else list(x) for i, x in enumerate(state[:5]))
    flight = set(state[5]) - {copy}
    what, tile, bar = copy
    held, readers = buffers.get(what, (None, ()))
    assert not readers, f"{what} overwritten with tile {tile} while warpgroups {readers} read tile {held}"
    buffers[what] = (tile, ())
    count, completed = mbars.get(bar, (0, 0))
    mbars[bar] = (0, completed + 1) if count + 1 == EXPECTED[bar[0]] else (count + 1, completed)
    return pack(pcs, mbars, bars, targets, buffers, flight)


def explore(items, stages, o_via_q=False) -> int:
    """Every interleaving of the producer and the two consumer warpgroups; AssertionError at the first violation.
    Returns the number of states."""
    programs = [producer(items, stages, o_via_q)]
    programs += [consumer(w, items, stages, o_via_q) for w in range(CONSUMERS)]
    start = (tuple(0 for _ in programs), (), (), (), (), ())
    def successors(state):
        return ([land(copy, state) for copy in state[5]]
                + [step(a, prog[state[0][a]], state) for a, prog in enumerate(programs) if state[0][a] < len(prog)])

    return reachable(start, successors, lambda state: all(pc == len(p) for pc, p in zip(state[0], programs)),
                     lambda state: state[0])


ITEMS = [(1,), (3,), (1, 1), (2, 1), (1, 2, 2), (2, 1, 1, 2)]


@pytest.mark.parametrize("items", ITEMS, ids=str)
@pytest.mark.parametrize("stages", [2, 3])
def test_every_interleaving_is_safe(items, stages):
    assert explore(list(items), stages) > len(items)


@pytest.mark.parametrize("items", ITEMS, ids=str)
@pytest.mark.parametrize("stages", [2, 3])
def test_every_interleaving_is_safe_with_o_via_q(items, stages):
    assert explore(list(items), stages, o_via_q=True) > len(items)


def _mutated(change):
    """consumer() with `change` applied to each warpgroup's program."""
    original = consumer

    def mutated(wg, items, stages, o_via_q=False):
        return change(original(wg, items, stages, o_via_q))

    return original, mutated


def _early_v_release(ops):
    """The first P.V's V slot handed back (arrive) before that P.V is done reading it."""
    k = next(k for k, op in enumerate(ops) if op[0] == "done" and op[1][0] == "v")
    return ops[:k] + [ops[k + 1], ops[k]] + ops[k + 2:]


def _no_wait_for_v(ops):
    """The first P.V issued without waiting for its V tile to land."""
    k = next(k for k, op in enumerate(ops) if op[0] == "wait" and op[1][0] == "full_v")
    return ops[:k] + ops[k + 1:]


def _o_via_q_early_q_release(ops):
    """O over Qi with Qi handed back at the last S = Qi Kj^T, as without it, while the epilogue still writes O there."""
    k = next(k for k, op in enumerate(ops) if op[0] == "done" and op[1][0] == "k")  # the first item's first K release
    late = next(k for k, op in enumerate(ops) if op[0] == "done" and op[1][0] == "q")  # its Qi hand-back
    return ops[:k + 2] + ops[late:late + 2] + ops[k + 2:late] + ops[late + 2:]


@pytest.mark.parametrize("change", [_early_v_release, _no_wait_for_v, _o_via_q_early_q_release])
def test_the_model_catches_a_broken_handoff(change):
    original, mutated = _mutated(change)
    globals()["consumer"] = lambda wg, items, stages, o_via_q=False: mutated(wg, items, stages, o_via_q)
    try:
        with pytest.raises(AssertionError):
            explore([1, 2, 2, 1], 2, o_via_q=change is _o_via_q_early_q_release)
    finally:
        globals()["consumer"] = original
