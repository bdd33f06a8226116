"""flash_fwd_mma at every head dim that is a multiple of 8 (issue 17 item 2) on the GPU: head dims
that are not a multiple of 16 run padded in shared memory; each default config (bf16, causal for
half of them, bottom-right) against the float64 reference on an odd GQA shape, LSE included. The
configs are compiled first in a pool of processes so the test stays short."""
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import pytest

from autoflash.kernels.registry import TEMPLATES
from autoflash.ops.forward_base import Problem
from conftest import fwd_key as K

pytestmark = pytest.mark.gpu

MMA = TEMPLATES["flash_fwd_mma"]
DIMS = list(range(8, 257, 8))


def _compile(cfg):
    from autoflash.kernels import compile as afc

    return afc.compile_kernel(cfg).report.spills


@pytest.fixture(scope="module")
def configs():
    from autoflash.kernels.archs import build_arch
    from autoflash.kernels.device import device_arch

    arch = build_arch(MMA.archs, device_arch(0)[0])
    if arch is None:
        pytest.skip("flash_fwd_mma does not target this GPU")
    cfgs = {d: MMA.default(arch, K("bf16", d, d % 16 == 8)) for d in DIMS}
    with ProcessPoolExecutor(8, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_compile, cfgs.values()))
    return cfgs


@pytest.mark.parametrize("d", DIMS)
def test_every_multiple_of_8_matches_reference(configs, d):
    from autoflash.ops.forward_launch import run_checked
    from autoflash.serve.api import loaded_kernel

    cfg = configs[d]
    p = Problem(2, 3, 1, 130, 257, d, cfg.causal, causal_offset=257 - 130)
    check = run_checked(loaded_kernel(cfg, 0), p, seed=d)
    assert check.passed, f"{cfg.name}: {check.describe()}"
