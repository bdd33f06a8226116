"""NVRTC compilation without a GPU: cubins per arch, the ptxas report, the disk cache."""
import pytest

from autoflash.kernels import compile as afc
from autoflash import KernelConfig
from autoflash.kernels.archs import ARCHS
from autoflash.kernels.registry import TEMPLATES
from conftest import fwd_key as K

pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")

SIMT = TEMPLATES["flash_fwd_simt"]

# Representative configs: each arch's default for a small and a large head dim, in each dtype.
REPRESENTATIVE = [
    SIMT.default(arch, K(dtype, d, causal))
    for arch in ("sm_80", "sm_86", "sm_89", "sm_90")
    for dtype, d, causal in (("fp32", 64, False), ("bf16", 128, True), ("fp16", 256, False))
]


@pytest.mark.parametrize("cfg", REPRESENTATIVE, ids=lambda c: c.name)
def test_representative_configs_compile_without_spills(cfg):
    kernel = afc.compile_kernel(cfg)
    assert kernel.cubin[:4] == b"\x7fELF"
    assert kernel.report.spills == 0, kernel.report
    assert kernel.report.registers <= 255
    assert SIMT.smem_bytes(cfg) + kernel.report.static_smem <= ARCHS[cfg.arch].smem_per_block


def test_second_compile_comes_from_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(afc.CACHE_ENV, str(tmp_path))
    cfg = REPRESENTATIVE[0]
    first = afc.compile_kernel(cfg)
    assert not first.cached
    second = afc.compile_kernel(cfg)
    assert second.cached and second.cubin == first.cubin and second.report == first.report


def test_damaged_cache_entry_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv(afc.CACHE_ENV, str(tmp_path))
    cfg = REPRESENTATIVE[0]
    good = afc.compile_kernel(cfg)
    (cubin,) = tmp_path.glob("*.cubin")
    cubin.write_bytes(b"garbage")
    rebuilt = afc.compile_kernel(cfg)
    assert not rebuilt.cached and rebuilt.cubin == good.cubin
    (meta,) = tmp_path.glob("*.json")
    meta.write_text("{ truncated")
    assert not afc.compile_kernel(cfg).cached
    assert afc.compile_kernel(cfg).cached


def test_cache_key_depends_on_source_arch_and_nvrtc(monkeypatch):
    a, b = REPRESENTATIVE[0], REPRESENTATIVE[3]  # same dtype/head dim, other arch
    assert afc.cache_key("src", a) != afc.cache_key("src", b)
    assert afc.cache_key("src", a) != afc.cache_key("src2", a)
    key = afc.cache_key("src", a)
    monkeypatch.setattr(afc, "nvrtc_version", lambda: "99.9")
    assert afc.cache_key("src", a) != key


def test_compile_error_names_the_saved_source(tmp_path, monkeypatch):
    monkeypatch.setenv(afc.CACHE_ENV, str(tmp_path))
    cfg = REPRESENTATIVE[0]
    with pytest.raises(afc.CompileError, match=r"source saved to .*\.cu") as err:
        afc.compile_kernel(cfg, source="this is not CUDA", use_cache=False)
    path = str(err.value).split("source saved to ")[1].split("\n")[0]
    assert open(path).read() == "this is not CUDA"


def test_ptxas_report_parsing():
    text = (
        "ptxas info    : Compiling entry function 'kern' for 'sm_90'\n"
        "ptxas info    : Function properties for kern\n"
        "ptxas         .     16 bytes stack frame, 8 bytes spill stores, 12 bytes spill loads\n"
        "ptxas info    : Used 128 registers, used 1 barriers, 1024 bytes smem\n"
    )
    report = afc.parse_ptxas_report(text, "kern")
    assert (report.registers, report.spill_stores, report.spill_loads, report.stack_frame, report.static_smem) == (
        128, 8, 12, 16, 1024)
    with pytest.raises(afc.CompileError):
        afc.parse_ptxas_report("nothing here", "kern")


def test_cubin_is_for_the_exact_arch():
    cfg = KernelConfig(template="flash_fwd_simt", arch="sm_86", dtype="fp16", head_dim=64, causal=False,
                       block_m=32, block_n=32, warps=4, thread_m=4)
    cubin = afc.compile_kernel(cfg).cubin
    # a CUDA cubin's ELF e_flags (offset 0x30) carry the SM version in bits 8..15
    flags = int.from_bytes(cubin[0x30:0x34], "little")
    assert (flags >> 8) & 0xFF == 86


def test_report_from_cubin_matches_ptxas():
    """The fallback used when NVRTC's cache swallows the ptxas report."""
    for cfg in REPRESENTATIVE[:3]:
        kernel = afc.compile_kernel(cfg, use_cache=False)
        assert kernel.report.source == "ptxas"
        from_elf = afc.report_from_cubin(kernel.cubin, cfg.name)
        assert from_elf.registers == kernel.report.registers
        assert from_elf.stack_frame == kernel.report.stack_frame
        assert afc.resource_report(kernel.cubin, "", cfg.name) == from_elf
