"""autoflash: generated, tuned flash-attention kernels.

Importing the package needs no GPU and no CUDA driver; CuPy and the CUDA pieces
are imported when a kernel is compiled or launched. Importing it registers the
operations (autoflash.ops: the built-in ones and any named in $AUTOFLASH_PLUGINS).
"""
import importlib

from autoflash import ops  # noqa: F401  (registers the operations and their templates)
from autoflash.kernels.config import ConfigError
from autoflash.ops.forward_base import KernelConfig
from autoflash.serve.api import attention
from autoflash.serve.kvcache import attention_with_kvcache
from autoflash.serve.varlen import attention_varlen
from autoflash.version import __version__


def __getattr__(name):
    # autoflash.torch (the PyTorch drop-in) imports torch, so it loads only when asked for.
    if name == "torch":
        return importlib.import_module("autoflash.torch")
    raise AttributeError(f"module 'autoflash' has no attribute {name!r}")


__all__ = ["attention", "attention_varlen", "attention_with_kvcache", "KernelConfig", "ConfigError", "__version__"]
