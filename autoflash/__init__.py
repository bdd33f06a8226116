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


__all__ = ["attention", "KernelConfig", "ConfigError", "__version__"]
