"""CuPy and the PyTorch pieces the per-call paths (serve/api.py, serve/call_plans.py) use,
imported on first use (import autoflash needs no GPU stack) and looked up once."""
from __future__ import annotations

import functools


@functools.cache
def cupy():
    import cupy

    return cupy


@functools.cache
def torch():
    import torch

    return torch


@functools.cache
def torch_dtypes() -> dict:
    t = torch()
    return {"fp32": t.float32, "fp16": t.float16, "bf16": t.bfloat16}


@functools.cache
def raw_stream():
    """device index -> that device's current PyTorch stream as a raw pointer (0: the legacy
    default stream). torch._C._cuda_getCurrentRawStream is what torch.compile's generated code
    calls; torch.cuda.current_stream builds a Stream object per call (several us), so it is only
    the fallback."""
    t = torch()
    fn = getattr(t._C, "_cuda_getCurrentRawStream", None)
    return fn if fn is not None else (lambda index: t.cuda.current_stream(index).cuda_stream)
