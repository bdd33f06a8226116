"""flash_fwd_wgmma's synchronisation with the causal trim (WgmmaTemplate.causal_trim = 1), checked without a GPU:
each consumer warpgroup runs its own number of key tiles per item (n_own <= n_tiles) and, for the tiles past its
rows' diagonals, waits for K and V to land, takes an empty ping-pong turn and hands both slots back. The producer
and both warpgroups' programs (templates/flash_fwd_wgmma.cu.j2's CAUSAL_TRIM block, dense TMA path, ping-pong
on and off) go through test_wgmma_protocol.py's model (try_wait.parity, named-barrier generations, TMA copies
landing in any order) and every interleaving is explored: no deadlock, no early pass, no double arrival, no
slot reloaded while a wgmma reads it, every read finds its tile. A skipped tile handed back before it lands is
caught (its arrival would count for the slot's previous fill). GPU: tests/test_wgmma_fd_gpu.py."""
import pytest

import test_wgmma_protocol as model
from model_check import reachable


def consumer(wg, items, stages, pingpong=True, early_skip=False):
    """Warpgroup wg's program; items: (n_tiles, (own tiles of warpgroup 0, of warpgroup 1)) per item. Without
    ping-pong (pp0 configs; three consumer warpgroups behave alike) the turns are no-ops."""
    ops = [("bar_arrive", 1)] if wg == model.CONSUMERS - 1 and pingpong else []
    turn_begin = [("bar_arrive", 1 + wg), ("bar_wait", 1 + wg)] if pingpong else []
    turn_end = [("bar_arrive", 1 + (wg + 1) % model.CONSUMERS)] if pingpong else []

    tile, wait_full, release = model.ring_ops(stages)

    g = 0
    for i, (n, owns) in enumerate(items):
        own = owns[wg]
        q = ("q", 0)
        release_q = [("done", q, i), ("arrive", ("empty_q", 0))]
        ops += [("wait", ("full_q", 0), i), wait_full("k", g)] + turn_begin + [("read", q, i), ("read", tile("k", g), g)]
        ops += turn_end + release("k", g) + (release_q if own == 1 else [])
        for j in range(1, own):
            t = g + j
            ops += [wait_full("k", t), wait_full("v", t - 1)] + turn_begin
            ops += [("read", q, i), ("read", tile("k", t), t), ("read", tile("v", t - 1), t - 1)] + turn_end
            ops += release("k", t) + (release_q if j == own - 1 else []) + release("v", t - 1)
        last = g + own - 1
        ops += [wait_full("v", last)] + turn_begin + [("read", tile("v", last), last)] + turn_end + release("v", last)
        for t in range(g + own, g + n):  # past the diagonal: wait for the tiles, an empty turn, hand them back
            waits = [] if early_skip else [wait_full("k", t), wait_full("v", t)]
            ops += waits + turn_begin + turn_end
            ops += [("arrive", ("empty_k", t % stages)), ("arrive", ("empty_v", t % stages))]
        g += n
    if wg == 0 and pingpong:
        ops += [("bar_arrive", 1), ("bar_wait", 1)]
    return ops


def explore(items, stages, pingpong=True, early_skip=False) -> int:
    programs = [model.producer([n for n, _ in items], stages)]
    programs += [consumer(w, items, stages, pingpong, early_skip) for w in range(model.CONSUMERS)]
    start = (tuple(0 for _ in programs), (), (), (), (), ())

    def successors(state):
        return ([model.land(copy, state) for copy in state[5]]
                + [model.step(a, prog[state[0][a]], state) for a, prog in enumerate(programs)
                   if state[0][a] < len(prog)])

    return reachable(start, successors, lambda state: all(pc == len(p) for pc, p in zip(state[0], programs)),
                     lambda state: state[0])


# (n_tiles, (own tiles of warpgroup 0, warpgroup 1)): warpgroup 0 skipping one or two tiles (80-key tiles, 192-row
# tiles), warpgroup 1 skipping (bottom-right offsets), both skipping, none, one-tile items
ITEMS = [
    [(2, (1, 2))],
    [(3, (2, 3)), (1, (1, 1))],
    [(3, (1, 3)), (2, (2, 1))],
    [(1, (1, 1)), (2, (1, 2)), (2, (1, 1))],
    [(3, (2, 2)), (2, (1, 2)), (1, (1, 1))],
]


@pytest.mark.parametrize("items", ITEMS, ids=str)
@pytest.mark.parametrize("stages", [2, 3])
@pytest.mark.parametrize("pingpong", [True, False])
def test_every_interleaving_is_safe(items, stages, pingpong):
    assert explore(items, stages, pingpong) > len(items)


def test_the_model_catches_a_skipped_tile_handed_back_before_it_lands():
    """Without ping-pong a warpgroup skipping ahead hands a slot back for a fill that has not landed: its arrival
    completes the slot's previous phase while the other warpgroup still reads it. (With ping-pong the turns keep it
    within one tile of the other warpgroup, which already hid the mistake in this model.)"""
    with pytest.raises(AssertionError):
        explore([(3, (1, 3)), (2, (1, 2))], 2, pingpong=False, early_skip=True)
