"""Variable-length batches (issue 15 item 2) on the CPU: the host checks of cu_seqlens / seqused_k
(every bad array refused with a clear error before a launch), the packed operand view, the per-
sequence reference against one dense reference, the export, and the kernels' shared marker."""
import types
from pathlib import Path

import numpy as np
import pytest

import autoflash
from autoflash.ops.forward_base import BOTTOM_RIGHT_PER_SEQUENCE
from autoflash.ops.forward_launch import cu_seqlens
from autoflash.ops.reference import reference_attention
from autoflash.serve import varlen
from autoflash.serve.api import Operand
from autoflash.serve.errors import InputError

ROOT = Path(__file__).resolve().parent.parent


def test_exported():
    assert autoflash.attention_varlen is varlen.attention_varlen
    assert "attention_varlen" in autoflash.__all__
    for text in ("cu_seqlens_q", "bottom_right", "(heads_q, total_q)", "host", "window_size", "sinks"):
        assert text in varlen.attention_varlen.__doc__


def test_marker_matches_the_templates():
    common = (ROOT / "templates" / "common.cuh.j2").read_text()
    assert "BOTTOM_RIGHT_PER_SEQUENCE = 1 << 30" in common and BOTTOM_RIGHT_PER_SEQUENCE == 1 << 30


def test_cu_seqlens_helper():
    assert cu_seqlens([3, 0, 5]).tolist() == [0, 3, 3, 8] and cu_seqlens([1]).dtype == np.int32


@pytest.mark.parametrize("cu,total,max_len,fragment", [
    ([1, 3, 5], 5, 8, r"cu_seqlens_q\[0\] must be 0"),
    ([0, 4, 3, 5], 5, 8, r"must not decrease: cu_seqlens_q\[1\] = 4 > cu_seqlens_q\[2\] = 3"),
    ([0, 2, 4], 5, 8, r"cu_seqlens_q\[-1\] = 4 must equal the packed token count 5"),
    ([0, 2, 9], 9, 6, "sequence 1 has 7 tokens by cu_seqlens_q, more than max_seqlen_q = 6"),
    ([0, 2, 5], 5, 0, "max_seqlen_q must be a positive int"),
    ([0, 2, 5], 5, 2.5, "max_seqlen_q must be a positive int"),
    ([0, 2, 5], 5, True, "max_seqlen_q must be a positive int"),
])
def test_bad_cu_seqlens_refused(cu, total, max_len, fragment):
    with pytest.raises(InputError, match=fragment):
        varlen._check_offsets(np.array(cu), "cu_seqlens_q", total, max_len, "max_seqlen_q")


def test_good_cu_seqlens_give_spans():
    spans = varlen._check_offsets(np.array([0, 0, 3, 4097, 4097]), "cu_seqlens_k", 4097, 4097, "max_seqlen_k")
    assert spans.tolist() == [0, 3, 4094, 0]  # empty sequences are allowed


class FakeIndex:
    """What _host_index reads of a torch tensor, without torch."""
    __module__ = "torch"

    def __init__(self, values, cuda=True, device=0):
        self.shape = np.asarray(values).shape
        self.is_cuda, self._device = cuda, device
        self.device = f"cuda:{device}" if cuda else "cpu"

    def get_device(self):
        return self._device if self.is_cuda else -1


Q = Operand("q", "torch", None, 0, (10, 4, 64), "bf16", 0, strides=(256, 64, 1))


@pytest.mark.parametrize("x,fragment", [
    (np.array([0, 1], np.int32), "must be a torch int32 CUDA tensor like q"),
    (FakeIndex([0, 1], cuda=False), "is on cpu; it must be on q's device"),
    (FakeIndex([0, 1], device=1), "q's device"),
])
def test_index_arrays_must_be_device_tensors_of_q(x, fragment):
    with pytest.raises(InputError, match=fragment):
        varlen._host_index(x, "cu_seqlens_q", Q, None)


