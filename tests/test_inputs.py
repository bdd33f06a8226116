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


def op(name, shape, dtype="bf16", kind="torch", device=0, ptr=1 << 20):
    return Operand(name, kind, None, ptr, shape, dtype, device)


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


def test_unsupported_head_dim_names_the_supported_ones():
    from autoflash.serve.dispatch import heuristic_default

    with pytest.raises(InputError, match="head_dim=48"):
        heuristic_default("sm_90", "forward", K("fp32", 48, False))
