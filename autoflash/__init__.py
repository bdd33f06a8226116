"""autoflash: generated, tuned flash-attention kernels.

Importing the package needs no GPU and no CUDA driver; CuPy and the CUDA pieces
are imported when a kernel is compiled or launched. Importing it registers the
built-in operations (autoflash.ops).
"""
from autoflash import ops  # noqa: F401  (registers the operations and their templates)
from autoflash.kernels.config import ConfigError
from autoflash.ops.forward_base import KernelConfig
from autoflash.version import __version__


def attention(q, k, v, *, causal=False, scale=None, return_lse=False, config=None):
    """Flash attention forward; see autoflash.serve.api.attention."""
    from autoflash.serve.api import attention as _attention  # CuPy and the serving path load on first call

    return _attention(q, k, v, causal=causal, scale=scale, return_lse=return_lse, config=config)


def __getattr__(name):
    # autoflash.torch (the PyTorch drop-in) imports torch, so it loads only when asked for.
    if name == "torch":
        import importlib

        return importlib.import_module("autoflash.torch")
    raise AttributeError(f"module 'autoflash' has no attribute {name!r}")


__all__ = ["attention", "KernelConfig", "ConfigError", "__version__"]
