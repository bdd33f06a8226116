"""The search the synchronisation-protocol tests share (test_backward_wgmma_dq_protocol.py, test_wgmma_protocol.py):
every state reachable from `start`, depth first. A state whose successors are all None (no program can move) must be
finished; anything else is a deadlock."""


def reachable(start, successors, finished, describe=lambda state: state) -> int:
    """successors(state) -> iterable of next states (None: that move is blocked); returns the number of states;
    AssertionError at the first deadlock (the step functions raise their own for other violations)."""
    seen, todo = {start}, [start]
    while todo:
        state = todo.pop()
        moved = False
        for nxt in successors(state):
            if nxt is not None:
                moved = True
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        if not moved:
            assert finished(state), f"deadlock at {describe(state)}: {state}"
    return len(seen)
