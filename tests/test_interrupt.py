"""Killing `autoflash tune` (SIGKILL, SIGINT) loses nothing: re-running the same command
resumes from its storage; two tune processes writing one tuned_configs file both land.
Driven through the stand-in GPU and compiler, so it runs without a GPU."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autoflash import store

ROOT = Path(__file__).resolve().parent.parent


def tune_cmd(out: Path, storage: Path, dtype: str = "fp16", trials: int = 30) -> list[str]:
    return [sys.executable, "-m", "autoflash.cli", "tune", "--stand-in", "--arch", "sm_90", "--out", str(out),
            "--log", str(out / f"log-{dtype}.json"), "--storage", str(storage), "--dtype", dtype,
            "--head-dim", "64,128", "--causal", "no", "--seq-len", "1024", "--trials", str(trials),
            "--workers", "1", "--grace", "4"]  # a trial killed before it was claimed is lost after 4 s


def env():
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def trials_in(storage: Path) -> int:
    shown = subprocess.run([sys.executable, "-m", "autoflash.cli", "show", "--storage", str(storage)],
                           capture_output=True, text=True, env=env(), check=True).stdout
    return len(re.findall(r"\b(COMPLETE|PRUNED|FAIL)\b", shown))


def start_and_interrupt(cmd, sig, storage: Path):
    """Start a tuning run, wait until its storage holds trials, then send it `sig`."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env())
    deadline = time.time() + 60
    while time.time() < deadline and (not storage.exists() or storage.stat().st_size < 20_000):
        if proc.poll() is not None:
            pytest.fail("the tuning run ended before it could be interrupted:\n" + proc.stdout.read())
        time.sleep(0.2)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=60)
    return proc.returncode, out


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_interrupted_tune_resumes_with_nothing_lost(tmp_path, sig):
    storage = tmp_path / "study.log"
    rc, out = start_and_interrupt(tune_cmd(tmp_path, storage), sig, storage)
    if sig == signal.SIGINT:
        assert rc == 130 and "interrupted" in out, out
    else:
        assert rc == -signal.SIGKILL
    before = trials_in(storage)
    assert before > 0
    again = subprocess.run(tune_cmd(tmp_path, storage), capture_output=True, text=True, env=env(), timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert trials_in(storage) >= before  # every recorded trial is still there
    entries = store.read(tmp_path / "sm_90.json")
    assert sorted(e["head_dim"] for e in entries) == [64, 128]


def test_two_tune_processes_writing_one_file_both_land(tmp_path):
    procs = [subprocess.Popen(tune_cmd(tmp_path, tmp_path / f"{dtype}.log", dtype, trials=8), env=env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for dtype in ("fp16", "bf16")]
    for p in procs:
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0, out
    entries = store.read(tmp_path / "sm_90.json")
    assert sorted((e["dtype"], e["head_dim"]) for e in entries) == [
        ("bf16", 64), ("bf16", 128), ("fp16", 64), ("fp16", 128)]
