"""The tuner loop: one Optuna study per StudyKey, fed through a compile pool and a
runner. It asks a few trials ahead, prunes rule-breakers at once (the reason is kept
as the trial's user attr "reason"), sends the rest to the compile pool and feeds the
runner in order of completion, so the GPU does not wait for the compiler. Compile
errors, launch errors, wrong answers and resource problems become failed or pruned
trials with their reason; nothing a kernel does stops the study.

A candidate is compiled once and timed at every bucket of its study; each bucket's
tuned entry is the fastest correct config there, the study's objective is the
geometric mean of the bucket times. The tuner knows no operation's fields: problems,
checks and work come from the study's Operation.
"""
from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections import deque
from typing import Callable

from autoflash.runner.protocol import BucketRequest, KernelBinary, TimingOptions, TrialRequest, TrialResult
from autoflash.tuning import finalize
from autoflash.tuning.compile_pool import CompilePool, default_workers
from autoflash.tuning.keys import StudyKey, TuneError, TuneOptions
from autoflash.tuning.listing import trial_rows, trial_counts
from autoflash.tuning.shared import SEEDED, SharedStudies, update_best, wait_until_seeded
from autoflash.tuning.space import config_from_params, heuristic_default, params_of, resource_check, space, \
    suggest_config, tuned_seeds
from autoflash.tuning.state import Candidate, Finals, FinalTag, RetimeJob, Stats, StudyState, TuneResult
from autoflash.tuning.storage import WORKER_ID, make_sampler, open_storage

log = logging.getLogger("autoflash")


