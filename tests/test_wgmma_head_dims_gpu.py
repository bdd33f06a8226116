"""flash_fwd_wgmma at every head dim that is a multiple of 8 (issue 17 item 2) on an sm_90 GPU:
the shared-memory tiles are padded to whole 64-column blocks (TMA zero-fills the columns past the
head dim; the tensor maps end there) and S = Qi Kj^T runs ceil(D / 16) k-steps. Each default config
(bf16; causal bottom-right for half of them) against the float64 reference on an odd GQA shape,
LSE included; every variant at a few odd head dims, and one varlen batch. Configs are compiled
first in a pool of processes so the test stays short."""
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import pytest

from autoflash.kernels.registry import TEMPLATES
from autoflash.ops.forward_base import VARIANT_FLAGS, Problem

pytestmark = pytest.mark.gpu

WG = TEMPLATES["flash_fwd_wgmma"]
DIMS = list(range(8, 257, 8))
VARIANT_DIMS = (8, 40, 80, 200)  # below one column block, 2.5 k-steps, 1.25 blocks, 3.125 blocks
ALL = dict.fromkeys(VARIANT_FLAGS, True)


def key(d: int, causal: bool, **flags) -> dict:
    return {"dtype": "bf16", "head_dim": d, "causal": causal, **flags}


def _compile(cfg):
    from autoflash.kernels import compile as afc

    return afc.compile_kernel(cfg).report.spills


def compile_on_sm90(cfgs: dict) -> list:
    """Skips the test unless this GPU is sm_90, then compiles cfgs' configs in a pool of processes
    (the test stays short); returns each one's spilled bytes."""
    from autoflash.kernels.device import device_arch

    if device_arch(0)[0] not in ("sm_90", "sm_90a"):
        pytest.skip("flash_fwd_wgmma needs an sm_90 GPU")
    with ProcessPoolExecutor(min(16, multiprocessing.cpu_count()), mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(_compile, cfgs.values()))


@pytest.fixture(scope="module")
def configs():
    cfgs = {("plain", d): WG.default("sm_90a", key(d, d % 16 == 8)) for d in DIMS}
    cfgs.update({("all", d): WG.default("sm_90a", key(d, d % 16 == 0, **ALL)) for d in VARIANT_DIMS})
    compile_on_sm90(cfgs)
    return cfgs


@pytest.mark.parametrize("d", DIMS)
def test_every_multiple_of_8_matches_reference(configs, d):
    from autoflash.ops.forward_launch import run_checked
    from autoflash.serve.api import loaded_kernel

    cfg = configs[("plain", d)]
    p = Problem(2, 3, 1, 130, 257, d, cfg.causal, causal_offset=257 - 130)
    check = run_checked(loaded_kernel(cfg, 0), p, seed=d)
    assert check.passed, f"{cfg.name}: {check.describe()}"


@pytest.mark.parametrize("d", VARIANT_DIMS)
def test_all_variants_and_varlen_at_odd_head_dims(configs, d):
    import numpy as np

    from autoflash.ops.forward_launch import alibi_slopes, run_checked, run_varlen_checked
    from autoflash.serve.api import loaded_kernel

    cfg = configs[("all", d)]
    kernel = loaded_kernel(cfg, 0)
    window = (70, 0 if cfg.causal else 33)
    sinks = np.linspace(-2, 2, 4).astype(np.float32)
    p = Problem(1, 4, 2, 300, 500, d, cfg.causal, causal_offset=200, window_left=window[0], window_right=window[1],
                softcap=5.0)
    check = run_checked(kernel, p, seed=d, sinks=sinks, alibi_slopes=alibi_slopes(4))
    assert check.passed, f"{cfg.name} dense: {check.describe()}"
    check = run_varlen_checked(kernel, [1, 130, 0, 257], [7, 100, 3, 300], 4, 2, seed=d, window=window, softcap=5.0,
                               sinks=sinks, alibi_slopes=alibi_slopes(4))
    assert check.passed, f"{cfg.name} varlen: {check.describe()}"