def test_cupy_q_takes_cupy_indices():
    q = Operand("q", "cupy", None, 0, (10, 4, 64), "bf16", 0, strides=(256, 64, 1))
    with pytest.raises(InputError, match="must be a CuPy int32 array like q"):
        varlen._host_index(np.array([0, 1], np.int32), "cu_seqlens_q", q, None)


def test_packed_operand_is_seen_as_one_batch():
    t = Operand("k", "torch", None, 0, (300, 2, 64), "bf16", 0, strides=(4 * 64, 64, 1))  # a (total, H, D) slice
    one = varlen._as_one_batch(t)
    assert one.shape == (1, 2, 300, 64) and one.strides == (0, 64, 256, 1)


@pytest.mark.parametrize("entry", ["attention_varlen", "attention_with_seqused_k"])
def test_bad_alignment_refused(entry):
    """Refused first, before any input is looked at."""
    args = (None,) * (7 if entry == "attention_varlen" else 4)
    with pytest.raises(InputError, match="causal_alignment must be one of"):
        getattr(varlen, entry)(*args, causal_alignment="diagonal")


def test_per_sequence_reference_equals_dense_for_equal_lengths():
    """The checked run assembles the reference sequence by sequence; with equal lengths that is
    the dense reference of the same (batch, ...) data."""
    rng = np.random.default_rng(0)
    b, hq, hkv, n, d = 3, 4, 2, 7, 16
    q, k, v = (rng.standard_normal((b, h, n, d)) for h in (hq, hkv, hkv))
    slopes = np.linspace(0.1, 0.4, hq)
    dense, dense_lse = reference_attention(q, k, v, causal=True, window=(2, 0), softcap=1.5, alibi_slopes=slopes)
    for i in range(b):
        o, lse = reference_attention(q[i:i + 1], k[i:i + 1], v[i:i + 1], causal=True, window=(2, 0), softcap=1.5,
                                     alibi_slopes=slopes)
        np.testing.assert_allclose(o[0], dense[i], atol=1e-13)
        np.testing.assert_allclose(lse[0], dense_lse[i], atol=1e-13)


# ------------------------------------------------------------ the host path, faked GPU
from test_variants import FakeCupyArray, fake_launch  # noqa: E402,F401  (fake_launch: a fixture)


def index(values, ptr):
    a = FakeCupyArray((len(values),), "int32", ptr=ptr, itemsize=4)
    a.values = np.asarray(values, np.int32)
    return a


@pytest.mark.parametrize("alignment", ["bottom_right", "top_left"])
def test_attention_varlen_launch(fake_launch, alignment):
    lens_q, lens_k = [5, 0, 300, 17], [9, 4, 300, 1]
    cq, ck = cu_seqlens(lens_q), cu_seqlens(lens_k)
    q = FakeCupyArray((int(cq[-1]), 8, 128), strides=(16 * 128 * 2, 128 * 2, 2))  # heads strided (a slice)
    k = v = FakeCupyArray((int(ck[-1]), 2, 128))
    out, lse = autoflash.attention_varlen(q, k, v, index(cq, 111), index(ck, 222), 512, 512, causal=True,
                                          causal_alignment=alignment, window_size=(32, 32), return_lse=True,
                                          seqused_k=index([9, 0, 200, 1], 333))
    cfg, p, _, _ = fake_launch[-1]
    assert cfg.causal and cfg.window and not cfg.sinks
    assert (p.batch, p.seq_q, p.seq_k, p.total_q, p.total_k) == (4, 300, 200, 322, 314)
    assert (p.cu_seqlens_q, p.cu_seqlens_k, p.seqused_k) == (111, 222, 333)
    assert p.causal_offset == (BOTTOM_RIGHT_PER_SEQUENCE if alignment == "bottom_right" else 0)
    assert (p.window_left, p.window_right) == (32, 0)
    assert p.strides[0][1:] == (128, 16 * 128) and p.strides[3][1:] == (128, 8 * 128)  # (head, token) strides
    assert out.shape == (322, 8, 128) and lse.shape == (8, 322)


