"""Zero-copy CuPy views of other libraries' CUDA arrays (JAX, ...) for autoflash.attention(),
and the way back to the caller's kind of array."""
from __future__ import annotations

from autoflash.serve.errors import InputError

SUPPORTED_ARRAYS = ("PyTorch CUDA tensors, CuPy arrays, or CUDA arrays with __dlpack__ (JAX, ...) or "
                    "__cuda_array_interface__")

_DLPACK_CUDA_DEVICES = (2, 13)  # DLDeviceType kDLCUDA, kDLCUDAManaged


def foreign_view(x, name: str):
    """A zero-copy CuPy view of another library's CUDA array, and how to hand a CuPy
    result back as that library's array. DLPack first (it carries stream order: the
    view is safe to use on CuPy's current stream, and the result is exported to the
    caller's stream the same way), else __cuda_array_interface__ (result stays CuPy)."""
    import cupy

    if hasattr(x, "__dlpack__") and hasattr(x, "__dlpack_device__"):
        device_type, _ = x.__dlpack_device__()
        if int(device_type) not in _DLPACK_CUDA_DEVICES:
            raise InputError(f"{name} is a {type(x).__name__} on DLPack device type {int(device_type)}, not a CUDA "
                             f"GPU; move it to the GPU first")
        try:
            view = cupy.from_dlpack(x)
        except Exception as exc:  # e.g. a dtype CuPy cannot represent
            raise InputError(f"{name} ({type(x).__name__}) cannot be viewed through DLPack: {exc}") from None
        return view, _returner(x)
    if hasattr(x, "__cuda_array_interface__"):
        return cupy.asarray(x), None  # zero-copy view of the foreign device array
    raise InputError(f"{name} is a {type(x).__name__}; pass {SUPPORTED_ARRAYS}")


def _returner(x):
    """from_dlpack of the array's own library (array API namespace; JAX's jax.dlpack), or None."""
    get_ns = getattr(x, "__array_namespace__", None)
    if get_ns is not None:
        try:
            ns = get_ns()
        except Exception:  # a library whose namespace is optional or broken: fall through
            ns = None
        if ns is not None and hasattr(ns, "from_dlpack"):
            return ns.from_dlpack
    if type(x).__module__.split(".")[0] in ("jax", "jaxlib"):
        import jax.dlpack

        return jax.dlpack.from_dlpack
    return None
