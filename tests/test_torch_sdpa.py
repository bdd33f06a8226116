"""autoflash.torch.scaled_dot_product_attention against torch's own SDPA.

GPU tests compare with torch.nn.functional.scaled_dot_product_attention computed in
float64 from the same (upcast) inputs, with the tolerances of autoflash/reference.py
(relative error of the whole output: fp32 1e-4, fp16 3e-3, bf16 1e-2; why each is
what it is is written there). CPU tests cover what is refused before the GPU is
touched, and tracing with fake tensors; everything skips without PyTorch.
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from autoflash.ops.reference import TOLERANCE

try:
    import torch
except ImportError:  # CI has no PyTorch: only the import test below runs
    torch = None

ROOT = Path(__file__).resolve().parent.parent


def _env_with_root() -> dict:
    """This process's environment with the checkout first on PYTHONPATH (keeping the rest)."""
    paths = [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")


def test_import_autoflash_does_not_import_torch():
    code = "import sys, autoflash, autoflash.serve.api, autoflash.export, autoflash.cli, autoflash.tuning.tuner; assert 'torch' not in sys.modules, 'torch imported'"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env=_env_with_root())
    assert proc.returncode == 0, proc.stderr


if torch is not None:
    import torch.nn.functional as F

    import autoflash.torch as aft

    DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _rel(out, ref) -> float:
    return ((out.double() - ref).norm() / ref.norm()).item()


def _inputs(shape_q, shape_kv, dtype, seed=0, device="cuda"):
    g = torch.Generator(device=device).manual_seed(seed)
    return [torch.randn(s, device=device, generator=g).to(DTYPES[dtype]) for s in (shape_q, shape_kv, shape_kv)]


def _reference(q, k, v, **kw):
    """torch's SDPA in float64 (the math path): the semantics autoflash must match."""
    return F.scaled_dot_product_attention(q.double(), k.double(), v.double(), **kw)


# ------------------------------------------------------------- CPU only
@needs_torch
class TestRefusedBeforeTheGpu:
    def _t(self, *shape, **kw):
        return torch.zeros(*shape, **kw)

    def test_attn_mask_names_is_causal(self):
        q = self._t(1, 2, 8, 64)
        with pytest.raises(aft.UnsupportedError, match="is_causal=True.*torch.nn.functional.scaled_dot_product"):
            aft.scaled_dot_product_attention(q, q, q, attn_mask=torch.ones(8, 8, dtype=torch.bool))

    def test_dropout_names_torch(self):
        q = self._t(1, 2, 8, 64)
        with pytest.raises(NotImplementedError, match="dropout_p=0.1.*torch.nn.functional"):
            aft.scaled_dot_product_attention(q, q, q, dropout_p=0.1)

    def test_requires_grad_reaches_the_device_check(self):
        """Inputs that require grad are served (the backward exists): the call gets past every
        argument check and stops at the device, with grad mode on and off."""
        q = self._t(1, 2, 8, 64, requires_grad=True, dtype=torch.float16)
        k = self._t(1, 2, 8, 64, dtype=torch.float16)
        with pytest.raises(ValueError, match="on cpu.*cuda"):
            aft.scaled_dot_product_attention(q, k, k)
        with torch.no_grad():
            with pytest.raises(ValueError, match="on cpu.*cuda"):
                aft.scaled_dot_product_attention(q, k, k)

    @pytest.mark.parametrize("shapes,kw,match", [
        (((1, 4, 8, 64), (1, 2, 8, 64)), {}, "enable_gqa=True"),
        (((1, 3, 8, 64), (1, 2, 8, 64)), {"enable_gqa": True}, "multiple"),
        (((1, 2, 8, 64), (2, 8, 64)), {}, "same number of dimensions"),
        (((8,), (8,)), {}, "at least 2"),
        (((2, 2, 8, 64), (3, 2, 8, 64)), {}, "leading .batch. dims"),
        (((1, 2, 8, 64), (1, 2, 8, 32)), {}, "embedding dim"),
    ])
    def test_shape_errors(self, shapes, kw, match):
        q, k = (self._t(*s) for s in shapes)
        with pytest.raises(ValueError, match=match):
            aft.scaled_dot_product_attention(q, k, k, **kw)

    def test_value_head_dim_must_match(self):
        q, v = self._t(1, 2, 8, 64), self._t(1, 2, 8, 32)
        with pytest.raises(aft.UnsupportedError, match="value's head dim"):
            aft.scaled_dot_product_attention(q, q, v)

    def test_dtype_errors(self):
        q = self._t(1, 2, 8, 64)
        with pytest.raises(ValueError, match="one dtype"):
            aft.scaled_dot_product_attention(q, q.half(), q)
        with pytest.raises(ValueError, match="float64 is not supported"):
            aft.scaled_dot_product_attention(q.double(), q.double(), q.double())

    def test_cpu_tensors_name_the_device(self):
        q = self._t(1, 2, 8, 64)
        with pytest.raises(ValueError, match="query is on cpu"):
            aft.scaled_dot_product_attention(q, q, q)

    def test_not_a_tensor(self):
        q = self._t(1, 2, 8, 64)
        with pytest.raises(TypeError, match="key must be a torch.Tensor"):
            aft.scaled_dot_product_attention(q, [1.0], q)


