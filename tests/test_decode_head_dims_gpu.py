"""Split-KV decode at head dims that are not a tile size (seventeenth session: a tile of the next of 16/32/64/128/256
columns, the padding zero-filled in shared memory) against the float64 reference: lengths 0, 1 and odd, GQA, Nq 1-5,
forced split counts through both merge kernels and the merge inside the split kernel, paged caches and every
variant; and autoflash.attention() serving such a decode shape through the decode kernel."""
import math

import pytest

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch")

import autoflash  # noqa: E402
import test_decode_gpu  # noqa: E402
from test_decode_gpu import make, run_and_check  # noqa: E402
from test_decode_variants_gpu import VARIANTS, variant_args  # noqa: E402
from test_decode_variants_gpu import make as make_cache, run_and_check as run_variant  # noqa: E402

merge_in_split_kernel = test_decode_gpu.merge_in_split_kernel  # the fixture, shared


@pytest.mark.parametrize("head_dim", [8, 24, 40, 80, 96, 136, 192, 248])
@pytest.mark.parametrize("layout", ["bshd", "bhsd"])
def test_head_dims_lengths_and_layouts(head_dim, layout):
    q, k, v = make(5, 2, 2, 4, 3001, head_dim, "bf16", layout, seed=head_dim)
    run_and_check(q, k, v, [0, 1, 2, 3001, 1500], layout=layout)


@pytest.mark.parametrize("num_splits", [1, 3, 64, 100])  # one split; _combine_lanes; its last count; _combine
@pytest.mark.parametrize("head_dim", [80, 96])
def test_split_counts(head_dim, num_splits):
    q, k, v = make(2, 5, 2, 8, 5000, head_dim, "fp16", seed=num_splits)
    run_and_check(q, k, v, [5000, 77], dtype="fp16", num_splits=num_splits)


def test_merge_in_the_split_kernel(merge_in_split_kernel):
    from autoflash.kernels.device import device_arch
    from autoflash.ops.decode import DECODE

    cfg = DECODE.default(device_arch(torch.cuda.current_device())[0],
                         {"dtype": "bf16", "head_dim": 96, "m_tiles": 1}).replace(fused_combine=True)
    q, k, v = make(3, 1, 2, 4, 4000, 96, seed=5)
    run_and_check(q, k, v, [4000, 0, 333], num_splits=8, config=cfg)


@pytest.mark.parametrize("is_paged", [False, True], ids=["contiguous", "paged"])
@pytest.mark.parametrize("name", ["all", "window+sinks"])
def test_variants_and_paged_caches(name, is_paged):
    q, k, v = make_cache(4, 4, 32, 8, d=80, q_scale=3.0 if "softcap" in VARIANTS[name] else 1.0)
    run_variant(q, k, v, [0, 1, 1337, k.shape[1]], True, variant_args(VARIANTS[name], 4, 32), is_paged)


def test_attention_serves_it_with_the_decode_kernel():
    from autoflash.ops.reference import compare, reference_attention

    g = torch.Generator(device="cuda").manual_seed(9)
    q, k, v = (torch.randn(2, h, n, 96, generator=g, device="cuda", dtype=torch.bfloat16)
               for h, n in ((8, 1), (2, 2000), (2, 2000)))
    out, lse = autoflash.attention(q, k, v, return_lse=True)
    f64 = (lambda x: x.double().cpu().numpy())
    ref, ref_lse = reference_attention(f64(q), f64(k), f64(v), causal=False, scale=1 / math.sqrt(96))
    result = compare(f64(out), ref, "bf16", f64(lse), ref_lse)
    assert result.passed, result.describe()
