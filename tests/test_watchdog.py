"""The suite's watchdog (tests/conftest.py): a test whose call outlives AUTOFLASH_TEST_WATCHDOG_S ends its
process with the tracebacks on stderr, instead of holding the run (a GPU spin-wait that never finishes)."""
import os
import subprocess
import sys
import time
from pathlib import Path

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