class Tuner:
    """Runs one study per StudyKey through a compile pool and a runner."""

    def __init__(self, options: TuneOptions, runner, device_info, workers: int | None = None,
                 standin: dict | None = None, progress: Callable | None = None):
        self.opt = options
        self.runner = runner
        self.info = device_info  # runner.protocol.DeviceInfo
        self.workers = default_workers() if workers is None else workers
        self.pool = CompilePool(self.workers, standin)
        self.progress = progress or (lambda event, **kw: None)
        self.stats = Stats()
        self.shared = SharedStudies(options)
        self._runner_queue: deque = deque()  # Candidate or RetimeJob
        self._runner_job = None
        self._runner_since = 0.0
        self._next_id = 0
        self._storage = None  # opened once, shared by the studies

    # ------------------------------------------------------------- setup
    def _open(self, key: StudyKey) -> StudyState:
        import optuna

        opt = self.opt
        configs = space(key, opt.knobs)
        if not configs:
            raise TuneError(f"no template supports {key.describe()} on {key.arch}")
        valid = [c for c in configs if not c.problems()]
        if not valid:
            raise TuneError(f"every config of {key.describe()} on {key.arch} breaks a template rule "
                            f"(e.g. {configs[0].name}: {'; '.join(configs[0].problems())})")
        sampler_name = opt.sampler
        if sampler_name == "auto":
            sampler_name = "exhaustive" if len(valid) <= opt.trials else "tpe"
        buckets, tokens = opt.buckets_for(key.operation), opt.tokens_for(key.operation)
        name = key.study_name(buckets, tokens)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if self._storage is None and opt.storage is not None:
            self._storage = open_storage(opt.storage)
        sampler = make_sampler(sampler_name, opt.seed)
        try:  # creating is atomic in every storage: of several workers exactly one creates (and seeds) it
            study = optuna.create_study(study_name=name, storage=self._storage, direction="minimize",
                                        sampler=sampler)
            created = True
        except optuna.exceptions.DuplicatedStudyError:
            study = optuna.load_study(study_name=name, storage=self._storage, sampler=sampler)
            created = False
        st = StudyState(key, study, buckets, tokens, len(configs), len(valid), sampler_name == "exhaustive",
                        opt.trials)
        default = heuristic_default(key)
        if created:  # a fresh study: seed it with the heuristic default and the
            # configs tuned for this key before (other GPUs of the arch), then (exhaustive) everything else
            order = []
            names = {c.name for c in valid}
            if default is not None and default.name in names:
                order.append(default)
            order += [c for c in (tuned_seeds(key) if opt.warm_start else []) if c.name in names and c.name not in {o.name for o in order}]
            if st.exhaustive:
                order += [c for c in valid if c.name not in {o.name for o in order}]
            for cfg in order:
                study.enqueue_trial(params_of(cfg), user_attrs={"config": cfg.name})
            study.set_user_attr(SEEDED, True)
        else:
            wait_until_seeded(study, opt.grace_s)
        self.shared.sync(st)
        st.default_name = default.name if default is not None else None
        if st.exhaustive:
            st.budget = min(opt.trials, len(valid))
        log.info("study %s: %d configs, %d pass the rules, sampler %s, %s", name, len(configs), len(valid),
                 sampler_name, "created" if created else f"{len(study.get_trials(deepcopy=False))} trials stored")
        return st

    # ---------------------------------------------------------- main loop
    def run(self, keys: list[StudyKey]) -> list[TuneResult]:
        t0 = time.perf_counter()
        studies = [self._open(k) for k in keys]
        self.progress("start", studies=[(s.key, max(0, s.budget - s.counted)) for s in studies])
        lookahead = self.opt.lookahead or (self.workers + 2)
        interrupted = []
        previous = _defer_sigint(interrupted)
        try:
            while any(s.phase != "done" for s in studies):
                if interrupted:  # stop here, between storage writes, never inside one
                    raise KeyboardInterrupt
                self._ask(studies, lookahead)
                self.shared.heartbeat(studies)
                self._feed_runner()
                for tag, res in self.pool.collect(timeout=0.002 if self._runner_job else 0.05):
                    self._compiled(tag, res)
                self._poll_runner()
                for s in studies:
                    self._maybe_finalize(s)
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
            self.pool.close()
            self.stats.wall = time.perf_counter() - t0
        return [TuneResult(s.key, s.study.study_name, sorted(s.entries, key=lambda e: e["seq_bucket"]),
                           trial_rows(s.study), trial_counts(s.study)) for s in studies]

    def _ask(self, studies: list[StudyState], lookahead: int) -> None:
        from optuna.trial import TrialState

        in_pipeline = sum(s.in_flight for s in studies)
        for st in studies:
            if st.phase == "search" and not st.asking_done and in_pipeline < lookahead and self.shared.shared:
                self.shared.sync(st, force=False)  # other workers' trials count against the budget too
            while st.phase == "search" and not st.asking_done and in_pipeline < lookahead:
                if self._budget_spent(st):
                    st.asking_done = True
                    break
                trial = st.study.ask()
                st.asks += 1
                st.waiting -= 1  # an estimate until the next sync (ask takes a queued trial first)
                st.running[trial.number] = trial
                trial.set_user_attr("worker", WORKER_ID)
                if self.shared.shared:  # epoch seconds: comparable across hosts (with synced clocks)
                    trial.set_user_attr("heartbeat", time.time())
                    if st.exhaustive and "fixed_params" not in st.study._storage.get_trial_system_attrs(trial._trial_id):
                        # every config was queued at the start, so a trial the sampler made up means another
                        # worker took the last queued one since this one looked
                        st.asking_done = True
                        self._tell(st, trial, TrialState.PRUNED, None,
                                   {"reason": "surplus: the queue of configs was empty", "surplus": True}, record=False)
                        break
                try:
                    cfg = suggest_config(trial, st.key, self.opt.knobs)
                except Exception as exc:  # e.g. a stored study whose space changed
                    self._tell(st, trial, TrialState.FAIL, None, {"reason": f"cannot build a config: {exc}"})
                    continue
                trial.set_user_attr("config", cfg.name)
                problems = cfg.problems()
                if problems:
                    self._tell(st, trial, TrialState.PRUNED, None,
                               {"reason": "rule: " + "; ".join(problems), "stage": "rules"}, cfg)
                    continue
                if cfg.name not in st.seen and self.shared.shared:
                    self.shared.sync(st)  # another worker may have started this config since the last look
                if cfg.name in st.seen:
                    self._duplicate(st, trial, cfg)
                    continue
                st.seen[cfg.name] = trial.number
                st.counted += 1
                trial.set_user_attr("counted", True)
                st.in_flight += 1
                in_pipeline += 1
                self.pool.submit(cfg, Candidate(st, trial, cfg))
            if in_pipeline >= lookahead:
                break

    def _budget_spent(self, st: StudyState) -> bool:
        if st.counted >= st.budget:
            return True
        if self.opt.timeout is not None and st.started is not None \
                and time.perf_counter() - st.started > self.opt.timeout:
            log.info("study %s: --timeout %.0f s reached", st.study.study_name, self.opt.timeout)
            return True
        if len(st.seen) >= st.valid_size:
            return True  # every valid config has been tried
        if st.exhaustive and st.waiting <= 0:  # every config was queued at the start: the queue is the plan
            self.shared.sync(st)  # confirm: another worker may have queued a lost trial again
            if st.waiting <= 0:
                return True
        return st.asks >= 20 * max(st.budget, 10) + st.space_size  # a sampler stuck on duplicates

    def _duplicate(self, st: StudyState, trial, cfg) -> None:
        from optuna.trial import TrialState

        first = st.seen[cfg.name]
        if cfg.name not in st.outcome:  # the first one is still running
            self._tell(st, trial, TrialState.PRUNED, None,
                       {"reason": f"duplicate of trial {first} (still running)", "duplicate_of": first}, cfg,
                       record=False)
            return
        state, value, attrs = st.outcome[cfg.name]
        kept = ("ms", st.operation.metric, "rel_error", "reason", "stage")
        copied = {k: v for k, v in attrs.items() if k in kept}
        copied["duplicate_of"] = first
        self._tell(st, trial, state, value, copied, cfg, record=False)

    def _tell(self, st: StudyState, trial, state, value, attrs: dict, cfg=None, record: bool = True) -> None:
        import optuna
        from optuna.trial import TrialState

        st.running.pop(trial.number, None)
        try:
            for k, v in attrs.items():
                trial.set_user_attr(k, v)
            if state == TrialState.COMPLETE:
                st.study.tell(trial, value)
            else:
                st.study.tell(trial, state=state)
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError) as exc:
            # another worker took this one for lost (no heartbeat for grace_s) and queued it again
            log.warning("trial %d of %s finished after it was declared lost; result dropped (%s)", trial.number,
                        st.study.study_name, exc)
            return
        if record and cfg is not None:
            st.outcome[cfg.name] = (state, value, dict(attrs, config=cfg.name))
        self.progress("trial", key=st.key, number=trial.number, state=state.name, config=cfg.name if cfg else None,
                      value=value, reason=attrs.get("reason", ""), ms=attrs.get("ms"), stage=attrs.get("stage"),
                      duplicate="duplicate_of" in attrs or "surplus" in attrs)

    # -------------------------------------------------------- compile done
    def _compiled(self, tag, res: dict) -> None:
        from optuna.trial import TrialState

        self.stats.compile_cpu += res.get("seconds", 0.0)
        self.stats.compiled += 1
        self.stats.compile_cached += bool(res.get("cached"))
        if isinstance(tag, FinalTag):  # a finalist recompiled for re-timing
            self._final_compiled(tag, res)
            return
        st, trial, cfg = tag.study, tag.trial, tag.cfg
        if not res["ok"]:
            st.in_flight -= 1
            first = res["error"].strip().splitlines()[0] if res["error"].strip() else "unknown"
            self._tell(st, trial, TrialState.FAIL, None, {"reason": f"compile error: {first[:300]}",
                                                         "stage": "compile"}, cfg)
            return
        report = res["report"]
        blocks, reasons = resource_check(cfg, report, res["smem"])
        trial.set_user_attr("registers", report["registers"])
        trial.set_user_attr("spills", report["spill_stores"] + report["spill_loads"])
        trial.set_user_attr("smem", res["smem"])
        trial.set_user_attr("blocks_per_sm", blocks)
        if reasons:
            st.in_flight -= 1
            self._tell(st, trial, TrialState.PRUNED, None, {"reason": "resources: " + "; ".join(reasons),
                                                            "stage": "resources"}, cfg)
            return
        tag.compiled = res
        self._runner_queue.append(tag)

    # ------------------------------------------------------------ runner
    def _feed_runner(self) -> None:
        if self._runner_job is not None or not self._runner_queue:
            return
        job = self._runner_queue.popleft()
        self._next_id += 1
        if isinstance(job, Candidate):
            st, op = job.study, job.study.operation
            if st.started is None:  # --timeout counts from here: a study queued behind another's GPU work loses nothing
                st.started = time.perf_counter()
            msg = TrialRequest(self._next_id, KernelBinary(job.cfg.to_dict(), job.compiled["cubin"],
                                                           job.compiled["report"], job.compiled.get("values") or {}),
                               checks=op.check_problems(st.key.params),
                               buckets=[BucketRequest(b, st.problem(b), st.best.get(b)) for b in st.buckets],
                               timing=TimingOptions(self.opt.budget_ms, self.opt.slower_factor),
                               seed=job.trial.number)
        else:
            msg = job.request
            msg.id = self._next_id
        self._runner_job = job
        self._runner_since = time.perf_counter()
        self.runner.submit(msg)

    def _poll_runner(self) -> None:
        if self._runner_job is None:
            return
        reply = self.runner.poll(0.0 if self.pool.pending() else 0.02)
        if reply is None:
            return
        self.stats.runner_busy += time.perf_counter() - self._runner_since
        job, self._runner_job = self._runner_job, None
        if isinstance(job, Candidate):
            self._trial_done(job, reply)
        else:
            self.stats.retime += time.perf_counter() - self._runner_since
            self._final_entry(job.study, job.bucket, *finalize.winner(job.study, job.bucket,
                                                                      job.study.finals[job.bucket].ok, reply))

    def _trial_done(self, cand: Candidate, reply: TrialResult) -> None:
        from optuna.trial import TrialState

        st, trial, cfg, op = cand.study, cand.trial, cand.cfg, cand.study.operation
        st.in_flight -= 1
        self.stats.verify += reply.seconds.get("verify", 0.0)
        self.stats.time += reply.seconds.get("time", 0.0)
        attrs = {"stage": "run", "timings": reply.timings}
        if reply.rel_error is not None:
            attrs["rel_error"] = reply.rel_error
        if reply.status == "ok" and len(reply.ms) == len(st.buckets):
            ms = {str(b): float(reply.ms[str(b)]) for b in st.buckets}
            attrs["ms"] = ms
            attrs[op.metric] = {b: op.rate(st.problem(int(b)), v) for b, v in ms.items()}
            value = math.exp(sum(math.log(v) for v in ms.values()) / len(ms))  # geometric mean over buckets
            update_best(st, ms)
            self._tell(st, trial, TrialState.COMPLETE, value, attrs, cfg)
        elif reply.status == "pruned":
            attrs["reason"] = reply.reason or "pruned"
            attrs["ms"] = reply.ms
            self._tell(st, trial, TrialState.PRUNED, None, attrs, cfg)
        else:
            attrs["reason"] = reply.reason or f"runner replied {reply.status!r}"
            self._tell(st, trial, TrialState.FAIL, None, attrs, cfg)

    # ---------------------------------------------------------- finalize
    def _maybe_finalize(self, st: StudyState) -> None:
        if st.phase != "search" or not st.asking_done or st.in_flight:
            return
        if self.shared.shared:
            self.shared.sync(st, force=False)
            if st.waiting and not self._budget_spent(st):  # e.g. a lost trial queued again
                st.asking_done = False
                return
            if self.opt.role == "search":
                st.phase = "done"
                self.progress("study_done", key=st.key, entries=[])
                return
            if st.others_running:  # the finalists are chosen from every worker's trials
                return
        st.phase = "finalize"
        for b, chosen in finalize.choose_finalists(st, self.opt.finalists).items():
            st.finals[b] = Finals(chosen, [None] * len(chosen))
            for i, t in enumerate(chosen):
                st.finalize_jobs += 1
                self.pool.submit(config_from_params(st.key, t.params), FinalTag(st, b, i))
        if not st.finalize_jobs:
            st.phase = "done"
            self.progress("study_done", key=st.key, entries=[])

    def _final_compiled(self, tag: FinalTag, res: dict) -> None:
        st, b = tag.study, tag.bucket
        finals = st.finals[b]
        finals.compiled[tag.index] = res
        if all(c is not None for c in finals.compiled):
            finals.ok = [(t, c) for t, c in zip(finals.trials, finals.compiled) if c["ok"]]
            if not finals.ok:
                self._final_entry(st, b, finals.trials[0], None, [], None)
                return
            request = finalize.retime_request(st, b, finals.ok, self.opt.retime_rounds)
            self._runner_queue.append(RetimeJob(st, b, request))

    def _final_entry(self, st: StudyState, b: int, trial, retimed, finalists: list, default_ms) -> None:
        st.finalize_jobs -= len(st.finals[b].trials)
        st.entries.append(finalize.build_entry(st, b, trial, retimed, finalists, default_ms, self.info))
        if st.finalize_jobs <= 0:
            st.phase = "done"
            self.progress("study_done", key=st.key, entries=st.entries)


def _defer_sigint(flag: list):
    """Ctrl-C while tuning: note it and let the loop stop at its next safe point, so an
    interrupt never lands inside a write to the Optuna storage (a journal file's lock
    would be left half-released). A second Ctrl-C interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        if flag:
            raise KeyboardInterrupt
        flag.append(signum)

    return signal.signal(signal.SIGINT, handler)