@needs_torch
@pytest.mark.parametrize("shape_q,shape_kv,gqa", [
    ((100, 64), (77, 64), False),  # (L, E)
    ((4, 100, 64), (4, 77, 64), False),  # (H, L, E)
    ((2, 3, 4, 100, 64), (2, 3, 1, 77, 64), True),  # 5-D, MQA
])
def test_fake_tensors_give_sdpa_shapes(shape_q, shape_kv, gqa):
    """The fake implementation (what torch.compile traces with) gives SDPA's output shape."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        q = torch.empty(shape_q, device="cuda", dtype=torch.bfloat16)
        k = torch.empty(shape_kv, device="cuda", dtype=torch.bfloat16)
        out = aft.scaled_dot_product_attention(q, k, k, is_causal=True, enable_gqa=gqa)
        assert out.shape == q.shape and out.dtype == q.dtype and out.device.type == "cuda"
        assert out.is_contiguous()


@needs_torch
def test_traces_as_one_graph_with_the_custom_op():
    """Dynamo (strict export: fullgraph) traces through the drop-in to one autoflash::sdpa node."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    class Block(torch.nn.Module):
        def forward(self, q, k, v):
            return aft.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3, enable_gqa=True) * 2

    with FakeTensorMode(allow_non_fake_inputs=True):
        q = torch.empty(2, 4, 100, 64, device="cuda", dtype=torch.float16)
        k = torch.empty(2, 1, 77, 64, device="cuda", dtype=torch.float16)
        ep = torch.export.export(Block(), (q, k, k), strict=True)
    calls = [n for n in ep.graph.nodes if n.op == "call_function" and "autoflash" in str(n.target)]
    assert len(calls) == 1 and str(calls[0].target) == "autoflash.sdpa.default"
    assert calls[0].args[3:] == (True, 0.3)


# ------------------------------------------------------------------ GPU
def on_gpu(fn):
    return pytest.mark.gpu(needs_torch(fn))


@on_gpu
@pytest.mark.parametrize("dtype", ["fp16", "bf16", "fp32"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shape_q,shape_kv,gqa", [
    ((2, 4, 333, 64), (2, 4, 517, 64), False),  # (B, H, L, E), L < S
    ((4, 300, 128), (4, 200, 128), False),  # (H, L, E), L > S
    ((2, 3, 8, 129, 64), (2, 3, 2, 129, 64), True),  # 5-D leading dims, GQA 8/2
    ((200, 64), (31, 64), False),  # (L, E)
])
def test_matches_torch_sdpa(dtype, causal, shape_q, shape_kv, gqa):
    q, k, v = _inputs(shape_q, shape_kv, dtype, seed=1)
    with torch.no_grad():
        out = aft.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=gqa)
    ref = _reference(q, k, v, is_causal=causal, enable_gqa=gqa)
    assert out.shape == q.shape and out.dtype == q.dtype and out.device == q.device
    assert _rel(out, ref) < TOLERANCE[dtype]


@on_gpu
@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_scale_and_mqa(dtype):
    q, k, v = _inputs((3, 16, 250, 128), (3, 1, 250, 128), dtype, seed=2)
    out = aft.scaled_dot_product_attention(q, k, v, scale=0.05, enable_gqa=True)
    ref = _reference(q, k, v, scale=0.05, enable_gqa=True)
    assert _rel(out, ref) < TOLERANCE[dtype]


@on_gpu
def test_transposed_inputs_are_served():
    """(B, L, H, E) projections transposed to (B, H, L, E), as a model hands them over: read in
    place (no copy: tests/test_causal_strided_gpu.py checks peak memory)."""
    q, k, v = _inputs((2, 300, 4, 64), (2, 300, 4, 64), "bf16", seed=3)
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    assert not q.is_contiguous()
    out = aft.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert _rel(out, _reference(q, k, v, is_causal=True)) < TOLERANCE["bf16"]
    assert not q.is_contiguous()  # the caller's tensors are left as they were


