"""flash_fwd_wgmma on the GPU against the float64 reference, for what tests/test_wgmma_schedule.py
checks on the CPU: varlen items numbered per sequence (many sequences, lengths around the tile
sizes, empty ones, 64/128/192-row tiles, both causalities and alignments, GQA), with the cheaper
softcap and ALiBi's column form in the same launches. Tolerances: autoflash/ops/reference.py."""
import numpy as np
import pytest

from autoflash.kernels.registry import TEMPLATES
from autoflash.ops.forward_launch import alibi_slopes

pytestmark = pytest.mark.gpu

WG = TEMPLATES["flash_fwd_wgmma"]
# lengths around 64/128/192/256-row tiles and causal pairs, an empty sequence, single tokens
LENS = [0, 1, 127, 128, 129, 255, 256, 257, 383, 384, 385, 511, 512, 513, 1000, 2049, 64, 191, 193, 7]
# (head_dim, block_m, block_n): the D 128 default tiles, one consumer warpgroup, three (D 64)
TILES = [(128, 128, 128), (128, 64, 128), (64, 192, 128)]


def kernel(d, block_m, block_n, causal, **flags):
    from autoflash.kernels.device import device_arch
    from autoflash.serve.api import loaded_kernel

    if device_arch(0)[0] not in ("sm_90", "sm_90a"):
        pytest.skip("flash_fwd_wgmma needs sm_90a")
    cfg = WG.default("sm_90a", {"dtype": "bf16", "head_dim": d, "causal": causal, **flags})
    cfg = type(cfg)(**{**cfg.to_dict(), "block_m": block_m, "block_n": block_n, "warps": 4 * (block_m // 64 + 1)})
    assert not cfg.problems(), cfg.problems()
    return loaded_kernel(cfg, 0)


@pytest.mark.parametrize("tiles", TILES, ids=lambda t: "d{}_br{}_bc{}".format(*t))
@pytest.mark.parametrize("causal", [False, True], ids=["noncausal", "causal"])
def test_varlen_items_per_sequence(tiles, causal):
    from autoflash.ops.forward_launch import run_varlen_checked

    k = kernel(*tiles, causal)
    rng = np.random.default_rng(1)
    for i, lens_q in enumerate((LENS, rng.permutation(LENS).tolist())):
        lens_k = lens_q if i == 0 else [n + int(x) for n, x in zip(lens_q, rng.integers(0, 300, len(lens_q)))]
        for bottom_right in (False, True):
            check = run_varlen_checked(k, lens_q, lens_k, 4, 2, bottom_right=bottom_right, seed=i)
            assert check.passed, f"{k.config.name} lens {lens_q}/{lens_k} br={bottom_right}: {check.describe()}"


@pytest.mark.parametrize("causal", [False, True], ids=["noncausal", "causal"])
@pytest.mark.parametrize("flags", [("softcap",), ("alibi",), ("softcap", "alibi")], ids="+".join)
def test_varlen_softcap_and_alibi_column_form(causal, flags):
    """Sequences long enough that most ALiBi tiles take the column form (keys on one side of every
    diagonal), both sides when non-causal; softcap 30 with scale 1 (logits far past the cap)."""
    from autoflash.ops.forward_launch import run_varlen_checked

    k = kernel(128, 128, 128, causal, **{f: True for f in flags})
    lens = [700, 1, 300, 1500, 129]
    kw = {}
    if "softcap" in flags:
        kw["softcap"] = 30.0
    if "alibi" in flags:
        kw["alibi_slopes"] = alibi_slopes(4)
    check = run_varlen_checked(k, lens, lens, 4, 2, bottom_right=True, seed=3, scale=1.0 if "softcap" in flags else None,
                               **kw)
    assert check.passed, f"{k.config.name} {flags}: {check.describe()}"
