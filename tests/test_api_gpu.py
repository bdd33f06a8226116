"""autoflash.attention() through its public API, with PyTorch and CuPy arrays."""
import math

import pytest

import autoflash
from autoflash.ops.reference import TOLERANCE

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch", reason="PyTorch is not installed")

TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def torch_reference(q, k, v, causal, scale):
    """float64 attention with torch (same semantics as autoflash: top-left causal)."""
    group = q.shape[1] // k.shape[1]
    k = k.double().repeat_interleave(group, dim=1)
    v = v.double().repeat_interleave(group, dim=1)
    s = q.double() @ k.transpose(-1, -2) * scale
    if causal:
        nq, nk = s.shape[-2:]
        s = s.masked_fill(torch.ones(nq, nk, dtype=torch.bool, device=s.device).triu(1), -math.inf)
    return torch.softmax(s, dim=-1) @ v, torch.logsumexp(s, dim=-1)


@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("causal", [False, True])
def test_torch_tensors(dtype, causal):
    g = torch.Generator(device="cuda").manual_seed(3)
    shape_q, shape_kv = (2, 4, 333, 64), (2, 2, 517, 64)
    q = torch.randn(shape_q, device="cuda", generator=g).to(TORCH_DTYPES[dtype])
    k = torch.randn(shape_kv, device="cuda", generator=g).to(TORCH_DTYPES[dtype])
    v = torch.randn(shape_kv, device="cuda", generator=g).to(TORCH_DTYPES[dtype])
    out, lse = autoflash.attention(q, k, v, causal=causal, return_lse=True)
    assert out.dtype == q.dtype and out.shape == q.shape and out.device == q.device
    ref, ref_lse = torch_reference(q, k, v, causal, 1 / 8)
    rel = ((out.double() - ref).norm() / ref.norm()).item()
    assert rel < TOLERANCE[dtype], rel
    assert (lse.double() - ref_lse).abs().max().item() < 1e-3


def test_torch_current_stream_is_used():
    q = torch.randn(1, 2, 256, 64, device="cuda", dtype=torch.float16)
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        out = autoflash.attention(q, q, q)
    s.synchronize()
    ref, _ = torch_reference(q, q, q, False, 1 / 8)
    assert ((out.double() - ref).norm() / ref.norm()).item() < TOLERANCE["fp16"]


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_cupy_arrays(dtype):
    import cupy

    rng = cupy.random.default_rng(5)
    q = rng.standard_normal((1, 2, 100, 128), dtype=cupy.float32).astype(dtype)
    k = rng.standard_normal((1, 2, 70, 128), dtype=cupy.float32).astype(dtype)
    out = autoflash.attention(q, k, k, causal=True, scale=0.1)
    assert isinstance(out, cupy.ndarray) and out.dtype == q.dtype
    ref, _ = torch_reference(torch.as_tensor(q, device="cuda"), torch.as_tensor(k, device="cuda"),
                             torch.as_tensor(k, device="cuda"), True, 0.1)
    got = torch.as_tensor(out, device="cuda").double()
    assert ((got - ref).norm() / ref.norm()).item() < TOLERANCE["fp32" if dtype == "float32" else "fp16"]


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: (torch.randn(1, 2, 8, 64), None), "on cpu"),
        (lambda: (torch.randn(1, 2, 8, 64, device="cuda").double(), None), "dtype"),
        (lambda: (torch.randn(1, 2, 64, 8, device="cuda").transpose(-1, -2), None), "contiguous"),
        (lambda: (torch.randn(2, 8, 64, device="cuda"), None), "4 dimensions"),
        (lambda: (torch.randn(1, 2, 8, 44, device="cuda"), None), "head_dim"),  # not a multiple of 8
        (lambda: (torch.randn(1, 2, 0, 64, device="cuda"), None), "empty"),
    ],
)
def test_bad_input_is_refused(make, match):
    x, _ = make()
    with pytest.raises(ValueError, match=match):
        autoflash.attention(x, x, x)


def test_mismatches_are_refused():
    q = torch.randn(1, 3, 8, 64, device="cuda")
    k = torch.randn(1, 2, 8, 64, device="cuda")
    with pytest.raises(ValueError, match="multiple"):
        autoflash.attention(q, k, k)
    with pytest.raises(ValueError, match="one dtype"):
        autoflash.attention(q, q.half(), q)
    with pytest.raises(ValueError, match="same shape"):
        autoflash.attention(q, q, q[:, :, :4].contiguous())
