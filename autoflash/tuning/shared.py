"""A study shared with other workers through its storage: re-reading it (budget used,
configs tried, best times), finding trials a dead worker left running and queueing
them again, waiting for a new study to be seeded, and this worker's heartbeat on its own
running trials."""
from __future__ import annotations

import logging
import os
import time

from autoflash.tuning.keys import TuneOptions
from autoflash.tuning.state import StudyState
from autoflash.tuning.storage import HOST, pid_alive

log = logging.getLogger("autoflash")

SYNC_S = 1.0  # how often a shared study is re-read from its storage
SEEDED = "seeded"  # study attribute: its creator has queued every config it meant to


def wait_until_seeded(study, grace_s: float) -> None:
    """A worker that joins a study another has just created waits for the queue to be
    filled: read half-filled, an exhaustive study looks finished and the joiner would
    finalize with no trials."""
    deadline = time.monotonic() + grace_s
    while not study.user_attrs.get(SEEDED):
        if time.monotonic() > deadline:  # its creator died while seeding, or an older autoflash made it
            log.warning("study %s: not marked seeded after %.0f s; going on with what is queued",
                        study.study_name, grace_s)
            return
        time.sleep(0.05)


class SharedStudies:
    """What one tuner knows about the other workers of its studies."""

    def __init__(self, options: TuneOptions):
        self.opt = options
        self._unclaimed = {}  # storage trial id -> when a RUNNING trial with no worker was first seen
        self._last_beat = 0.0

    @property
    def shared(self) -> bool:
        """A stored study: other workers may read and write it too."""
        return self.opt.storage is not None

    def sync(self, st: StudyState, force: bool = True) -> None:
        """Re-read a study from its storage, where other workers write too: the budget
        used (trials sent to a compiler, by anyone), the configs tried and their outcome,
        the best time per bucket. A trial left running by a dead worker is marked lost
        and queued again, so a lost worker costs only the trial it was running."""
        from optuna.trial import TrialState

        now = time.monotonic()
        if not force and now - st.last_sync < SYNC_S:
            return
        st.last_sync = now
        counted = others = waiting = 0
        st.seen, st.outcome = {}, {}  # rebuilt: a config whose trial was lost is free again
        for t in st.study.get_trials(deepcopy=False):
            a, name = t.user_attrs, t.user_attrs.get("config")
            if t.state == TrialState.WAITING:
                waiting += 1
                continue
            if t.state == TrialState.RUNNING and t.number not in st.running:
                why = self.lost_reason(t)
                if why is not None:
                    waiting += self.mark_lost(st, t, why)  # its config is queued again
                    continue
                others += 1
            if "lost" in a:
                continue
            counted += bool(a.get("counted"))
            if not name or "duplicate_of" in a:
                continue
            if t.state == TrialState.RUNNING:
                if a.get("counted"):  # being run by someone: a second copy would be a duplicate
                    st.seen.setdefault(name, t.number)
                continue
            st.seen.setdefault(name, t.number)
            st.outcome[name] = (t.state, t.value, dict(a))
            if t.state == TrialState.COMPLETE:
                update_best(st, a.get("ms", {}))
        st.counted, st.others_running, st.waiting = counted, others, waiting

    def lost_reason(self, t) -> str | None:
        """Why a trial another worker is running will never finish, or None."""
        worker = t.user_attrs.get("worker", "")
        host, _, pid = worker.rpartition(":")
        if host == HOST and pid.isdigit():
            if int(pid) == os.getpid():  # ours, but not this tuner's: an earlier run in this process
                return "left running by an earlier run in this process"
            if not pid_alive(int(pid)):
                return f"worker {worker} is gone"
        beat = t.user_attrs.get("heartbeat")  # set when asked, then every grace_s / 12
        if beat is not None and time.time() - beat > self.opt.grace_s:
            return f"no heartbeat from worker {worker or '?'} for {time.time() - beat:.0f} s"
        if beat is None:  # its worker died between ask() and writing who it is: time it on our own clock
            since = self._unclaimed.setdefault(t._trial_id, time.monotonic())
            if time.monotonic() - since > self.opt.grace_s:
                return f"no worker claimed it for {time.monotonic() - since:.0f} s"
        return None

    @staticmethod
    def mark_lost(st: StudyState, t, why: str) -> bool:
        """Fail a dead worker's trial and queue its config again. Of several workers that
        see it at once, one wins the state change (storages make it atomic) and re-queues."""
        from optuna.trial import TrialState

        storage = st.study._storage  # Optuna's public tell() takes only this process's trials
        try:
            storage.set_trial_user_attr(t._trial_id, "lost", why)
            storage.set_trial_user_attr(t._trial_id, "reason", f"lost: {why}")
            if not storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                return False
        except Exception as exc:  # finished meanwhile, by its worker or another detector
            log.debug("trial %d of %s: not marked lost (%s)", t.number, st.study.study_name, exc)
            return False
        name = t.user_attrs.get("config")
        requeued = bool(name) and "template" in t.params
        if requeued:
            st.study.enqueue_trial(t.params, user_attrs={"config": name, "retry_of": t.number})
        log.warning("trial %d of %s (%s) lost: %s%s", t.number, st.study.study_name, name or "no config yet", why,
                    "; queued again" if requeued else "")
        return requeued

    def heartbeat(self, studies: list[StudyState]) -> None:
        """Tell the other workers that this one's running trials are alive. Hand-written
        rather than Optuna's heartbeat: that works only with RDB storages (not journal
        files) and only inside study.optimize(), while the tuner uses ask/tell."""
        if not self.shared or time.monotonic() - self._last_beat < self.opt.grace_s / 12:
            return
        self._last_beat = time.monotonic()
        now = time.time()
        for st in studies:
            for trial in st.running.values():
                trial.set_user_attr("heartbeat", now)


def update_best(st: StudyState, ms: dict) -> None:
    for b, v in ms.items():
        b = int(b)
        if b not in st.best or v < st.best[b]:
            st.best[b] = v