@on_gpu
def test_misaligned_view_is_copied():
    base = _inputs((2 * 64 * 64 + 1,), (1,), "fp16", seed=4)[0]
    q = base[1:].view(1, 2, 64, 64)  # contiguous, but 2 bytes past a 16-byte boundary
    assert q.data_ptr() % 16
    out = aft.scaled_dot_product_attention(q, q, q)
    assert _rel(out, _reference(q, q, q)) < TOLERANCE["fp16"]


@on_gpu
def test_runs_on_the_current_stream():
    q, k, v = _inputs((2, 4, 512, 64), (2, 4, 512, 64), "fp16", seed=5)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        out = aft.scaled_dot_product_attention(q, k, v)
        out = out * 1  # ordered after the kernel on the same stream
    torch.cuda.current_stream().wait_stream(side)
    assert _rel(out, _reference(q, k, v)) < TOLERANCE["fp16"]


@on_gpu
def test_empty_query_gives_empty_output():
    q, k, v = _inputs((2, 4, 0, 64), (2, 4, 16, 64), "fp16")
    out = aft.scaled_dot_product_attention(q, k, v)
    assert out.shape == (2, 4, 0, 64)


@on_gpu
def test_unsupported_head_dim_is_named():
    q, k, v = _inputs((1, 2, 16, 264), (1, 2, 16, 264), "fp16")  # past every template (multiples of 8 to 256)
    with pytest.raises(ValueError, match="head_dim"):
        aft.scaled_dot_product_attention(q, k, v)


@on_gpu
def test_opcheck():
    """torch.library's own checks of the op: schema, fake vs real, no aliasing, stride contract."""
    q, k, v = _inputs((2, 8, 128, 64), (2, 2, 128, 64), "bf16", seed=6)
    torch.library.opcheck(torch.ops.autoflash.sdpa.default, (q, k, v, True, 0.125))


@on_gpu
@pytest.mark.parametrize("dtype,causal,shape_q,shape_kv", [
    ("fp16", True, (2, 8, 384, 64), (2, 2, 384, 64)),
    ("bf16", False, (2, 3, 4, 200, 128), (2, 3, 4, 260, 128)),
])
def test_inside_torch_compile(dtype, causal, shape_q, shape_kv):
    q, k, v = _inputs(shape_q, shape_kv, dtype, seed=7)
    gqa = shape_q[-3] != shape_kv[-3]

    def block(q, k, v):
        x = aft.scaled_dot_product_attention(q * 1.5, k, v, is_causal=causal, enable_gqa=gqa)
        return torch.nn.functional.gelu(x) + 1

    compiled = torch.compile(block, fullgraph=True)
    out = compiled(q, k, v)
    ref = torch.nn.functional.gelu(_reference(q * 1.5, k, v, is_causal=causal, enable_gqa=gqa)) + 1
    assert out.dtype == q.dtype and out.shape == q.shape
    assert _rel(out, ref) < TOLERANCE[dtype]
    eager = block(q, k, v)
    assert _rel(out, eager.double()) < TOLERANCE[dtype]


@on_gpu
def test_cuda_graph_capture_and_replay():
    q, k, v = _inputs((2, 8, 256, 128), (2, 4, 300, 128), "bf16", seed=8)
    static = [t.clone() for t in (q, k, v)]
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside the capture, as torch's docs advise
        aft.scaled_dot_product_attention(*static, is_causal=True, enable_gqa=True)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = aft.scaled_dot_product_attention(*static, is_causal=True, enable_gqa=True)
    for seed in (9, 10):  # new inputs copied into the captured buffers, then replayed
        new = _inputs((2, 8, 256, 128), (2, 4, 300, 128), "bf16", seed=seed)
        for s, n in zip(static, new):
            s.copy_(n)
        graph.replay()
        ref = _reference(*new, is_causal=True, enable_gqa=True)
        assert _rel(static_out, ref) < TOLERANCE["bf16"]


@on_gpu
def test_first_call_inside_a_graph_capture(tmp_path):
    """In a fresh process, the very first call (kernel not yet loaded) is made inside
    a capture: the module load must not break the capture."""
    code = textwrap.dedent("""
        import torch, autoflash.torch as aft
        q = torch.randn(1, 4, 200, 64, device="cuda", dtype=torch.float16)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            out = aft.scaled_dot_product_attention(q, q, q, is_causal=True)
        q.copy_(torch.randn_like(q))
        g.replay()
        torch.cuda.synchronize()
        ref = torch.nn.functional.scaled_dot_product_attention(q.double(), q.double(), q.double(), is_causal=True)
        rel = ((out.double() - ref).norm() / ref.norm()).item()
        print("rel", rel)
        assert rel < 3e-3, rel
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=_env_with_root())
    assert proc.returncode == 0, proc.stdout + proc.stderr
