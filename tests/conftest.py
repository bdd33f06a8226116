"""One GPU marker for the whole suite: gpu tests skip with the reason when no GPU is usable. A watchdog
ends a test process that hangs (a spin-wait kernel that never finishes), so the run names the test, and says just
before whether the GPU still had work queued."""
import ast
import faulthandler
import functools
import importlib
import os
import sys
import threading

import pytest


@functools.cache
def gpu_unavailable_reason() -> str | None:
    try:
        import cupy

        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no driver, no CuPy, no device
        from autoflash.kernels.device import no_gpu_reason

        return f"no usable CUDA GPU: {no_gpu_reason(f'{type(exc).__name__}: {exc}')}"
    return None if n > 0 else "no CUDA GPU found"


def pytest_collection_modifyitems(config, items):
    reason = gpu_unavailable_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# Seconds one test's call may take before its process is ended with every thread's traceback on stderr
# (0: no watchdog). Under xdist the worker is replaced and the test reported as crashed, instead of the
# run waiting on it until an outer timeout cuts everything still queued behind it.
TEST_WATCHDOG_S = float(os.environ.get("AUTOFLASH_TEST_WATCHDOG_S", "600"))


_stderr_fd = None


def pytest_configure(config):
    global _stderr_fd
    _stderr_fd = os.dup(2)  # the terminal's stderr: during a test's call fd 2 goes to pytest's capture file
    # AUTOFLASH_TEST_SWITCHES="autoflash.ops.backward_wgmma.DS_STMATRIX=True ...": module settings for the whole run
    # (every xdist worker runs this too), so the GPU suite can run with a switch under measurement before adoption
    for setting in os.environ.get("AUTOFLASH_TEST_SWITCHES", "").split():
        path, _, value = setting.partition("=")
        module, _, name = path.rpartition(".")
        target = importlib.import_module(module)
        if not hasattr(target, name):
            raise pytest.UsageError(f"AUTOFLASH_TEST_SWITCHES: {module} has no {name}")
        setattr(target, name, ast.literal_eval(value))


def gpu_state(torch) -> str | None:
    """What the GPU is doing, for a test about to be ended: work still queued on the default stream (a kernel that
    does not end) or none (the test waits on the host); None where CUDA was not used."""
    if torch is None or not torch.cuda.is_initialized():
        return None
    try:
        idle = torch.cuda.default_stream().query()
    except Exception as exc:  # a sticky CUDA error, for one
        return f"the default stream could not be queried ({type(exc).__name__}: {exc})"
    return "the default stream has no work left: the test waits on the host" if idle else (
        "the default stream still has work queued: a kernel has not ended")


def _note_gpu_state() -> None:
    state = gpu_state(sys.modules.get("torch"))
    if state:
        os.write(_stderr_fd, f"watchdog: {state}\n".encode())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    note = None
    if TEST_WATCHDOG_S > 0:
        faulthandler.dump_traceback_later(TEST_WATCHDOG_S, exit=True, file=_stderr_fd)
        # shortly before: the GPU's state (sixth-call timeout, benchmarks/NOTES.md fourteenth session)
        note = threading.Timer(max(0.0, TEST_WATCHDOG_S - min(5.0, TEST_WATCHDOG_S / 4)), _note_gpu_state)
        note.daemon = True
        note.start()
    try:
        yield
    finally:
        if TEST_WATCHDOG_S > 0:
            faulthandler.cancel_dump_traceback_later()
            note.cancel()


@pytest.fixture(scope="session", autouse=True)
def _shared_compile_cache(tmp_path_factory):
    """Tests share one compile cache (kernels are built once per run), isolated from the user's."""
    if "AUTOFLASH_CACHE_DIR" not in os.environ:
        os.environ["AUTOFLASH_CACHE_DIR"] = str(tmp_path_factory.mktemp("autoflash-cache"))
    yield


def torch_reference(q, k, v, causal):
    """Attention in float64 with torch (GQA by repeating K/V heads; causal top-left)."""
    import math

    import torch

    group = q.shape[1] // k.shape[1]
    k = k.double().repeat_interleave(group, dim=1)
    v = v.double().repeat_interleave(group, dim=1)
    s = q.double() @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if causal:
        s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool, device=s.device).triu(1), -math.inf)
    return torch.softmax(s, dim=-1) @ v


def fwd_key(dtype: str, head_dim: int, causal: bool) -> dict:
    """The forward operation's problem key."""
    return {"dtype": dtype, "head_dim": head_dim, "causal": causal}


@pytest.fixture
def decode_calls(monkeypatch):
    """The calls attention() (and so the drop-in) handed to the decode kernel (a spy that passes them on)."""
    from autoflash.serve import api as serve_api

    calls = []
    real = serve_api.launch_decode

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(serve_api, "launch_decode", spy)
    return calls


@pytest.fixture
def torch_cuda():
    """PyTorch, for GPU tests of the torch-facing API (skips without torch or a CUDA GPU)."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("PyTorch sees no CUDA GPU")
    return torch


@pytest.fixture
def copies_views(monkeypatch):
    """ops/backward_wgmma.STRIDED off: views are copied to contiguous tensors (the fake-torch host tests check that path;
    views read in place, the default: tests/test_forward_o_layout.py and tests/test_backward_strided_host.py)."""
    from autoflash.ops import backward_wgmma

    monkeypatch.setattr(backward_wgmma, "STRIDED", False)
