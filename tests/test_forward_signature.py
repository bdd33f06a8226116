"""The forward templates and their host side agree on the kernel signature (no GPU): every
rendered kernel declares exactly the parameters launch_args passes, in order and type, and the
causal offset reaches both the tile-skip bound and the mask of every template."""
import re

import numpy as np
import pytest

from autoflash.kernels import tma
from autoflash.kernels.registry import TEMPLATES
from autoflash.kernels.render import render
from autoflash.ops.forward_base import Problem
from conftest import fwd_key as K

SHARED = (["const elem_t*"] * 3 + ["elem_t*", "float*"] + ["int"] * 4 + ["float", "int"] + ["long long"] * 12)
# the variant tail (ops/forward_base.variant_tail): varlen pointers, window, softcap, sinks, ALiBi
VARIANT = ["const int*"] * 3 + ["int", "int", "float", "const float*", "const float*", "int"]
NUMPY = {"const elem_t*": np.uint64, "elem_t*": np.uint64, "float*": np.uint64, "int": np.int32,
         "float": np.float32, "long long": np.int64, "const int*": np.uint64, "const float*": np.uint64}
PINS = [("flash_fwd_simt", "sm_90", "fp32", 64), ("flash_fwd_mma", "sm_90", "bf16", 128),
        ("flash_fwd_wgmma", "sm_90a", "bf16", 128)]


def kernel_params(source: str) -> list[str]:
    """The parameter types of the extern "C" kernel, qualifiers dropped."""
    head = re.search(r'extern "C" __global__ void (?:__launch_bounds__\([^)]*\))?\s*\w+\(([^)]*)\)', source).group(1)
    types = []
    for p in head.split(","):
        p = " ".join(p.replace("__restrict__", "").replace("__grid_constant__", "").split())
        types.append(p.rsplit(" ", 1)[0].replace("const TmaDesc", "TmaDesc"))
    return types


@pytest.mark.parametrize("pin", PINS, ids=lambda p: p[0])
@pytest.mark.parametrize("causal", [False, True])
def test_rendered_signature_matches_launch_args(pin, causal, monkeypatch):
    name, arch, dtype, d = pin
    monkeypatch.setattr(tma, "attention_operand_map", lambda *g: type("M", (), {"kernel_arg": lambda s: "map"})())
    monkeypatch.setattr(tma, "_QKV_CACHE", tma._MapCache(size=4))
    template = TEMPLATES[name]
    cfg = template.default(arch, K(dtype, d, causal))
    params = kernel_params(render(cfg))
    expected = SHARED + (["TmaDesc"] * 3 + ["int"] if name == "flash_fwd_wgmma" else []) + VARIANT
    assert params == expected
    p = Problem(2, 4, 2, 100, 300, d, causal, causal_offset=200, cu_seqlens_q=80, cu_seqlens_k=96, seqused_k=112,
                window_left=7, window_right=-1, softcap=30.0, sinks=128, alibi_slopes=144, alibi_batch_stride=4,
                total_q=200, total_k=600)
    args = template.launch_args(cfg, p, 0.1)(16, 32, 48, 64, 0)
    assert len(args) == len(params)
    for a, t in zip(args, params):
        assert a == "map" if t == "TmaDesc" else type(a) is NUMPY[t], (t, a)
    assert int(args[10]) == 200
    assert [float(a) for a in args[-9:]] == [80, 96, 112, 7, -1, 30.0, 128, 144, 4]


@pytest.mark.parametrize("pin", PINS, ids=lambda p: p[0])
def test_causal_offset_enters_the_tile_bound_and_the_mask(pin):
    name, arch, dtype, d = pin
    source = render(TEMPLATES[name].default(arch, K(dtype, d, True)))
    # keys past the diagonal skipped (seq_k / offset, or their per-sequence forms: seq_k_b, offset)
    assert re.search(r"min\(seq_k\w*, [\w.]+ \+ BLOCK_M \+ (causal_)?offset\)", source)
    assert source.count("causal_offset") >= 3  # the bound, the mask's diagonal, the signature
