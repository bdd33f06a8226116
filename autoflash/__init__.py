"""autoflash: generated, tuned flash-attention kernels.

Importing the package needs no GPU and no CUDA driver; CuPy and the CUDA pieces
are imported when a kernel is compiled or launched.
"""
__version__ = "0.1.0"

from autoflash.config import ConfigError, KernelConfig  # noqa: E402


def attention(q, k, v, *, causal=False, scale=None, return_lse=False, config=None):
    """Flash attention forward; see autoflash.api.attention."""
    from autoflash.api import attention as _attention

    return _attention(q, k, v, causal=causal, scale=scale, return_lse=return_lse, config=config)


def __getattr__(name):
    # autoflash.torch (the PyTorch drop-in) imports torch, so it loads only when asked for.
    if name == "torch":
        import importlib

        return importlib.import_module("autoflash.torch")
    raise AttributeError(f"module 'autoflash' has no attribute {name!r}")


__all__ = ["attention", "KernelConfig", "ConfigError", "__version__"]
