"""The host checks of varlen index arrays (cu_seqlens_q/k, seqused_k), shared by the varlen forward
(serve/varlen.py) and its backward (serve/varlen_grad.py): a device int32 array of q's kind and device
is copied to the host and checked there before anything launches."""
from __future__ import annotations

import numpy as np

from autoflash.serve.errors import InputError


def host_index(x, name: str, qo, batch: int | None, capture_ok: bool = False) -> np.ndarray | None:
    """A device int32 index array of q's kind and device, 1-D ((batch,) if batch is given, else any
    length >= 2), copied to the host. During a CUDA graph capture: refused, or with capture_ok
    (the kernel guards the values itself) None, nothing copied."""
    mod = type(x).__module__
    if qo.kind == "torch":
        if not mod.startswith("torch"):
            raise InputError(f"{name} must be a torch int32 CUDA tensor like q, got {type(x).__name__}")
        if not x.is_cuda or x.get_device() != qo.device:
            raise InputError(f"{name} is on {x.device}; it must be on q's device (cuda:{qo.device})")
        import torch

        if x.dtype != torch.int32:
            raise InputError(f"{name} must be int32, got {x.dtype} (pass {name}.to(torch.int32))")
        capturing = torch.cuda.is_current_stream_capturing()
        if capturing and not capture_ok:
            raise InputError(f"{name} is checked on the host before the launch, which a CUDA graph capture "
                             "cannot do; call this outside the capture (or capture prepare_varlen's launch)")
        host_of = (lambda a: None) if capturing else (lambda a: a.cpu().numpy())  # noqa: E731
    else:
        if not mod.startswith("cupy"):
            raise InputError(f"{name} must be a CuPy int32 array like q, got {type(x).__name__}")
        if x.device.id != qo.device:
            raise InputError(f"{name} is on GPU {x.device.id}; it must be on q's device ({qo.device})")
        if str(x.dtype) != "int32":
            raise InputError(f"{name} must be int32, got {x.dtype}")
        host_of = lambda a: a.get()  # noqa: E731
    if len(x.shape) != 1 or (batch is not None and x.shape[0] != batch) or (batch is None and x.shape[0] < 2):
        want = f"({batch},)" if batch is not None else "(batch + 1,) with batch >= 1"
        raise InputError(f"{name} must have shape {want}, got {tuple(x.shape)}")
    if not (x.is_contiguous() if qo.kind == "torch" else x.flags.c_contiguous):
        raise InputError(f"{name} must be contiguous")
    host = host_of(x)
    return None if host is None else host.astype(np.int64)


def check_offsets(cu: np.ndarray, name: str, total: int, max_len, max_name: str) -> np.ndarray:
    """The spans of a cu_seqlens array checked: starts at 0, never decreases, ends at total,
    every span <= max_len."""
    if isinstance(max_len, bool) or not isinstance(max_len, (int, np.integer)) or max_len < 1:
        raise InputError(f"{max_name} must be a positive int, got {max_len!r}")
    if cu[0] != 0:
        raise InputError(f"{name}[0] must be 0, got {int(cu[0])}")
    spans = np.diff(cu)
    if (spans < 0).any():
        b = int(np.nonzero(spans < 0)[0][0])
        raise InputError(f"{name} must not decrease: {name}[{b}] = {int(cu[b])} > {name}[{b + 1}] = {int(cu[b + 1])}")
    if cu[-1] != total:
        raise InputError(f"{name}[-1] = {int(cu[-1])} must equal the packed token count {total}")
    if (spans > max_len).any():
        b = int(np.nonzero(spans > max_len)[0][0])
        raise InputError(f"sequence {b} has {int(spans[b])} tokens by {name}, more than {max_name} = {max_len}")
    return spans
