"""The decode combine on sm_90 without a GPU (ops/decode_kernels.LANES_COMBINE, PDL_COMBINE): what the switches
render, which combine kernel and block a split count gets, and the programmatic dependent launch DecodePlan makes
(cuLaunchKernelEx's structs laid out as cuda.h has them, the combine's arguments in its slots); on the GPU:
tests/test_decode_gpu.py and the other decode GPU tests."""
import ctypes
from types import SimpleNamespace

import pytest

from autoflash.kernels import packed_sequence
from autoflash.kernels.render import render
from autoflash.ops import decode_kernels
from autoflash.ops.decode import DECODE
from autoflash.ops.decode_launch import DecodePlan, DecodeProblem
from fake_decode_kernel import FakeKernel, kernel_params

KEY = {"dtype": "bf16", "head_dim": 128, "m_tiles": 1}


@pytest.fixture
def switches_on(monkeypatch):
    monkeypatch.setattr(decode_kernels, "LANES_COMBINE", True)
    monkeypatch.setattr(decode_kernels, "PDL_COMBINE", True)


def test_launch_structs_match_cuda_h():
    # CUlaunchAttribute: id, 4 bytes of padding, a 64-byte union; CUlaunchConfig: 7 uints, the stream at 32
    assert ctypes.sizeof(packed_sequence._Attribute) == 72 and packed_sequence._Attribute.value.offset == 8
    cfg = packed_sequence._LaunchConfig
    assert (cfg.stream.offset, cfg.attrs.offset, cfg.num_attrs.offset, ctypes.sizeof(cfg)) == (32, 40, 48, 56)


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_switches_render_the_dependency_only_on_sm_90(switches_on, arch):
    src = render(DECODE.default(arch, KEY))
    assert ("griddepcontrol.launch_dependents" in src) == ("griddepcontrol.wait" in src) == (arch == "sm_90")
    assert ("_combine_lanes" in src) == (arch == "sm_90")  # measured on sm_90 only


def test_switches_off_render_the_old_combine_only(monkeypatch):
    monkeypatch.setattr(decode_kernels, "LANES_COMBINE", False)
    monkeypatch.setattr(decode_kernels, "PDL_COMBINE", False)
    src = render(DECODE.default("sm_90", KEY))
    assert "griddepcontrol" not in src and "_combine_lanes" not in src and "_combine(" in src


@pytest.mark.parametrize("splits, name, threads", [(2, "_combine_lanes", 64), (8, "_combine_lanes", 256),
                                                   (16, "_combine_lanes", 512), (64, "_combine_lanes", 512),
                                                   (65, "_combine", 1024), (256, "_combine", 1024)])
def test_combine_kernel_by_split_count(switches_on, splits, name, threads):
    assert decode_kernels.combine_kernel(DECODE.default("sm_90", KEY), splits) == (name, threads)
    assert decode_kernels.combine_kernel(DECODE.default("sm_80", KEY), splits) == ("_combine", 32 * min(32, splits))


def test_plan_launches_the_combine_as_a_programmatic_dependent(switches_on, monkeypatch):
    launches = []

    def launch_ex(config, function, params, extra):
        c = config._obj
        attr = c.attrs[0]
        slots = (ctypes.c_uint64 * 14).from_address(params)  # the combine's 14 parameters
        values = [ctypes.c_uint64.from_address(slots[i]).value for i in range(14)]
        launches.append((tuple(c.grid), tuple(c.block), c.stream, c.num_attrs, attr.id, attr.value.flag, function,
                         values))
        return 0

    monkeypatch.setattr(packed_sequence, "_launch_kernel_ex", lambda: launch_ex)
    monkeypatch.setattr(packed_sequence, "ensure_context", lambda: None)
    cfg = DECODE.default("sm_90", KEY).replace(fused_combine=True)  # served unfused with PDL
    kernel = FakeKernel(cfg)
    kernel.combine.ptr = 4242
    kernel.function_named = lambda suffix: kernel.combine if suffix == "_combine_lanes" else None
    p = DecodeProblem(2, 8, 2, 1, 4096, 128, True, sinks=False)
    plan = DecodePlan(kernel, p, tuple(range(1, 13)), 16, 0.1)
    plan(1, 2, 3, 4, 5, 6, 7, 8, SimpleNamespace(ptr=99), 0, 111, 0)
    assert not plan.fused and plan.counters is None
    assert len(kernel.function.calls) == 1 and kernel.combine.calls == []  # the split kernel as before
    grid, block, stream, n_attrs, attr_id, flag, function, values = launches[0]
    rows = 2 * 2 * 4  # batch x KV heads x packed rows
    assert (grid, block, stream, n_attrs, attr_id, flag, function) == ((rows, 1, 1), (32 * 16, 1, 1), 99, 1, 6, 1,
                                                                       4242)
    params = [p.rsplit(" ", 1)[1] for p in kernel_params(render(cfg), cfg.name + "_combine_lanes")]
    named = dict(zip(params, values))
    assert (named["o_part"], named["lse_part"], named["o"], named["lse"], named["sinks"]) == (6, 7, 4, 5, 111)
    assert (named["o_sb"], named["o_sn"], named["o_sh"], named["total_rows"], named["num_splits"]) == (10, 11, 12,
                                                                                                    rows, 16)


def test_plan_without_the_switch_or_on_sm_80_launches_through_cupy(switches_on):
    p = DecodeProblem(2, 8, 2, 1, 4096, 128, True)
    kernel = FakeKernel(DECODE.default("sm_80", KEY))
    plan = DecodePlan(kernel, p, tuple(range(1, 13)), 16, 0.1)
    plan(1, 2, 3, 4, 5, 6, 7, 8, SimpleNamespace(ptr=99), 0, 0, 0)
    assert plan.programmatic_combine is None and len(kernel.combine.calls) == 1


def test_the_trigger_comes_after_the_key_loop(switches_on):
    # at the split kernel's start the waiting combine blocks slowed D 64 rows with long splits by 5-19 % (H200)
    src = render(DECODE.default("sm_90", KEY))
    assert src.count("griddepcontrol.launch_dependents") == 1
    at = src.index("griddepcontrol.launch_dependents")
    assert at > src.index("cp_async_wait<0>();  // only empty groups can be left")


@pytest.mark.parametrize("seq_k, head_dim, want", [(32768, 128, 64), (32768, 64, 64), (131072, 128, 128),
                                                   (8192, 128, 64)])
def test_short_splits_stay_within_the_lanes_merge(switches_on, monkeypatch, seq_k, head_dim, want):
    from autoflash.ops import decode_launch

    monkeypatch.setattr(decode_launch, "sm_count", lambda device: 132)  # the H200
    p = DecodeProblem(1, 8, 1, 1, seq_k, head_dim, True)  # MQA, batch 1: one block of work
    kernel = FakeKernel(DECODE.default("sm_90", {**KEY, "head_dim": head_dim}))
    assert decode_launch.choose_splits(kernel, p) == want
    monkeypatch.setattr(decode_kernels, "LANES_COMBINE", False)  # the heuristic alone: 128 splits of 256 keys
    assert decode_launch.choose_splits(kernel, p) == (128 if seq_k == 32768 else want)
