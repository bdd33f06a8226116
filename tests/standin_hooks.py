"""Test hooks of the stand-in runner (runner.standin: spec["hook"] = "<this file>:on_trial").

- spec["record"] (or $AUTOFLASH_TEST_RECORD): a file that gets a line per trial,
  "pid device config trial"; one short append per line is atomic between processes.
- spec["hang"] (or $AUTOFLASH_TEST_HANG) = "DEVICE:MARKER": the first trial on that
  device that creates MARKER (it holds "pid config") hangs, as a worker whose machine is lost.
- spec["first_sleep"]: seconds the first trial of the process sleeps (a fresh machine's slow first kernel).
- spec["crash"] = {config name: exit code}: the runner process dies in that config's trial, as
  one whose kernel took the driver down would.
- $AUTOFLASH_TEST_MEET = "N:FOLDER": the first trial of each process waits (at most 60 s) until N processes
  have reached theirs (a file per pid in FOLDER), so every worker of a campaign takes a share however late
  a loaded machine starts it.
"""
import os
import time
from pathlib import Path

HOOK = f"{Path(__file__).resolve()}:on_trial"


_slept = []
_met = []


def _meet(spec: str) -> None:
    count, _, folder = spec.partition(":")
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / str(os.getpid())).touch()
    deadline = time.time() + 60
    while len(list(Path(folder).iterdir())) < int(count) and time.time() < deadline:
        time.sleep(0.05)


def on_trial(spec: dict, config_name: str, trial_number) -> None:
    if os.environ.get("AUTOFLASH_TEST_MEET") and not _met:
        _met.append(True)
        _meet(os.environ["AUTOFLASH_TEST_MEET"])
    if spec.get("first_sleep") and not _slept:
        _slept.append(True)
        time.sleep(spec["first_sleep"])
    if config_name in spec.get("crash", {}):
        os._exit(int(spec["crash"][config_name]))
    device = spec.get("device", 0)
    record = spec.get("record") or os.environ.get("AUTOFLASH_TEST_RECORD")
    if record:
        with open(record, "a") as f:
            f.write(f"{os.getpid()} {device} {config_name} {trial_number}\n")
    hang_device, _, marker = (spec.get("hang") or os.environ.get("AUTOFLASH_TEST_HANG", "")).partition(":")
    if marker and hang_device == str(device):
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, f"{os.getpid()} {config_name}".encode())
        os.close(fd)
        while True:
            time.sleep(3600)
