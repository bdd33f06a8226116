"""What GPU this is: its arch and name (CuPy, imported where used)."""
from __future__ import annotations

import functools

from autoflash.kernels.archs import ARCHS, arch_of_capability


@functools.cache
def device_arch(device_id: int) -> tuple[str, str]:
    """(arch, device name) of a GPU: exact arch if known, else the newest known one of the same major."""
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(device_id)
    cc = props["major"] * 10 + props["minor"]
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    arch = arch_of_capability(cc)
    if arch is None:
        raise RuntimeError(f"GPU {name} (compute capability {cc}) is not supported; known archs: {sorted(ARCHS)}")
    return arch, name


@functools.cache
def sm_count(device_id: int) -> int:
    """A GPU's streaming multiprocessors (a wave of one-block-an-SM kernels)."""
    import cupy

    return int(cupy.cuda.runtime.getDeviceProperties(device_id)["multiProcessorCount"])


# What CUDA says when there is no GPU, and what that means to the user.
NO_GPU_WORDS = {"cudaErrorInsufficientDriver": "no NVIDIA driver is loaded on this machine (CUDA reports that as "
                                               "'driver version is insufficient')",
                "cudaErrorNoDevice": "the NVIDIA driver finds no GPU",
                "cudaErrorDevicesUnavailable": "the GPUs are busy or set to exclusive use by other processes"}


def no_gpu_reason(error: str) -> str:
    """What a CUDA error met while looking for a GPU means, in the user's terms."""
    for code, words in NO_GPU_WORDS.items():
        if code in error:
            return words
    return error
