"""Every template against the float64 reference on the GPU: dtypes x the main head dims x
causal x odd lengths (1, 17, 1000, 4097) x Nq != Nk x GQA, with the LSE output.
New forward templates are picked up from the registry automatically."""
import pytest

from autoflash.ops.forward_base import Problem
from autoflash.kernels.registry import TEMPLATES, templates_of
from autoflash.ops.forward_launch import CHECK_SHAPES as SHAPES
from conftest import fwd_key as K

pytestmark = pytest.mark.gpu


def gpu_arch():
    from autoflash.kernels.device import device_arch

    return device_arch(0)[0]


# The head dims models use most, where a template has them; every other head dim of flash_fwd_mma
# (each multiple of 8) is checked once per dim by tests/test_mma_head_dims_gpu.py.
MAIN_HEAD_DIMS = (32, 64, 80, 96, 128, 256)
CASES = [
    (name, dtype, d, causal)
    for name, variant in templates_of("forward").items()
    for dtype in variant.dtypes
    for d in variant.head_dims if d in MAIN_HEAD_DIMS
    for causal in (False, True)
]


@pytest.mark.parametrize("template,dtype,head_dim,causal", CASES, ids=["-".join(map(str, c)) for c in CASES])
def test_default_config_matches_reference(template, dtype, head_dim, causal):
    from autoflash.serve.api import loaded_kernel
    from autoflash.ops.forward_launch import run_checked

    from autoflash.kernels.archs import build_arch

    variant = TEMPLATES[template]
    arch = build_arch(variant.archs, gpu_arch())
    if arch is None:
        pytest.skip(f"{template} does not target {gpu_arch()}")
    cfg = variant.default(arch, K(dtype, head_dim, causal))
    kernel = loaded_kernel(cfg, 0)
    for i, (b, hq, hkv, nq, nk) in enumerate(SHAPES):
        p = Problem(b, hq, hkv, nq, nk, head_dim, causal)
        check = run_checked(kernel, p, seed=1000 + i)
        assert check.passed, f"{cfg.name} {p}: {check.describe()}"


def test_scale_is_applied():
    from autoflash.serve.api import loaded_kernel
    from autoflash.ops.forward_launch import run_checked

    cfg = TEMPLATES["flash_fwd_simt"].default(gpu_arch(), K("fp32", 64, False))
    check = run_checked(loaded_kernel(cfg, 0), Problem(1, 2, 2, 300, 500, 64, False), seed=7, scale=0.37)
    assert check.passed, check.describe()
