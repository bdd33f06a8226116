"""Input checks that need no GPU: attention() refuses what it cannot take, naming the problem."""
import numpy as np
import pytest

import autoflash
from autoflash.serve.api import InputError, check_inputs, Operand
from conftest import fwd_key as K


def test_numpy_arrays_are_refused():
    x = np.zeros((1, 2, 8, 64), dtype=np.float32)
    with pytest.raises(InputError, match="NumPy array on the CPU"):
        autoflash.attention(x, x, x)


def test_unknown_objects_are_refused():
    with pytest.raises(InputError, match="pass PyTorch CUDA tensors"):
        autoflash.attention([1, 2], [1, 2], [1, 2])


def contiguous(shape):
    return tuple(int(np.prod(shape[i + 1:])) for i in range(len(shape)))


def op(name, shape, dtype="bf16", kind="torch", device=0, ptr=1 << 20, strides=None):
    return Operand(name, kind, None, ptr, shape, dtype, device, strides=contiguous(shape) if strides is None else strides)


@pytest.mark.parametrize(
    "q,k,v,match",
    [
        (op("q", (2, 8, 64)), op("k", (2, 8, 64)), op("v", (2, 8, 64)), "4 dimensions"),
        (op("q", (1, 2, 8, 64)), op("k", (1, 2, 8, 64), "fp16"), op("v", (1, 2, 8, 64)), "one dtype"),
        (op("q", (1, 2, 8, 64)), op("k", (1, 2, 8, 64), kind="cupy"), op("v", (1, 2, 8, 64)), "same kind"),
        (op("q", (1, 2, 8, 64)), op("k", (1, 2, 8, 64), device=1), op("v", (1, 2, 8, 64)), "one GPU"),
        (op("q", (1, 2, 8, 64)), op("k", (1, 2, 8, 64)), op("v", (1, 2, 9, 64)), "same shape"),
        (op("q", (2, 2, 8, 64)), op("k", (1, 2, 8, 64)), op("v", (1, 2, 8, 64)), "batch"),
        (op("q", (1, 2, 8, 64)), op("k", (1, 2, 8, 32)), op("v", (1, 2, 8, 32)), "head_dim"),
        (op("q", (1, 3, 8, 64)), op("k", (1, 2, 8, 64)), op("v", (1, 2, 8, 64)), "multiple"),
        (op("q", (1, 2, 0, 64)), op("k", (1, 2, 8, 64)), op("v", (1, 2, 8, 64)), "empty"),
        (op("q", (0, 2, 8, 64)), op("k", (0, 2, 8, 64)), op("v", (0, 2, 8, 64)), "empty"),
        (op("q", (1, 2, 8, 64), ptr=(1 << 20) + 2), op("k", (1, 2, 8, 64)), op("v", (1, 2, 8, 64)), "aligned"),
        (op("q", (1, 2, 2**31, 64)), op("k", (1, 2, 8, 64)), op("v", (1, 2, 8, 64)), "32-bit"),
    ],
)
def test_shape_dtype_device_checks(q, k, v, match):
    with pytest.raises(InputError, match=match):
        check_inputs(q, k, v)


def test_good_shapes_make_a_problem():
    p = check_inputs(op("q", (2, 8, 100, 128)), op("k", (2, 2, 50, 128)), op("v", (2, 2, 50, 128)))
    assert (p.batch, p.heads_q, p.heads_kv, p.seq_q, p.seq_k, p.head_dim) == (2, 8, 2, 100, 50, 128)
    q, kv = (8 * 100 * 128, 100 * 128, 128), (2 * 50 * 128, 50 * 128, 128)
    assert p.strides == (q, kv, kv, q) and p.causal_offset == 0


def bnhd_view(name, b, h, n, d, dtype="bf16"):
    """A (B, N, H, D) tensor seen as (B, H, N, D), as x.transpose(1, 2) gives it."""
    return op(name, (b, h, n, d), dtype, strides=(n * h * d, d, h * d, 1))


def test_transposed_views_pass_their_strides_to_the_kernel():
    p = check_inputs(bnhd_view("q", 2, 8, 100, 64), bnhd_view("k", 2, 2, 50, 64), bnhd_view("v", 2, 2, 50, 64))
    assert p.strides[0] == (100 * 8 * 64, 64, 8 * 64)
    assert p.strides[1] == p.strides[2] == (50 * 2 * 64, 64, 2 * 64)
    assert p.strides[3] == (8 * 100 * 64, 100 * 64, 64)  # the output is a new contiguous tensor


def test_size_one_dims_get_a_valid_stride_whatever_torch_reports():
    # batch 1, one query token: torch may report any stride for those dims (here 1 element: misaligned)
    q = op("q", (1, 8, 1, 64), strides=(1, 64, 1, 1))
    p = check_inputs(q, op("k", (1, 2, 50, 64)), op("v", (1, 2, 50, 64)))
    sb, sh, sn = p.strides[0]
    assert sh == 64 and sn == 64 and sb % 8 == 0 and sb >= 8 * 64


@pytest.mark.parametrize("strides, match", [
    ((8 * 50 * 64, 50 * 64, 64, 2), "head dim is not contiguous"),
    ((8 * 50 * 66, 50 * 66, 66, 1), "16-byte aligned"),        # bf16 rows 132 B apart
    ((8 * 50 * 64, 50 * 64 + 4, 64, 1), "16-byte aligned"),    # head stride 8 B off
    ((8 * 50 * 64, 50 * 64, -64, 1), "non-negative"),
    ((8 * 50 * 2**24, 50 * 2**24, 2**24, 1), "token stride"),
])
def test_bad_layouts_are_refused(strides, match):
    q = op("q", (2, 8, 50, 64), strides=strides)
    with pytest.raises(InputError, match=match):
        check_inputs(q, op("k", (2, 2, 50, 64)), op("v", (2, 2, 50, 64)))


def test_fp32_rows_need_4_element_strides():
    good = op("q", (1, 2, 8, 64), "fp32", strides=(2 * 12 * 64, 12 * 64, 68, 1))  # 272 B rows: 16-byte multiple
    check_inputs(good, op("k", (1, 2, 8, 64), "fp32"), op("v", (1, 2, 8, 64), "fp32"))
    bad = op("q", (1, 2, 8, 64), "fp32", strides=(2 * 12 * 64, 12 * 64, 66, 1))
    with pytest.raises(InputError, match="multiples of 4 elements"):
        check_inputs(bad, op("k", (1, 2, 8, 64), "fp32"), op("v", (1, 2, 8, 64), "fp32"))


@pytest.mark.parametrize("alignment", ["bottom-right", "top_right", None, 1])
def test_unknown_causal_alignment_is_refused(alignment):
    x = np.zeros((1, 2, 8, 64), dtype=np.float32)
    with pytest.raises(InputError, match="causal_alignment must be one of"):
        autoflash.attention(x, x, x, causal=True, causal_alignment=alignment)


def test_causal_offsets():
    from autoflash.ops.forward_base import causal_offset

    assert causal_offset("top_left", 5, 9) == 0
    assert causal_offset("bottom_right", 5, 9) == 4 and causal_offset("bottom_right", 9, 5) == -4
    assert causal_offset("bottom_right", 7, 7) == 0
    with pytest.raises(ValueError, match="causal_alignment"):
        causal_offset("diagonal", 1, 1)


def test_unsupported_head_dim_names_the_supported_ones():
    from autoflash.serve.dispatch import heuristic_default

    with pytest.raises(InputError, match=r"head_dim=44 .*8\.\.256 step 8"):  # not a multiple of 8
        heuristic_default("sm_90", "forward", K("fp32", 44, False))
