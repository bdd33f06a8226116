"""attention_backward's host path with ops/backward_wgmma.STRIDED on (the default), without a GPU or torch (tests/test_backward_host_plans.py's
faked tensors and driver): views of a fused projection are read in place (their strides in the packed launches) and
planned, the gradients laid out as torch.empty_like(q, k, v); a flash_bwd_mma-served key (D 256) reads contiguous copies
and its gradients are copied into that layout; a misaligned view is refused before any launch."""
import pytest

from autoflash.ops import backward_wgmma

from test_backward_host_plans import gpu  # noqa: F401 (the fixture)

B, H, N = 2, 4, 40


@pytest.fixture
def strided(monkeypatch):
    monkeypatch.setattr(backward_wgmma, "STRIDED", True)

def _empty_like_strides(shape, strides):
    """torch.empty_like's (preserve_format) strides: dense in the input's dim order (by decreasing stride)."""
    order = sorted(range(len(shape)), key=lambda i: -strides[i])
    out, step = [0] * len(shape), 1
    for i in reversed(order):
        out[i], step = step, step * shape[i]
    return tuple(out)


@pytest.fixture
def host(gpu, monkeypatch, strided):
    """tests/test_backward_host_plans.py's faked GPU, its tensors able to be views (and torch.empty_like)."""
    import test_backward_host_plans as hp

    class View(hp.FakeTensor):
        __module__ = "torch"

        def dim(self):
            return len(self.shape)

        def element_size(self):
            return 4 if "float32" in self.dtype else 2

        def contiguous(self):
            return self if self.is_contiguous() else View(self.shape, self.dtype, log=self.log)

        def new_empty_strided(self, shape, strides):
            return View(shape, self.dtype, strides=strides, log=self.log)

        def copy_(self, other):
            self.copied = other
            return self

    def empty_like(t):
        return View(t.shape, t.dtype, strides=_empty_like_strides(t.shape, t.stride()))

    faked = hp.frameworks.torch()  # the gpu fixture's
    fake = type(faked)(**{**vars(faked), "Tensor": View, "empty_like": empty_like})
    monkeypatch.setattr(hp.frameworks, "torch", lambda: fake)
    return View, gpu


def host_views(View, d=64, n=N):
    qkv = (n * 3 * H * d, d, 3 * H * d, 1)
    q, k, v = (View((B, H, n, d), strides=qkv) for _ in range(3))
    out, lse = View((B, H, n, d)), View((B, H, n), "torch.float32")
    grad_out = View((B, H, n, d), strides=(n * H * d, d, H * d, 1))
    return [q, k, v, out, lse, grad_out]


def test_views_are_read_in_place_and_planned(host):
    from autoflash.serve import autograd, backward_plans
    from test_backward_host_plans import pointer

    View, faked_gpu = host
    ts = host_views(View)
    dq, dk, dv = autograd.attention_backward(*ts, causal=True)
    assert dq.stride() == dk.stride() == dv.stride() == (N * H * 64, 64, H * 64, 1)  # empty_like of the views
    assert len(faked_gpu.checked) == 1 and len(backward_plans._plans) == 1
    ts2 = host_views(View)
    grads = autograd.attention_backward(*ts2, causal=True)  # new views, same layout: the plan
    assert len(faked_gpu.checked) == 1 and [g.stride() for g in grads] == [dq.stride()] * 3
    entry = next(iter(backward_plans._plans.values()))
    assert entry.launch.strided  # flash_bwd_wgmma's kernels take the strides
    packed = entry.packed
    assert [pointer(packed, 1, i) for i in range(4)] == [t.data_ptr() for t in (ts2[0], ts2[1], ts2[2], ts2[5])]
    main = packed.launches[1]
    strides = [int(x) for x in main.values[-18:]]
    row = N * 3 * H * 64
    assert strides[:9] == [row, 64, 3 * H * 64] * 3 and strides[9:12] == [N * H * 64, 64, H * 64]


def test_mma_served_views_are_copied_and_gradients_keep_the_layout(host):
    from autoflash.serve import autograd, backward_plans

    View, faked_gpu = host
    ts = host_views(View, d=256)
    grads = autograd.attention_backward(*ts, causal=True)
    assert [g.stride() for g in grads] == [(N * H * 256, 256, H * 256, 1)] * 3
    assert all(g.copied.is_contiguous() for g in grads)  # flash_bwd_mma's contiguous gradients, copied in
    assert not backward_plans._plans  # (its launches read the copies: no plan on the views)


def test_misaligned_view_is_refused_clearly(host):
    from autoflash.serve import autograd

    View, _ = host
    ts = host_views(View)
    ts[0] = View((B, H, N, 64), strides=(N * (3 * H * 64 + 4), 64, 3 * H * 64 + 4, 1))
    with pytest.raises(ValueError, match="q's rows are not 16-byte aligned"):
        autograd.attention_backward(*ts, causal=True)


def test_contiguous_inputs_keep_their_plan_and_layout(host):
    from autoflash.serve import autograd, backward_plans

    View, faked_gpu = host
    for d in (64, 256):  # flash_bwd_wgmma (passed contiguous strides) and flash_bwd_mma
        ts = host_views(View, d=d)
        ts[:3] = [View((B, H, N, d)) for _ in range(3)]
        ts[5] = View((B, H, N, d))
        grads = autograd.attention_backward(*ts, causal=True)
        assert all(g.is_contiguous() and not hasattr(g, "copied") for g in grads)
    assert len(backward_plans._plans) == 2 and len(faked_gpu.checked) == 2
    assert [entry.launch.strided for entry in backward_plans._plans.values()] == [True, False]
