"""Tables of a study's trials: counts, one row per trial, and the tune log."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from autoflash.atomic import atomic_write_text
from autoflash.tuning.storage import open_storage


def trial_counts(study) -> dict:
    from optuna.trial import TrialState  # Optuna loads only where studies are used

    counts = {"run": 0, "complete": 0, "pruned": 0, "failed": 0, "duplicates": 0, "lost": 0}
    for t in study.get_trials(deepcopy=False):
        if t.state in (TrialState.WAITING, TrialState.RUNNING):
            continue
        if "duplicate_of" in t.user_attrs or "lost" in t.user_attrs or "surplus" in t.user_attrs:
            counts["lost" if "lost" in t.user_attrs else "duplicates"] += 1  # surplus: a kind of duplicate
            continue
        counts["run"] += 1
        counts[{TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed"}[t.state]] += 1
    return counts


def trial_rows(study) -> list[dict]:
    """Every trial of a study: its config and times, or why it was pruned or failed."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        rows.append({"number": t.number, "state": t.state.name, "config": a.get("config", ""),
                     "ms": a.get("ms", {}), "value": t.value, "rel_error": a.get("rel_error"),
                     "registers": a.get("registers"), "smem": a.get("smem"), "reason": a.get("reason", ""),
                     "duplicate_of": a.get("duplicate_of")})
    return rows


def stored_listing(storage_url: str) -> dict[str, list[dict]]:
    """Trial rows of every autoflash study in a storage."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(storage_url)
    out = {}
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        if summary.study_name.startswith("autoflash|"):
            study = optuna.load_study(study_name=summary.study_name, storage=storage)
            out[summary.study_name] = trial_rows(study)
    return out


def write_log(path: Path, results: list, stats, info) -> None:
    """Every trial of every study of a run, with where the time went, as JSON."""
    data = {"device": dataclasses.asdict(info), "stats": dataclasses.asdict(stats) | {"gpu_idle": stats.gpu_idle},
            "studies": {r.study_name: {"counts": r.counts, "trials": r.trials} for r in results}}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(path), json.dumps(data, indent=1, default=str) + "\n")


