"""flash_fwd_simt (the CUDA-core template, fp32's only one) at every head dim that is a multiple of 8 on the GPU
(seventeenth session: it took 32, 64, 80, 96, 128 and 256 before): each fp32 default config, causal (bottom-right) for
half of them, against the float64 reference on an odd GQA shape, LSE included; fp16 at the head dims whose default
tile changes (a row group of 8 threads where D is an odd multiple of 8)."""
import pytest

from autoflash.kernels.registry import TEMPLATES
from autoflash.ops.forward_base import Problem
from conftest import fwd_key as K

pytestmark = pytest.mark.gpu

SIMT = TEMPLATES["flash_fwd_simt"]
CASES = [("fp32", d) for d in range(8, 257, 8)] + [("fp16", d) for d in (8, 40, 136, 248)]


@pytest.mark.parametrize("dtype, d", CASES, ids=[f"{t}-d{d}" for t, d in CASES])
def test_every_multiple_of_8_matches_reference(dtype, d):
    from autoflash.kernels.device import device_arch
    from autoflash.ops.forward_launch import run_checked
    from autoflash.serve.api import loaded_kernel

    cfg = SIMT.default(device_arch(0)[0], K(dtype, d, d % 16 == 8))
    assert not cfg.problems(), cfg.problems()
    p = Problem(2, 3, 1, 70, 131, d, cfg.causal, causal_offset=131 - 70)
    check = run_checked(loaded_kernel(cfg, 0), p, seed=d)
    assert check.passed, f"{cfg.name}: {check.describe()}"
