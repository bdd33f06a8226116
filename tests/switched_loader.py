"""The GPU tests' loader of flash_fwd_wgmma kernels built with an off-by-default WgmmaTemplate switch on
(test_wgmma_fd_gpu.py: causal_trim)."""
import pytest

from autoflash.kernels.registry import TEMPLATES

WG = TEMPLATES["flash_fwd_wgmma"]


def switched_loader(monkeypatch, switch: str, value: int, marker: str):
    """A loader of kernels built (and planned) with WgmmaTemplate.<switch> = value, checking that the source has
    `marker` and nothing spilled (the config name does not say the switch, so these kernels are loaded here, not
    through serve's caches)."""
    from autoflash.kernels.compile import compile_kernel
    from autoflash.kernels.device import device_arch
    from autoflash.kernels.loaded import LoadedKernel
    from autoflash.kernels.render import render

    if device_arch(0)[0] not in ("sm_90", "sm_90a"):
        pytest.skip("flash_fwd_wgmma needs sm_90a")
    monkeypatch.setattr(WG, switch, value)

    def load(cfg):
        assert not cfg.problems(), cfg.problems()
        compiled = compile_kernel(cfg)
        assert marker in render(cfg) and compiled.report.spills == 0, compiled.report
        return LoadedKernel(compiled)

    return load
