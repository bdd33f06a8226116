"""autoflash.attention() with any CUDA array: CuPy, PyTorch, JAX (DLPack), and other
__dlpack__ / __cuda_array_interface__ producers. In and out without copies; the
result is the caller's kind. Compared with autoflash.ops.reference (float64)."""
import os

import pytest

import autoflash
from autoflash.serve import api
from autoflash.ops.reference import TOLERANCE, reference_attention

pytestmark = pytest.mark.gpu

# JAX takes 75% of the GPU at start-up by default; the other tests in this process need it too.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

SHAPE_Q, SHAPE_KV = (2, 4, 150, 64), (2, 2, 270, 64)


def _rel(out, ref) -> float:
    import cupy

    out = cupy.asarray(out).astype(cupy.float64)
    return float(cupy.linalg.norm(out - ref) / cupy.linalg.norm(ref))


def _cupy_inputs(dtype, seed=0):
    import cupy

    rng = cupy.random.default_rng(seed)
    cdtype = api._cupy_dtype(dtype)
    return [rng.standard_normal(s, dtype=cupy.float32).astype(cdtype) for s in (SHAPE_Q, SHAPE_KV, SHAPE_KV)]


def _ref(q, k, v, causal=False):
    import cupy

    return reference_attention(*(cupy.asarray(x).astype(cupy.float64) for x in (q, k, v)), causal=causal)[0]


def _jax():
    jax = pytest.importorskip("jax", reason="JAX is not installed")
    try:
        gpus = jax.devices("gpu")
    except RuntimeError as exc:
        pytest.skip(f"JAX has no GPU backend here ({exc})")
    if not gpus:
        pytest.skip("JAX sees no GPU")
    return jax


@pytest.fixture
def record_outputs(monkeypatch):
    """The CuPy arrays attention() allocates for its results (to check no copy follows)."""
    made = []
    real = api._empty_like

    def spy(ref, shape, dtype):
        x = real(ref, shape, dtype)
        made.append(x)
        return x

    monkeypatch.setattr(api, "_empty_like", spy)
    return made


# ------------------------------------------------------------------ CuPy
@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16"])
def test_cupy_in_cupy_out(dtype):
    import cupy

    if dtype == "bf16":
        pytest.importorskip("ml_dtypes", reason="CuPy's bfloat16 needs ml_dtypes")
    q, k, v = _cupy_inputs(dtype, 1)
    out = autoflash.attention(q, k, v, causal=True)
    assert isinstance(out, cupy.ndarray) and out.dtype == q.dtype and out.shape == q.shape
    assert _rel(out, _ref(q, k, v, causal=True)) < TOLERANCE[dtype]


# --------------------------------------------------------------- PyTorch
def test_torch_in_torch_out_shares_memory():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    import cupy

    q, k, v = (torch.as_tensor(x, device="cuda") for x in _cupy_inputs("fp16", 2))
    assert api.as_operand(q, "q").ptr == q.data_ptr()  # zero-copy in
    out, lse = autoflash.attention(q, k, v, return_lse=True)
    assert isinstance(out, torch.Tensor) and isinstance(lse, torch.Tensor) and lse.dtype == torch.float32
    assert _rel(cupy.asarray(out), _ref(q, k, v)) < TOLERANCE["fp16"]


# ------------------------------------------------------------------- JAX
@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("causal", [False, True])
def test_jax_in_jax_out_without_copies(dtype, causal, record_outputs):
    jax = _jax()
    import jax.numpy as jnp

    jdtype = {"fp32": jnp.float32, "fp16": jnp.float16, "bf16": jnp.bfloat16}[dtype]
    keys = jax.random.split(jax.random.PRNGKey(3), 3)
    q, k, v = (jax.random.normal(key, s, dtype=jnp.float32).astype(jdtype)
               for key, s in zip(keys, (SHAPE_Q, SHAPE_KV, SHAPE_KV)))
    op = api.as_operand(q, "q")
    assert op.kind == "jax" and op.ptr == q.unsafe_buffer_pointer()  # zero-copy in
    out, lse = autoflash.attention(q, k, v, causal=causal, return_lse=True)
    assert isinstance(out, jax.Array) and out.dtype == q.dtype and out.shape == q.shape
    assert isinstance(lse, jax.Array) and lse.shape == SHAPE_Q[:3]
    assert out.unsafe_buffer_pointer() == record_outputs[0].data.ptr  # zero-copy out
    out_f32 = jnp.asarray(out, dtype=jnp.float32) * 1  # JAX reads the result on its own stream
    import cupy

    inputs = (cupy.from_dlpack(jnp.asarray(x, dtype=jnp.float32)) for x in (q, k, v))
    assert _rel(cupy.from_dlpack(out_f32), _ref(*inputs, causal=causal)) < TOLERANCE[dtype]


def test_jax_cpu_array_is_refused():
    jax = _jax()
    import jax.numpy as jnp

    x = jax.device_put(jnp.zeros((1, 2, 8, 64), jnp.float16), jax.devices("cpu")[0])
    with pytest.raises(ValueError, match="not a CUDA GPU"):
        autoflash.attention(x, x, x)


def test_mixed_kinds_are_refused():
    _jax()
    import jax.numpy as jnp

    q = jnp.zeros((1, 2, 8, 64), jnp.float16)
    with pytest.raises(ValueError, match="same kind"):
        autoflash.attention(q, *_cupy_inputs("fp16")[1:])


# ------------------------------------------- other producers, without JAX
class _Namespace:
    """A stand-in array library: from_dlpack wraps a CuPy view in its own type."""

    @staticmethod
    def from_dlpack(x):
        import cupy

        return DLPackArray(cupy.from_dlpack(x))


class DLPackArray:
    """A foreign array type that speaks DLPack and the array API namespace protocol."""

    def __init__(self, data):
        self.data = data

    def __dlpack__(self, **kw):
        return self.data.__dlpack__(**kw)

    def __dlpack_device__(self):
        return self.data.__dlpack_device__()

    def __array_namespace__(self, api_version=None):
        return _Namespace


class CAIArray:
    """A foreign array type with only __cuda_array_interface__ (as Numba's)."""

    def __init__(self, data):
        self.data = data

    @property
    def __cuda_array_interface__(self):
        return self.data.__cuda_array_interface__


def test_dlpack_producer_gets_its_own_kind_back(record_outputs):
    q, k, v = _cupy_inputs("fp16", 4)
    out = autoflash.attention(DLPackArray(q), DLPackArray(k), DLPackArray(v), causal=True)
    assert isinstance(out, DLPackArray)
    assert out.data.data.ptr == record_outputs[0].data.ptr  # no copy on the way back
    assert _rel(out.data, _ref(q, k, v, causal=True)) < TOLERANCE["fp16"]


def test_cuda_array_interface_producer_gets_cupy():
    import cupy

    q, k, v = _cupy_inputs("fp32", 5)
    assert api.as_operand(CAIArray(q), "q").ptr == q.data.ptr  # zero-copy in
    out = autoflash.attention(CAIArray(q), CAIArray(k), CAIArray(v))
    assert isinstance(out, cupy.ndarray)
    assert _rel(out, _ref(q, k, v)) < TOLERANCE["fp32"]


def test_object_without_any_protocol_is_refused():
    with pytest.raises(ValueError, match="__dlpack__"):
        autoflash.attention([1.0], [1.0], [1.0])
