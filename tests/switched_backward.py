"""GPU tests of an ops/backward_wgmma switch: the backward run with the switch set, the served kernels and launch plans
forgotten first (so the switch's render is what runs) and after each test (so no later test is served them). Imported
only by GPU test files, after their torch check."""
import pytest

from test_backward_strided_gpu import attention_backward, backward_wgmma

from autoflash.serve import autograd, backward_plans


def forget_kernels() -> None:
    autograd._loaded.cache_clear()
    backward_plans.clear()


@pytest.fixture(autouse=True)
def forget_switched_kernels():
    """(autouse in every module that imports it)"""
    yield
    forget_kernels()


def run_switched(monkeypatch, switch: str, on: bool, *args, **kw):
    """attention_backward(*args, **kw) with backward_wgmma.<switch> = on."""
    monkeypatch.setattr(backward_wgmma, switch, on)
    forget_kernels()
    return attention_backward(*args, **kw)
