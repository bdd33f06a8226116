"""The end of a study: the best few configs of each bucket (and the heuristic
default beside them) are re-timed in interleaved rounds, and the winner becomes
the bucket's tuned entry. Pure functions of the study's trials; the tuner sends
the messages."""
from __future__ import annotations

import datetime
import logging

from autoflash.runner import timing
from autoflash.runner.protocol import KernelBinary, RetimeRequest, RetimeResult
from autoflash.tuning.listing import trial_counts
from autoflash.tuning.space import config_from_params
from autoflash.tuning.state import StudyState
from autoflash.version import __version__

log = logging.getLogger("autoflash")


def choose_finalists(st: StudyState, n: int) -> dict[int, list]:
    """bucket -> the n fastest distinct complete trials at that bucket, plus the
    heuristic default's trial (re-timed beside them, so "vs default" compares like with like)."""
    from optuna.trial import TrialState

    complete = [t for t in st.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if "duplicate_of" not in t.user_attrs and t.user_attrs.get("ms")]
    out = {}
    for b in st.buckets:
        ranked = sorted(complete, key=lambda t: t.user_attrs["ms"][str(b)])
        chosen, names = [], set()
        for t in ranked:
            if t.user_attrs["config"] not in names:
                names.add(t.user_attrs["config"])
                chosen.append(t)
            if len(chosen) >= max(1, n):
                break
        if not chosen:
            continue
        default = [t for t in complete if t.user_attrs["config"] == st.default_name]
        if default and default[0].user_attrs["config"] not in names:
            chosen.append(default[0])
        out[b] = chosen
    return out


def retime_request(st: StudyState, bucket: int, ok: list, rounds: int) -> RetimeRequest:
    """Re-time the compiled finalists [(trial, compile result)] at a bucket."""
    kernels = [KernelBinary(config_from_params(st.key, t.params).to_dict(), c["cubin"], c["report"],
                            c.get("values") or {}) for t, c in ok]
    return RetimeRequest(0, kernels, st.problem(bucket), rounds=rounds, launches_per_round=5)


def winner(st: StudyState, bucket: int, ok: list, reply: RetimeResult) -> tuple:
    """(winning trial, (ms, spread) re-timed or None, [(name, ms)] ranked, default's ms or None)."""
    if reply.status != "ok" or len(reply.rounds) != len(ok):
        log.warning("re-timing the finalists of %s N=%d failed (%s); using their trial times", st.key.describe(),
                    bucket, reply.reason)
        best = min((t for t, _ in ok), key=lambda t: t.user_attrs["ms"][str(bucket)])
        finalists = [(t.user_attrs["config"], t.user_attrs["ms"][str(bucket)]) for t, _ in ok]
        return best, None, finalists, dict(finalists).get(st.default_name)
    medians = [timing.median(r) for r in reply.rounds]
    order = sorted(range(len(ok)), key=lambda i: medians[i])
    win = order[0]
    finalists = [(ok[i][0].user_attrs["config"], medians[i]) for i in order]
    return (ok[win][0], (medians[win], timing.spread(reply.rounds[win])), finalists,
            dict(finalists).get(st.default_name))


def build_entry(st: StudyState, bucket: int, trial, retimed, finalists: list, default_ms, info) -> dict:
    """The tuned entry of a bucket (store.py's format) from its winning trial."""
    op = st.operation
    cfg = config_from_params(st.key, trial.params)
    if retimed is not None:
        ms, spread = retimed
    else:
        ms = trial.user_attrs["ms"][str(bucket)]
        t = trial.user_attrs.get("timings", {}).get(str(bucket), {})
        spread = (t["max_ms"] - t["min_ms"]) / t["min_ms"] if t.get("min_ms") else 0.0
    problem = st.problem(bucket)
    counts = trial_counts(st.study)
    return {
        "op": op.name, "device": st.key.device, "template": st.key.template, **st.key.params,
        "seq_bucket": bucket, "config": cfg.to_dict(), "problem": op.entry_problem(problem),
        "ms": round(ms, 5), op.metric: round(op.rate(problem, ms), 2),
        "max_rel_error": float(trial.user_attrs.get("rel_error") or 0.0),
        "trials": {k: counts[k] for k in ("run", "complete", "pruned", "failed")},
        "spread": round(spread, 4),
        "finalists": [{"name": n, "ms": round(v, 5)} for n, v in finalists],
        "default_ms": round(default_ms, 5) if default_ms else None,
        "nvrtc": info.nvrtc or "0", "driver": info.driver or "0", "autoflash": __version__,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