@pytest.mark.parametrize("cu_k,used,fragment", [
    ([0, 9, 13], None, r"cu_seqlens_k\[-1\] = 13 must equal the packed token count 14"),
    ([0, 9, 14], [9, 6], r"seqused_k\[1\] = 6 is outside 0..5"),
    ([0, 9, 14, 14], None, "cu_seqlens_q has 3 entries and cu_seqlens_k 4"),
])
def test_attention_varlen_refusals(fake_launch, cu_k, used, fragment):
    q, k = FakeCupyArray((10, 4, 64)), FakeCupyArray((14, 4, 64))
    with pytest.raises(InputError, match=fragment):
        autoflash.attention_varlen(q, k, k, index([0, 4, 10], 1), index(cu_k, 2), 8, 9,
                                   seqused_k=None if used is None else index(used, 3))
    assert not fake_launch


def test_attention_with_seqused_k_launch(fake_launch):
    from autoflash.serve.varlen import attention_with_seqused_k

    q = FakeCupyArray((3, 8, 64, 128))
    k = v = FakeCupyArray((3, 2, 1024, 128))
    attention_with_seqused_k(q, k, v, index([64, 700, 1024], 444), causal=True)
    cfg, p, _, _ = fake_launch[-1]
    assert cfg.causal and p.seqused_k == 444 and p.cu_seqlens_q == 0 and p.causal_offset == BOTTOM_RIGHT_PER_SEQUENCE
    with pytest.raises(InputError, match=r"seqused_k\[0\] = 1025 is outside 0..1024"):
        attention_with_seqused_k(q, k, v, index([1025, 0, 0], 444))


class FakeTorchIndex(FakeIndex):
    """A CUDA int32 index tensor as _host_index sees it (torch installed, no GPU)."""
    __module__ = "torch"

    def __init__(self, values):
        import torch

        super().__init__(values)
        self.dtype, self.values = torch.int32, np.asarray(values, np.int32)

    def is_contiguous(self):
        return True

    def cpu(self):
        return types.SimpleNamespace(numpy=lambda: self.values)


def test_seqused_k_under_graph_capture_is_left_to_the_kernel(monkeypatch):
    """Outside capture: copied and checked. Under capture: cu_seqlens (which the kernel trusts) is
    refused, seqused_k (which the kernel clamps, common.cuh.j2 sequence_span) is not copied."""
    torch = pytest.importorskip("torch")
    x = FakeTorchIndex([3, 9])
    assert varlen._host_index(x, "seqused_k", Q, 2, capture_ok=True).tolist() == [3, 9]
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    assert varlen._host_index(x, "seqused_k", Q, 2, capture_ok=True) is None
    with pytest.raises(InputError, match="a CUDA graph capture cannot do.*prepare_varlen"):
        varlen._host_index(x, "cu_seqlens_q", Q, None)
    common = (ROOT / "templates" / "common.cuh.j2").read_text()
    assert "s.seq_k = min(max(seqused_k[b], 0), s.seq_k)" in common


def test_prepare_varlen_checks_first_and_launches_each_call(fake_launch):
    lens = [5, 0, 30]
    cq = cu_seqlens(lens)
    q = FakeCupyArray((int(cq[-1]), 4, 64))
    with pytest.raises(InputError, match="more than max_seqlen_q = 8"):
        varlen.prepare_varlen(q, q, q, index(cq, 1), index(cq, 2), 8, 30)
    assert not fake_launch
    launch = varlen.prepare_varlen(q, q, q, index(cq, 1), index(cq, 2), 30, 30, causal=True)
    assert not fake_launch  # checked, nothing launched yet
    launch(), launch()
    assert len(fake_launch) == 2 and fake_launch[0][1] is fake_launch[1][1]  # one checked problem
    assert fake_launch[0][1].seq_q == 30 and fake_launch[0][1].cu_seqlens_q == 1
