"""What a user can rely on at the edges: NaN/Inf propagate like the reference, memory is
O(N) not O(N^2), no growth across many calls, 64-bit offsets past 2^31 elements."""
import math
import resource

import pytest

import autoflash
from conftest import torch_reference as reference

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch", reason="PyTorch is not installed")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_nan_and_inf_propagate_like_the_reference(dtype, bad):
    q, k, v = (torch.randn(1, 2, 300, 64, device="cuda").to(dtype) for _ in range(3))
    q[0, 0, 5, 3] = bad  # one query row
    k[0, 1, 40, 0] = bad  # one key: every row of head 1 that sees it
    out = autoflash.attention(q, k, v, causal=True)
    ref = reference(q, k, v, causal=True)
    assert torch.equal(torch.isnan(out), torch.isnan(ref)), "NaN pattern differs from the reference"
    finite = ~torch.isnan(ref)
    rel = ((out.double()[finite] - ref[finite]).norm() / ref[finite].norm()).item()
    assert rel < 1e-2


def test_long_sequence_allocates_only_output_and_lse():
    n, d = 131072, 128
    q, k, v = (torch.randn(1, 1, n, d, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    autoflash.attention(q[:, :, :256], k[:, :, :256], v[:, :, :256])  # compile and load outside the measurement
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    out, lse = autoflash.attention(q, k, v, return_lse=True)
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - before
    expected = out.numel() * out.element_size() + lse.numel() * lse.element_size()
    assert extra <= expected + 4096, f"{extra} B allocated, O + LSE are {expected} B"
    assert torch.isfinite(out).all()


def test_no_memory_growth_over_10000_calls():
    q = torch.randn(1, 2, 64, 64, device="cuda", dtype=torch.float16)
    for _ in range(500):
        autoflash.attention(q, q, q)
    torch.cuda.synchronize()
    device_before = torch.cuda.memory_allocated()
    host_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(10000):
        out = autoflash.attention(q, q, q)
    del out
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() <= device_before
    grew_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - host_before
    assert grew_kb < 20 * 1024, f"host peak RSS grew by {grew_kb} KB over 10,000 calls"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_offsets_past_2_to_the_31_elements(dtype):
    """q and o hold more than 2^31 elements: the last head's rows must still be right."""
    hq, n, d = 132, 131072, 128  # 2.2e9 elements per tensor; K/V tiny (MQA) so it runs in seconds
    if torch.cuda.mem_get_info()[0] < 3 * hq * n * d * torch.tensor([], dtype=dtype).element_size():
        pytest.skip("not enough free GPU memory for a >2^31-element tensor")
    q = torch.empty(1, hq, n, d, device="cuda", dtype=dtype)
    q[:, -1].normal_()
    q[:, :-1].normal_()
    k, v = (torch.randn(1, 1, 64, d, device="cuda", dtype=dtype) for _ in range(2))
    out = autoflash.attention(q, k, v)
    tail = slice(n - 300, n)
    ref = reference(q[:, -1:, tail], k, v, causal=False)
    got = out[:, -1:, tail].double()
    assert ((got - ref).norm() / ref.norm()).item() < 1e-2
    head0 = reference(q[:, :1, :300], k, v, causal=False)
    assert ((out[:, :1, :300].double() - head0).norm() / head0.norm()).item() < 1e-2


def test_arrays_on_different_gpus_are_refused():
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs (this machine has one)")
    q = torch.randn(1, 2, 8, 64, device="cuda:0")
    k = torch.randn(1, 2, 8, 64, device="cuda:1")
    with pytest.raises(ValueError, match="one GPU"):
        autoflash.attention(q, k, k)
