"""timing.py: the arithmetic and the launch schedule with a simulated clock (no GPU),
and one real CUDA-event measurement where there is a GPU."""
import pytest

from autoflash.runner import timing


class FakeClock:
    """Events read a simulated time; each launch advances it by the next duration."""

    def __init__(self, durations):
        self.durations = list(durations)
        self.now = 0.0
        self.launches = []  # input set index of every launch
        self.synced = 0

    def launch(self, i):
        self.launches.append(i)
        self.now += self.durations.pop(0) if len(self.durations) > 1 else self.durations[0]

    def record(self):
        return self.now

    def elapsed_ms(self, a, b):
        return b - a

    def synchronize(self, ev):
        self.synced += 1


def test_median_and_spread():
    assert timing.median([3.0, 1.0, 2.0]) == 2.0
    assert timing.median([4.0, 1.0, 3.0, 2.0]) == 2.5
    assert timing.spread([1.0, 1.1, 1.05]) == pytest.approx(0.1)
    assert timing.spread([]) == 0.0
    with pytest.raises(ValueError):
        timing.median([])


def test_plan_repeats_fits_the_budget_within_bounds():
    assert timing.plan_repeats(1.0, budget_ms=50, min_repeats=3, max_repeats=100) == 50
    assert timing.plan_repeats(40.0, budget_ms=50, min_repeats=3) == 3  # slow kernel: the minimum
    assert timing.plan_repeats(0.001, budget_ms=50, max_repeats=100) == 100  # fast kernel: the cap
    assert timing.plan_repeats(0.0, budget_ms=50, max_repeats=7) == 7


def test_input_sets_cover_twice_the_l2():
    l2 = 50 * 2**20
    assert timing.input_sets(300 * 2**20, l2) == 1  # one set already evicts L2
    assert timing.input_sets(30 * 2**20, l2) == 4  # ceil(100 / 30)
    assert timing.input_sets(1024, l2) == 8  # tiny problem: capped
    assert timing.input_sets(0, l2) == 1


def test_time_launches_warms_up_probes_and_takes_the_median():
    # warm-up 10 ms (not counted), probe 1 ms, then repeats; one outlier must not move the median
    clock = FakeClock([10.0, 1.0, 1.0, 1.2, 0.9, 50.0, 1.1] + [1.0] * 100)
    t = timing.time_launches(clock.launch, sets=1, budget_ms=5, min_repeats=3, max_repeats=100, clock=clock)
    assert t.repeats == 5  # budget 5 ms / probe 1 ms
    assert t.samples == pytest.approx([1.0, 1.2, 0.9, 50.0, 1.1])
    assert t.ms == pytest.approx(1.1) and t.min_ms == pytest.approx(0.9) and t.max_ms == pytest.approx(50.0)
    assert t.probe_ms == 1.0 and not t.stopped_early
    assert len(clock.launches) == 1 + 1 + 5


def test_time_launches_rotates_input_sets():
    clock = FakeClock([1.0])
    timing.time_launches(clock.launch, sets=3, budget_ms=6, clock=clock)
    assert clock.launches == [i % 3 for i in range(len(clock.launches))]
    assert set(clock.launches) == {0, 1, 2}


def test_time_launches_stops_early_when_far_slower_than_best():
    clock = FakeClock([5.0])
    t = timing.time_launches(clock.launch, budget_ms=100, best_ms=1.0, slower_factor=2.0, clock=clock)
    assert t.stopped_early and t.repeats == 1 and t.ms == 5.0
    assert len(clock.launches) == 2  # warm-up + probe, nothing more spent on it
    clock = FakeClock([1.5])
    t = timing.time_launches(clock.launch, budget_ms=6, best_ms=1.0, slower_factor=2.0, clock=clock)
    assert not t.stopped_early and t.repeats == 4


def test_time_interleaved_rotates_the_order_each_round():
    order = []
    now = [0.0]

    def make(k, ms):
        def launch(i):
            order.append(k)
            now[0] += ms
        return launch

    class Clock(FakeClock):
        def record(self):
            return now[0]

    rounds = timing.time_interleaved([make("a", 1.0), make("b", 2.0), make("c", 3.0)], rounds=3,
                                     launches_per_round=2, clock=Clock([0]))
    assert rounds == [[1.0] * 3, [2.0] * 3, [3.0] * 3]
    body = order[3:]  # after one warm-up launch each
    firsts = [body[i * 6] for i in range(3)]
    assert firsts == ["a", "b", "c"]  # each round starts with a different kernel


@pytest.mark.gpu
def test_cuda_events_time_a_real_kernel():
    import cupy

    from autoflash.kernels.device import device_arch
    from autoflash.serve.api import loaded_kernel
    from autoflash.ops.forward_base import Problem
    from autoflash.ops.forward_launch import default_scale, launch as launch_kernel
    from autoflash.kernels.registry import TEMPLATES
    from autoflash.ops.forward_launch import random_inputs

    cfg = TEMPLATES["flash_fwd_simt"].default(device_arch(0)[0], {"dtype": "fp32", "head_dim": 64, "causal": False})
    kernel = loaded_kernel(cfg, 0)
    p = Problem(2, 8, 8, 1024, 1024, 64, False)
    q, k, v = random_inputs(p, "fp32", 0)
    o = cupy.empty_like(q)

    def launch(i):
        launch_kernel(kernel, q.data.ptr, k.data.ptr, v.data.ptr, o.data.ptr, 0, p, default_scale(64))

    t = timing.time_launches(launch, budget_ms=20)
    assert 0 < t.min_ms <= t.ms <= t.max_ms
    assert t.repeats >= timing.MIN_REPEATS
