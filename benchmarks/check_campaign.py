"""Audit a shared tuning storage: per study, how many trials each worker ran, whether any
config ran twice (outside duplicates and lost trials), and whether anything is left running.

    python benchmarks/check_campaign.py STORAGE        (exit 1 if a check fails)
"""
import collections
import sys

import optuna
from optuna.trial import TrialState

from autoflash.tuning.storage import open_storage


def audit(url: str) -> bool:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(url)
    ok = True
    rows = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        if not summary.study_name.startswith("autoflash|"):
            continue  # the campaign record itself
        trials = optuna.load_study(study_name=summary.study_name, storage=storage).get_trials(deepcopy=False)
        by_worker = collections.Counter()
        configs = collections.Counter()
        lost = unfinished = extra = 0
        for t in trials:
            a = t.user_attrs
            if t.state in (TrialState.RUNNING, TrialState.WAITING):
                unfinished += 1
            elif "lost" in a:
                lost += 1
            elif "duplicate_of" in a or "surplus" in a:
                extra += 1
            elif a.get("counted"):  # sent to a compiler and run: must be one trial per config
                by_worker[a.get("worker", "?")] += 1
                configs[a["config"]] += 1
        twice = [c for c, n in configs.items() if n > 1]
        ok &= not twice and not unfinished
        rows.append((summary.study_name.split("|", 3)[-1], len(trials), dict(by_worker), len(twice), lost, extra,
                     unfinished))
    print(f"{'study':60}  trials  run per worker                       twice  lost  dup/surplus  unfinished")
    for name, n, workers, twice, lost, extra, unfinished in rows:
        per = ", ".join(f"{w.split(':')[-1]}:{c}" for w, c in sorted(workers.items()))
        print(f"{name[:60]:60}  {n:6}  {per:35}  {twice:5}  {lost:4}  {extra:11}  {unfinished:10}")
    print("every config ran once, nothing left running" if ok else "CHECK FAILED")
    return ok


if __name__ == "__main__":
    sys.exit(0 if audit(sys.argv[1]) else 1)
