"""A tuning campaign shared by several workers through one Optuna storage.

`autoflash tune --devices 0,1,...` publishes the campaign (its problem keys and
options) in the storage, starts an `autoflash worker` process for every device but
the first, and tunes on the first itself. A worker, on this machine or another that
reaches the storage, reads the campaign back and joins its studies. Optuna does the
coordination: every trial is handed to exactly one worker (ask() takes a queued trial
atomically), and the Tuner re-reads its studies, so the trial budget and the
duplicate check are global and a dead worker's trial is marked lost and queued again.
When the search is over, the `tune` process re-times the finalists on its own GPU and
writes tuned_configs: one writer, one GPU for the comparisons that pick the winners.

A campaign is an Optuna study with no trials, named "autoflash-campaign|...", whose
user attributes hold the keys and options: no other file to share between machines.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from autoflash.tuning.keys import SHARED_OPTIONS, StudyKey, TuneError, TuneOptions
from autoflash.tuning.storage import open_storage

log = logging.getLogger("autoflash")

PREFIX = "autoflash-campaign|"


class CampaignError(TuneError):
    """No campaign to join, or not one for this GPU."""


def _options_dict(opts: TuneOptions) -> dict:
    out = {k: getattr(opts, k) for k in SHARED_OPTIONS}
    out["buckets"] = list(out["buckets"]) if out["buckets"] else None
    out["knobs"] = {k: list(v) for k, v in (out["knobs"] or {}).items()} or None
    return out


def campaign_name(keys: list[StudyKey], opts: TuneOptions) -> str:
    """Deterministic: the same `tune` command on the same storage joins the same campaign."""
    text = json.dumps([[k.to_dict() for k in keys], _options_dict(opts)], sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return f"{PREFIX}{keys[0].arch}|{keys[0].device}|{digest}"


def publish(storage_url: str, keys: list[StudyKey], opts: TuneOptions) -> str:
    """Write (or refresh) the campaign in the storage; returns its name."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = campaign_name(keys, opts)
    study = optuna.create_study(study_name=name, storage=open_storage(storage_url), load_if_exists=True)
    study.set_user_attr("keys", [k.to_dict() for k in keys])
    study.set_user_attr("options", _options_dict(opts))
    study.set_user_attr("published", time.time())  # the newest campaign is the default to join
    return name


def load(storage_url: str, arch: str, device_name: str, name: str | None = None) -> tuple[str, list, TuneOptions]:
    """The campaign a worker with this GPU joins: `name`, or the newest one published
    for this arch and GPU model. Returns (name, keys, options with role "search")."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(storage_url)
    found = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        attrs = summary.user_attrs
        if summary.study_name.startswith(PREFIX) and "keys" in attrs and (name is None or summary.study_name == name):
            found.append((attrs.get("published", 0.0), summary.study_name, attrs))
    if not found:
        what = f"campaign {name!r}" if name else "autoflash campaign"
        raise CampaignError(f"no {what} in storage {storage_url}: start one with "
                            f"`autoflash tune --storage {storage_url} ...` first")
    mine = [f for f in found if all(k["arch"] == arch and k["device"] == device_name for k in f[2]["keys"])]
    if not mine:
        other = found[-1][2]["keys"][0]
        raise CampaignError(f"the campaign{'s' if len(found) > 1 else ''} in {storage_url} tune "
                            f"{other['device']} ({other['arch']}); this GPU is {device_name} ({arch}): "
                            "timings must come from the target's own model")
    _, chosen, attrs = max(mine, key=lambda f: f[0])
    keys = [StudyKey.from_dict(k) for k in attrs["keys"]]
    o = dict(attrs["options"])
    o["buckets"] = tuple(o["buckets"]) if o.get("buckets") else None
    o["knobs"] = {k: tuple(v) for k, v in o["knobs"].items()} if o.get("knobs") else None
    opts = TuneOptions(**o, storage=storage_url, role="search")
    return chosen, keys, opts


def worker_command(storage_url: str, device: int, name: str, workers: int | None,
                   standin_arch: str | None = None, verbose: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "autoflash.cli"] + (["-v"] if verbose else []) + [
        "worker", "--storage", storage_url, "--device", str(device), "--campaign", name]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    if standin_arch is not None:
        cmd += ["--stand-in", "--arch", standin_arch]
    return cmd


class LocalWorkers:
    """`autoflash worker` processes for the extra devices of a `tune --devices` run.
    Each writes its output to its own file beside the tune log."""

    def __init__(self, commands: list[tuple[int, list[str]]], log_dir: Path):
        log_dir.mkdir(parents=True, exist_ok=True)
        self.procs = {}
        for i, (device, cmd) in enumerate(commands):
            path = log_dir / f"worker-{i + 1}-device{device}.txt"
            with open(path, "w") as out:  # the child keeps its own descriptor
                proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy())
            self.procs[i + 1] = (device, proc, path)

    def wait(self, timeout: float = 600.0) -> list[str]:
        """Wait for every worker; one line per worker that did not end cleanly."""
        problems = []
        deadline = time.monotonic() + timeout
        for slot, (device, proc, path) in self.procs.items():
            try:
                rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
            if rc != 0:
                problems.append(f"worker {slot} (device {device}) exited with status {rc}; its output: {path}")
        return problems

    def stop(self) -> None:
        for _, proc, _ in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for _, proc, _ in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
