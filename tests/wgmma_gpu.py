"""Shared by the flash_fwd_wgmma GPU test files: the sm_90 check and a config compiled and loaded."""
import pytest


def sm90():
    from autoflash.kernels.device import device_arch

    if device_arch(0)[0] not in ("sm_90", "sm_90a"):
        pytest.skip("flash_fwd_wgmma needs sm_90a")


def load_checked(cfg, marker: str):
    """cfg compiled (no spills, wgmma not serialised) and loaded on this sm_90 GPU; its source must hold `marker`
    (the form the test is about: the compile cache is keyed by the source)."""
    from autoflash.kernels.compile import compile_kernel
    from autoflash.kernels.loaded import LoadedKernel
    from autoflash.kernels.render import render

    sm90()
    assert not cfg.problems(), cfg.problems()
    assert marker in render(cfg)
    compiled = compile_kernel(cfg)
    assert compiled.report.spills == 0 and not compiled.report.wgmma_serialized, compiled.report
    return LoadedKernel(compiled)


def on_grid(monkeypatch, sms) -> None:
    """sms == 3: a persistent grid of 3 CTAs, so each walks tens of items; "all": one CTA per SM."""
    if sms == 3:
        from autoflash.ops import forward_wgmma

        monkeypatch.setattr(forward_wgmma, "_sm_count", lambda: 3)
