"""ptxas reports of sources with several kernels: each kernel's own lines, matched by whole name."""
import pytest

from autoflash.kernels.compile import parse_ptxas_report, resource_report

# ptxas reports a source's kernels last-defined first: here the main kernel `k` follows `k_combine`
LOG = """ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'k_combine' for 'sm_90'
ptxas info    : Function properties for k_combine
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 30 registers, used 0 barriers, 384 bytes cmem[0]
ptxas info    : Compiling entry function 'k' for 'sm_90'
ptxas info    : Function properties for k
    8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads
ptxas info    : Used 255 registers, used 1 barriers, 384 bytes cmem[0]
"""


def test_a_kernel_is_not_read_from_a_longer_names_lines():
    main = parse_ptxas_report(LOG, "k")
    assert (main.registers, main.spill_stores, main.spill_loads, main.stack_frame) == (255, 4, 12, 8)
    combine = parse_ptxas_report(LOG, "k_combine")
    assert (combine.registers, combine.spill_stores, combine.spill_loads) == (30, 0, 0)


def test_resource_report_uses_the_log_when_it_names_the_kernel():
    assert resource_report(b"", LOG, "k").registers == 255


# the line ptxas printed for flash_fwd_wgmma with the (removed) causal_trim on the H200's served d256 tile
C7511 = ("ptxas info    : (C7511) Potential Performance Loss: wgmma.mma_async instructions are serialized due to "
         "insufficient register resources for the wgmma pipeline in the function 'k' in line 642\n")


# ... and the one for a first DIAG_HALF draft (fourteenth session), a wgmma chosen per k-step by a run-time branch
C7515 = ("ptxas info    : (C7515) Potential Performance Loss: wgmma.mma_async instructions are serialized due to "
         "non wgmma instructions defining accumulator registers of a wgmma between start and end of the pipeline "
         "stage in the function 'k' in line 655\n")


@pytest.mark.parametrize("line", [C7511, C7515], ids=["C7511", "C7515"])
def test_a_serialised_wgmma_pipeline_is_reported_for_its_kernel_only(line):
    assert parse_ptxas_report(LOG + line, "k").wgmma_serialized
    assert not parse_ptxas_report(LOG + line, "k_combine").wgmma_serialized
    assert not parse_ptxas_report(LOG, "k").wgmma_serialized


def test_a_serialised_wgmma_pipeline_prunes_the_config():
    from autoflash import KernelConfig
    from autoflash.tuning.space import resource_check

    cfg = KernelConfig("flash_fwd_wgmma", "sm_90a", "bf16", 128, False, 128, 128, 12, 2)
    report = {"registers": 168, "spill_stores": 0, "spill_loads": 0, "static_smem": 0}
    assert resource_check(cfg, report, 100_000)[1] == []
    reasons = resource_check(cfg, {**report, "wgmma_serialized": True}, 100_000)[1]
    assert reasons and "C75xx" in reasons[0]
