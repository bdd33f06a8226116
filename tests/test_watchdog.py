"""The suite's watchdog (tests/conftest.py): a test whose call outlives AUTOFLASH_TEST_WATCHDOG_S ends its
process with the tracebacks on stderr, instead of holding the run (a GPU spin-wait that never finishes)."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).parent


def run_pytest(tmp_path, body: str, watchdog: str):
    (tmp_path / "test_probe.py").write_text(body)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
           "AUTOFLASH_TEST_WATCHDOG_S": watchdog}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-p", "no:cacheprovider",
                           str(tmp_path / "test_probe.py")], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    return proc, time.monotonic() - start


def test_a_hanging_test_is_ended_with_its_traceback(tmp_path):
    proc, took = run_pytest(tmp_path, "import time\n\ndef test_spins():\n    time.sleep(60)\n", "1")
    assert proc.returncode != 0 and took < 50, (proc.returncode, took)
    assert "Timeout" in proc.stderr and "test_spins" in proc.stderr, proc.stderr[-2000:]


def test_the_limit_is_per_test(tmp_path):
    """Three calls of 0.8 s under a 1.5 s watchdog: 2.4 s in all, so it passes only if re-armed per test."""
    body = "import time\n\n" + "".join(f"def test_{i}():\n    time.sleep(0.8)\n\n" for i in range(3))
    proc, _ = run_pytest(tmp_path, body, "1.5")
    assert proc.returncode == 0 and "3 passed" in proc.stdout, proc.stdout + proc.stderr


def test_the_gpu_state_is_said_before_the_end():
    """gpu_state: nothing without CUDA in use; queued work, no work, or why the stream could not be asked."""
    from types import SimpleNamespace

    from conftest import gpu_state

    def fake_torch(initialized=True, idle=None, error=None):
        def query():
            if error:
                raise error
            return idle
        cuda = SimpleNamespace(is_initialized=lambda: initialized, default_stream=lambda: SimpleNamespace(query=query))
        return SimpleNamespace(cuda=cuda)

    assert gpu_state(None) is None and gpu_state(fake_torch(initialized=False)) is None
    assert "a kernel has not ended" in gpu_state(fake_torch(idle=False))
    assert "waits on the host" in gpu_state(fake_torch(idle=True))
    assert "RuntimeError: illegal address" in gpu_state(fake_torch(error=RuntimeError("illegal address")))


def test_a_hanging_test_gets_the_note_without_cuda_in_use(tmp_path):
    """The note's timer fires before the end and, with no CUDA in the process, writes nothing; the end is as before."""
    proc, took = run_pytest(tmp_path, "import time\n\ndef test_spins():\n    time.sleep(60)\n", "2")
    assert proc.returncode != 0 and took < 50 and "Timeout" in proc.stderr, proc.stderr[-2000:]
    assert "watchdog:" not in proc.stderr


@pytest.mark.gpu
def test_a_kernel_that_does_not_end_is_named_before_the_end(tmp_path):
    """A spin kernel of ~50 s (torch.cuda._sleep) outlives an 8 s watchdog: the note says the stream has work queued.
    (CUDA is set up at import, before the test's call: set up inside it, it took past the note's 6 s.)"""
    pytest.importorskip("torch")
    body = ("import time\nimport torch\n\ntorch.cuda.init()\n\n\ndef test_spins_on_the_gpu():\n"
            "    torch.cuda._sleep(100_000_000_000)\n    time.sleep(60)\n")
    proc, took = run_pytest(tmp_path, body, "8")
    assert proc.returncode != 0 and took < 60, (proc.returncode, took)
    assert "watchdog: the default stream still has work queued" in proc.stderr, proc.stderr[-2000:]
