"""flash_bwd_wgmma's DQ_VIA_PRODUCER switch without a GPU (ops/backward_wgmma.py): off, every config renders
the source it rendered before the switch existed (none of its code is in it); on, the rules refuse what it
cannot do (no producer warpgroup, deterministic) with the reason, the staging tiles fit in shared memory
(two at D 64, one at D 128, where the pipelined stages 3 no longer fits), and D 64 / D 128 compile for sm_90a
with no spills, the producer within its setmaxnreg budget, the consumers storing dQ to shared memory (no
red.global) and the producer reducing it with bulk copies. GPU correctness:
tests/test_backward_wgmma_dq_producer_gpu.py."""
import re

import pytest

from autoflash.kernels.render import render
from autoflash.ops import backward_wgmma
from autoflash.ops.backward_wgmma import TEMPLATE as WG
from test_backward_wgmma import SCHEDULES, _valid_configs, cfg, kernel_sass

KNOB_TEXT = ("DQ_BUFS", "DQ_PSTRIDE", "dq_full_bar", "dq_empty_bar", "DQ_VIA_PRODUCER")


@pytest.fixture
def knob_on(monkeypatch):
    monkeypatch.setattr(backward_wgmma, "DQ_VIA_PRODUCER", True)


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_off_renders_none_of_its_code(schedule, monkeypatch):
    """Switch off (the default): no config's source has a line of the staging path (every valid config of
    every dQ schedule; the sha1 of all 84 was unchanged by the commit that added it, /tmp/BQ_notes.md)."""
    assert backward_wgmma.DQ_VIA_PRODUCER is False
    configs = _valid_configs(schedule)
    monkeypatch.setattr(backward_wgmma, "DQ_OWN_KEYS", SCHEDULES[schedule][0])
    monkeypatch.setattr(backward_wgmma, "DQ_BULK_REDUCE", SCHEDULES[schedule][1])
    assert configs
    for _, c in configs:
        source = render(c)
        assert not [t for t in KNOB_TEXT if t in source], c.name
        assert "red.global.add.v2.f32" in source or schedule == "bulk", c.name


def test_on_changes_only_producer_configs(knob_on):
    """On: producer configs render the staging path (and no longer the consumers' red.global adds)."""
    for d in (64, 128):
        c = cfg(d=d, causal=True, warps=12)
        source = render(c)
        assert all(t in source for t in KNOB_TEXT[:4]), d
        assert "add_pair(dq_rows" not in source and "bulk_reduce_add(dq_accum" in source
        assert f"constexpr int DQ_BUFS = {2 if d == 64 else 1};" in source


@pytest.mark.parametrize("bad,reason", [
    (lambda: cfg(warps=8), "DQ_VIA_PRODUCER: the producer warpgroup reduces dQ"),
    (lambda: cfg(d=64, bm=128, warps=8), "has none"),
    (lambda: cfg(warps=12, deterministic=True), "deterministic keeps the consumers' dQ adds"),
    (lambda: cfg(d=128, warps=12, stages=3), "shared memory"),  # three stages + a 34 KB staging tile
])
def test_rules_refuse_with_the_reason(knob_on, bad, reason):
    problems = bad().problems()
    assert any(reason in p for p in problems), problems


def test_default_keys_with_the_switch_on(knob_on):
    """The producer defaults stay valid; a deterministic key with no producer-less tile left says so."""
    for d in (64, 128):
        assert WG.default("sm_90a", dict(dtype="bf16", head_dim=d, causal=True, deterministic=False, window=False,
                                         softcap=False, sinks=False, alibi=False)).problems() == []
    with pytest.raises(ValueError, match="no flash_bwd_wgmma config fits"):
        WG.default("sm_90a", dict(dtype="bf16", head_dim=64, causal=False, deterministic=True, window=False,
                                  softcap=False, sinks=False, alibi=False))


def test_staging_shared_memory(knob_on):
    """A staging tile is BLOCK_M rows of D + 8 floats; two where they fit (D 64: 137 KB), else one (D 128:
    196 KB; two would need 231.5 KB + the 1 KB alignment, over sm_90's 227 KB)."""
    for d, bufs in ((64, 2), (128, 1)):
        c = cfg(d=d, warps=12)
        lay = WG.smem_layout(c)
        assert lay["dq_staging"] == 64 * (d + 8) * 4 and lay["dq_bufs"] == bufs
        assert WG.smem_bytes(c) <= 232448  # sm_90's limit a block
        assert (WG.smem_bytes(c) + lay["dq_staging"] + 16 > 232448) == (bufs == 1)  # (room for a second one?)
    backward_wgmma.DQ_VIA_PRODUCER = False  # (monkeypatch restores it)
    assert WG.smem_layout(cfg(d=128, warps=12))["dq_bufs"] == 0


def _producer_max_register(sass: str) -> int:
    """The highest register the producer warpgroup's code names (from its setmaxnreg.dec to its exit)."""
    lines = sass.splitlines()
    start = next(i for i, line in enumerate(lines) if "USETMAXREG.DEALLOC" in line)
    end = next(i for i in range(start, len(lines)) if re.search(r"\bEXIT\b", lines[i]))
    return max(int(r) for line in lines[start:end + 1] for r in re.findall(r"\bR(\d+)\b", line))


@pytest.mark.parametrize("d,causal,stages,dtype", [(64, True, 2, "bf16"), (128, True, 2, "bf16"),
                                                   (64, False, 2, "fp16"), (128, False, 2, "fp16"),
                                                   (64, True, 3, "bf16")])
def test_compiles_without_spills(knob_on, d, causal, stages, dtype, tmp_path):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels.compile import compile_kernel

    c = cfg(dtype=dtype, d=d, causal=causal, warps=12, stages=stages)
    assert c.problems() == []
    kernel = compile_kernel(c)
    print(f"{c.name}: {kernel.report.registers} registers, {kernel.report.spills} B spilled")
    assert kernel.report.spills == 0 and kernel.report.registers <= 168, kernel.report  # (384 threads, 1 block)
    assert "serialized" not in kernel.log
    main = kernel_sass(kernel, c.name, tmp_path)
    assert "UBLKRED.G.S.ADD.F32" in main and "REDG" not in main  # the producer's bulk reductions only
    assert "STS.64" in main  # the consumers' float2 stores of dQ to the staging tile
    assert "USETMAXREG.DEALLOC.CTAPOOL 0x18" in main and _producer_max_register(main) < 24
