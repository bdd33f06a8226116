"""The tuner: an Optuna study per problem, objective = compile -> verify -> time.

Processes (design.md section 7):

    main (this module): Optuna studies, ask/tell, storage, progress -- no CUDA here
      |-- compile pool (N CPU processes): config -> render -> NVRTC -> cubin + ptxas report
      '-- GPU runner (runner.py, one subprocess): cubin -> verify vs reference -> time

The main loop asks a few trials ahead, prunes rule-breakers at once (the reason is
kept as the trial's user attr "reason"), sends the rest to the compile pool and
feeds the runner in order of completion, so the GPU does not wait for the compiler.
Compile errors, launch errors, wrong answers and resource problems become failed or
pruned trials with their reason; nothing a kernel does stops the study.

One study per (arch, device, template or any, dtype, head_dim, causal). The
sequence length is a run-time argument of every kernel, so a candidate is compiled
once and timed at every sequence-length bucket; each bucket's tuned entry is the
fastest correct config at that bucket, and the study's objective is the geometric
mean of the bucket times. Before an entry is written the best few configs of each
bucket are re-timed in interleaved order and the spread recorded.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import json
import logging
import math
import multiprocessing
import os
import socket
import time
import warnings
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from autoflash import store, timing
from autoflash.config import ARCHS, KernelConfig

log = logging.getLogger("autoflash")

TOKENS = 131072  # batch * heads * N of the timed problems: enough blocks to fill an H100 at every bucket
MAX_HEADS = 16
HEAD_DIMS = (64, 128)
# Shapes every candidate must get right before it is timed: an odd length with a
# partial last tile and GQA (2 query heads per K/V head), and whole tiles.
CHECK_SHAPES = ((1, 4, 2, 1031, 1031), (2, 2, 2, 512, 512))


class TuneError(RuntimeError):
    """A tuning request that cannot run (bad arch, empty space, no GPU, ...)."""


# ------------------------------------------------------------------- keys
@dataclass(frozen=True)
class StudyKey:
    """A problem key minus the sequence bucket: what one study tunes."""

    arch: str
    device: str
    template: str | None  # None: every template supporting the problem competes
    dtype: str
    head_dim: int
    causal: bool

    def study_name(self, buckets, tokens: int) -> str:
        t = self.template or "any"
        c = "causal" if self.causal else "noncausal"
        b = ",".join(str(x) for x in buckets)
        return f"autoflash|{self.arch}|{self.device}|{t}|{self.dtype}|d{self.head_dim}|{c}|N{b}|T{tokens}"

    def describe(self) -> str:
        return (f"{self.dtype} d{self.head_dim} {'causal' if self.causal else 'non-causal'}"
                + (f" [{self.template}]" if self.template else ""))


def bench_problem(bucket: int, head_dim: int, causal: bool, tokens: int = TOKENS) -> dict:
    """The timed problem of a bucket: batch * heads * N ~ tokens, so every bucket fills the GPU."""
    heads = max(1, min(MAX_HEADS, tokens // bucket))
    batch = max(1, tokens // (heads * bucket))
    return dict(batch=batch, heads_q=heads, heads_kv=heads, seq_q=bucket, seq_k=bucket, head_dim=head_dim,
                causal=causal)


def check_problems(head_dim: int, causal: bool) -> list[dict]:
    return [dict(batch=b, heads_q=hq, heads_kv=hkv, seq_q=nq, seq_k=nk, head_dim=head_dim, causal=causal)
            for b, hq, hkv, nq, nk in CHECK_SHAPES]


def flops(problem: dict) -> float:
    from autoflash.launch import Problem

    return Problem(**problem).flops()


# ------------------------------------------------------------------ space
def variants_for(arch: str, dtype: str, head_dim: int, templates=None) -> list[tuple]:
    """(variant, the arch its configs are built for) of every registered template that
    supports the problem on this arch (sm_90 also takes sm_90a-only templates)."""
    from autoflash.variants import VARIANTS

    if templates:
        unknown = sorted(set(templates) - set(VARIANTS))
        if unknown:
            raise TuneError(f"unknown template(s) {unknown}; registered: {sorted(VARIANTS)}")
    out = []
    for name, v in VARIANTS.items():
        if templates and name not in templates:
            continue
        for a in store.compatible_archs(arch):
            if a in v.archs and dtype in v.dtypes and head_dim in v.head_dims:
                out.append((v, a))
                break
    return out


def restricted_knobs(variant, knobs: dict | None) -> dict:
    """The variant's knobs, each limited to the values in `knobs` (if named there)."""
    out = {}
    for name, values in variant.knobs.items():
        if knobs and name in knobs:
            values = tuple(v for v in values if v in knobs[name])
        out[name] = tuple(values)
    return out


def check_knobs(knobs: dict | None, templates=None) -> None:
    from autoflash.variants import VARIANTS

    if not knobs:
        return
    known = {k for name, v in VARIANTS.items() if not templates or name in templates for k in v.knobs}
    unknown = sorted(set(knobs) - known)
    if unknown:
        raise TuneError(f"unknown knob(s) {unknown}; the templates' knobs are {sorted(known)}")


def space(key: StudyKey, knobs: dict | None = None) -> list[KernelConfig]:
    """Every config of the study's search space, rule-breakers included."""
    import itertools

    out = []
    for variant, arch in variants_for(key.arch, key.dtype, key.head_dim, [key.template] if key.template else None):
        ks = restricted_knobs(variant, knobs)
        names = list(ks)
        for values in itertools.product(*(ks[n] for n in names)):
            out.append(KernelConfig(template=variant.name, arch=arch, dtype=key.dtype, head_dim=key.head_dim,
                                    causal=key.causal, **dict(zip(names, values))))
    return out


def params_of(cfg: KernelConfig) -> dict:
    from autoflash.variants import VARIANTS

    params = {"template": cfg.template}
    for knob in VARIANTS[cfg.template].knobs:
        params[f"{cfg.template}.{knob}"] = getattr(cfg, knob)
    return params


def suggest_config(trial, key: StudyKey, knobs: dict | None) -> KernelConfig:
    """Ask Optuna for a config: the template first, then that template's knobs."""
    choices = variants_for(key.arch, key.dtype, key.head_dim, [key.template] if key.template else None)
    by_name = {v.name: (v, a) for v, a in choices}
    name = trial.suggest_categorical("template", sorted(by_name))
    variant, arch = by_name[name]
    fields = {}
    for knob, values in restricted_knobs(variant, knobs).items():
        fields[knob] = trial.suggest_categorical(f"{name}.{knob}", list(values))
    return KernelConfig(template=name, arch=arch, dtype=key.dtype, head_dim=key.head_dim, causal=key.causal,
                        **fields)


def heuristic_default(key: StudyKey) -> KernelConfig | None:
    from autoflash.dispatch import heuristic_default as hd
    from autoflash.variants import VARIANTS

    try:
        if key.template:
            return VARIANTS[key.template].default(key.arch, key.dtype, key.head_dim, key.causal)
        return hd(key.arch, key.dtype, key.head_dim, key.causal)
    except Exception:  # no default for this problem: the study simply starts unseeded
        return None


def resource_check(cfg: KernelConfig, report: dict, smem: int) -> tuple[int, list[str]]:
    """(estimated resident blocks per SM, reasons the compiled kernel is pruned)."""
    lim = ARCHS[cfg.arch]
    reasons = []
    spills = report["spill_stores"] + report["spill_loads"]
    if spills:
        reasons.append(f"spills {spills} bytes (registers {report['registers']})")
    regs_per_block = max(1, report["registers"]) * cfg.threads
    smem_total = smem + report.get("static_smem", 0)
    by_regs = lim.regs_per_sm // regs_per_block
    by_smem = lim.smem_per_sm // (smem_total + 1024) if smem_total else lim.blocks_per_sm
    by_threads = lim.threads_per_sm // cfg.threads
    blocks = min(by_regs, by_smem, by_threads, lim.blocks_per_sm)
    if smem_total > lim.smem_per_block:
        reasons.append(f"needs {smem_total} B of shared memory, {cfg.arch} allows {lim.smem_per_block} B per block")
    if by_regs == 0:
        reasons.append(f"{report['registers']} registers x {cfg.threads} threads exceed the {lim.regs_per_sm} "
                       f"registers of an SM")
    return blocks, reasons


# ---------------------------------------------------------------- compile
def compile_candidate(config: dict, standin: dict | None = None) -> dict:
    """Compile-pool job: plain data in, plain data out (never raises)."""
    if standin is not None:
        from autoflash.runner import standin_compile

        return standin_compile(config, standin)
    t0 = time.perf_counter()
    try:
        from autoflash.compile import compile_kernel
        from autoflash.variants import VARIANTS

        cfg = KernelConfig.from_dict(config)
        ck = compile_kernel(cfg)
        return {"ok": True, "cubin": ck.cubin, "report": dataclasses.asdict(ck.report),
                "smem": VARIANTS[cfg.template].smem_bytes(cfg), "seconds": time.perf_counter() - t0,
                "cached": ck.cached}
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "seconds": time.perf_counter() - t0}


def _defer_sigint(flag: list):
    """Ctrl-C while tuning: note it and let the loop stop at its next safe point, so an
    interrupt never lands inside a write to the Optuna storage (a journal file's lock
    would be left half-released). A second Ctrl-C interrupts at once."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        if flag:
            raise KeyboardInterrupt
        flag.append(signum)

    return signal.signal(signal.SIGINT, handler)


def _restore_sigint(previous) -> None:
    import signal

    if previous is not None:
        signal.signal(signal.SIGINT, previous)


class CompilePool:
    """Compile jobs in N spawned processes (workers=0: inline, for tests)."""

    def __init__(self, workers: int, standin: dict | None = None):
        self.workers = workers
        self.standin = standin
        self._pool = None
        self._done: deque = deque()
        self._futures: dict = {}

    def submit(self, cfg: KernelConfig, tag) -> None:
        if self.workers <= 0:
            self._done.append((tag, compile_candidate(cfg.to_dict(), self.standin)))
            return
        if self._pool is None:
            from autoflash.runner import die_with_parent

            self._pool = concurrent.futures.ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=die_with_parent)
        self._futures[self._pool.submit(compile_candidate, cfg.to_dict(), self.standin)] = tag

    def pending(self) -> int:
        return len(self._futures) + len(self._done)

    def collect(self, timeout: float = 0.0) -> list[tuple]:
        """(tag, result) of every finished job."""
        out = list(self._done)
        self._done.clear()
        if self._futures:
            done, _ = concurrent.futures.wait(list(self._futures), timeout=0 if out else timeout,
                                              return_when=concurrent.futures.FIRST_COMPLETED)
            for fut in done:
                tag = self._futures.pop(fut)
                try:
                    out.append((tag, fut.result()))
                except Exception as exc:  # a worker that died (e.g. killed by the OS)
                    out.append((tag, {"ok": False, "error": f"compile worker failed: {type(exc).__name__}: {exc}"}))
        return out

    def map(self, configs: list[KernelConfig]) -> list[dict]:
        for i, cfg in enumerate(configs):
            self.submit(cfg, i)
        results: dict = {}
        while len(results) < len(configs):
            for tag, res in self.collect(timeout=0.5):
                results[tag] = res
        return [results[i] for i in range(len(configs))]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def default_workers(reserve: int = 1) -> int:
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, n - reserve)


# ---------------------------------------------------------------- options
@dataclass
class TuneOptions:
    trials: int = 64  # candidates compiled and timed per study (rule-pruned ones and duplicates not counted)
    timeout: float | None = None  # seconds per study, from its first trial
    seed: int = 0
    sampler: str = "auto"  # auto | tpe | exhaustive | random
    storage: str | None = None  # Optuna storage URL (sqlite:///..., a journal file path, any RDB URL)
    buckets: tuple[int, ...] = store.BUCKETS
    tokens: int = TOKENS
    knobs: dict | None = None  # knob -> allowed values (restricts the space)
    finalists: int = 3
    retime_rounds: int = 5
    budget_ms: float = timing.DEFAULT_BUDGET_MS
    slower_factor: float = timing.SLOWER_FACTOR
    lookahead: int | None = None  # candidates in the compile pipeline at once (default: workers + 2)
    # Several workers on one storage (campaign.py): "full" searches, waits for the other
    # workers' trials, then re-times finalists and makes entries; "search" only searches.
    role: str = "full"
    grace_s: float = 120.0  # a running trial whose worker's heartbeat is older than this is lost


# Campaign options a worker reads back from the storage (campaign.py); not storage or role,
# which are the worker's own.
SHARED_OPTIONS = ("trials", "timeout", "seed", "sampler", "buckets", "tokens", "knobs", "finalists",
                  "retime_rounds", "budget_ms", "slower_factor", "grace_s")
SYNC_S = 1.0  # how often a shared study is re-read from its storage


def open_storage(url: str | None):
    """Optuna storage from a URL: None (in memory), an RDB URL (sqlite:///x.db,
    postgresql://...), or a path to a journal file (*.log, *.journal, or journal:PATH)."""
    import optuna

    if url is None:
        return None
    if "://" in url and not url.startswith("journal:"):
        if not url.startswith("sqlite"):
            return optuna.storages.RDBStorage(url)
        # SQLite serialises writers; several workers need a longer wait than its 5 s default
        storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
        _serialise_sqlite(storage.engine)
        return storage
    path = url[len("journal:"):] if url.startswith("journal:") else url
    if path.startswith("//"):
        path = path[2:]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(path))


def _serialise_sqlite(engine) -> None:
    """Make each SQLite transaction take the write lock when it starts. Optuna hands a
    queued trial to one worker by SELECT ... FOR UPDATE, which SQLite ignores: two workers
    could both read the trial as waiting and both run it (seen in tests/test_distributed.py).
    BEGIN IMMEDIATE makes that read-then-write atomic, as the row lock does in PostgreSQL."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # the driver's own BEGIN would be DEFERRED

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened before the listeners would miss them


def make_sampler(name: str, seed: int):
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "tpe":
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True,
                                              n_startup_trials=8)
        if name in ("random", "exhaustive"):  # exhaustive: every config is enqueued, the sampler is not asked
            return optuna.samplers.RandomSampler(seed=seed)
    raise TuneError(f"unknown sampler {name!r} (auto, tpe, exhaustive, random)")


# ------------------------------------------------------------------ state
# Who runs a trial, as host:pid: a dead process of this host is seen at once; another
# host's worker by its heartbeat. AUTOFLASH_WORKER_HOST lets tests play another host.
HOST = os.environ.get("AUTOFLASH_WORKER_HOST") or socket.gethostname()
WORKER_ID = f"{HOST}:{os.getpid()}"


@dataclass
class _Candidate:
    study: "_Study"
    trial: object  # optuna.Trial
    cfg: KernelConfig
    compiled: dict | None = None


@dataclass
class _Study:
    key: StudyKey
    study: object  # optuna.Study
    space_size: int
    valid_size: int
    exhaustive: bool
    budget: int
    started: float | None = None
    counted: int = 0  # candidates sent to the compiler (budget use)
    asks: int = 0
    in_flight: int = 0
    seen: dict = field(default_factory=dict)  # config name -> trial number
    outcome: dict = field(default_factory=dict)  # config name -> (state, value, attrs) of finished trials
    best: dict = field(default_factory=dict)  # bucket -> best ms among complete trials
    asking_done: bool = False
    phase: str = "search"  # search -> finalize -> done
    finalize_jobs: int = 0
    finals: dict = field(default_factory=dict)  # bucket -> list of (name, cfg dict, compiled) to retime
    entries: list = field(default_factory=list)
    default_name: str | None = None
    running: dict = field(default_factory=dict)  # trial number -> optuna.Trial asked here, not yet told
    others_running: int = 0  # trials other workers are running (as of the last sync)
    waiting: int = 0  # queued trials nobody has taken yet
    last_sync: float = -1e9


@dataclass
class TuneResult:
    key: StudyKey
    study_name: str
    entries: list  # store entries, one per bucket with a correct config
    trials: list  # trial_rows(study)
    counts: dict


@dataclass
class Stats:
    """Where the time went (seconds)."""

    wall: float = 0.0
    compile_cpu: float = 0.0  # summed over the compile workers
    compiled: int = 0
    compile_cached: int = 0
    verify: float = 0.0
    time: float = 0.0
    runner_busy: float = 0.0  # wall time the runner had work
    retime: float = 0.0

    @property
    def gpu_idle(self) -> float:
        return max(0.0, self.wall - self.runner_busy)

    def describe(self) -> str:
        return (f"wall {self.wall:.1f} s: compile {self.compile_cpu:.1f} CPU-s over {self.compiled} kernels "
                f"({self.compile_cached} from cache), verify {self.verify:.1f} s, time {self.time:.1f} s, "
                f"finalist re-timing {self.retime:.1f} s, GPU idle {self.gpu_idle:.1f} s")


# ------------------------------------------------------------------ tuner
class Tuner:
    """Runs one study per StudyKey through a compile pool and a runner."""

    def __init__(self, options: TuneOptions, runner, device_info: dict, workers: int | None = None,
                 standin: dict | None = None, progress: Callable | None = None):
        self.opt = options
        self.runner = runner
        self.info = device_info
        self.workers = default_workers() if workers is None else workers
        self.pool = CompilePool(self.workers, standin)
        self.progress = progress or (lambda event, **kw: None)
        self.stats = Stats()
        self._runner_queue: deque = deque()
        self._runner_job = None
        self._runner_since = 0.0
        self._next_id = 0
        self._storage = None  # opened once, shared by the studies
        self._unclaimed = {}  # storage trial id -> when a RUNNING trial with no worker was first seen
        self._last_beat = 0.0

    @property
    def _shared(self) -> bool:
        """A stored study: other workers may read and write it too."""
        return self.opt.storage is not None

    # ------------------------------------------------------------- setup
    def _open(self, key: StudyKey) -> _Study:
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
        name = key.study_name(opt.buckets, opt.tokens)
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
        st = _Study(key, study, len(configs), len(valid), sampler_name == "exhaustive", opt.trials)
        default = heuristic_default(key)
        self._sync(st)
        if created:  # a fresh study: seed it with the heuristic default, then (exhaustive) everything else
            order = []
            if default is not None and default.name in {c.name for c in valid}:
                order.append(default)
            if st.exhaustive:
                order += [c for c in valid if default is None or c.name != default.name]
            for cfg in order:
                study.enqueue_trial(params_of(cfg), user_attrs={"config": cfg.name})
        st.default_name = default.name if default is not None else None
        if st.exhaustive:
            st.budget = min(opt.trials, len(valid))
        log.info("study %s: %d configs, %d pass the rules, sampler %s, %s", name, len(configs), len(valid),
                 sampler_name, "created" if created else f"{len(study.get_trials(deepcopy=False))} trials stored")
        return st

    # ------------------------------------------------------ shared state
    def _sync(self, st: _Study, force: bool = True) -> None:
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
                why = self._lost_reason(t)
                if why is not None:
                    waiting += self._mark_lost(st, t, why)  # its config is queued again
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
                self._update_best(st, a.get("ms", {}))
        st.counted, st.others_running, st.waiting = counted, others, waiting

    def _lost_reason(self, t) -> str | None:
        """Why a trial another worker is running will never finish, or None."""
        worker = t.user_attrs.get("worker", "")
        host, _, pid = worker.rpartition(":")
        if host == HOST and pid.isdigit():
            if int(pid) == os.getpid():  # ours, but not this tuner's: an earlier run in this process
                return "left running by an earlier run in this process"
            if not _pid_alive(int(pid)):
                return f"worker {worker} is gone"
        beat = t.user_attrs.get("heartbeat")  # set when asked, then every grace_s / 12
        if beat is not None and time.time() - beat > self.opt.grace_s:
            return f"no heartbeat from worker {worker or '?'} for {time.time() - beat:.0f} s"
        if beat is None:  # its worker died between ask() and writing who it is: time it on our own clock
            since = self._unclaimed.setdefault(t._trial_id, time.monotonic())
            if time.monotonic() - since > self.opt.grace_s:
                return f"no worker claimed it for {time.monotonic() - since:.0f} s"
        return None

    def _mark_lost(self, st: _Study, t, why: str) -> bool:
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

    def _heartbeat(self, studies: list[_Study]) -> None:
        """Tell the other workers that this one's running trials are alive. Hand-written
        rather than Optuna's heartbeat: that works only with RDB storages (not journal
        files) and only inside study.optimize(), while the tuner uses ask/tell."""
        if not self._shared or time.monotonic() - self._last_beat < self.opt.grace_s / 12:
            return
        self._last_beat = time.monotonic()
        now = time.time()
        for st in studies:
            for trial in st.running.values():
                trial.set_user_attr("heartbeat", now)

    @staticmethod
    def _update_best(st: _Study, ms: dict) -> None:
        for b, v in ms.items():
            b = int(b)
            if b not in st.best or v < st.best[b]:
                st.best[b] = v

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
                self._heartbeat(studies)
                self._feed_runner()
                for tag, res in self.pool.collect(timeout=0.002 if self._runner_job else 0.05):
                    self._compiled(tag, res)
                self._poll_runner()
                for s in studies:
                    self._maybe_finalize(s)
        finally:
            _restore_sigint(previous)
            self.pool.close()
            self.stats.wall = time.perf_counter() - t0
        return [self._result(s) for s in studies]

    def _ask(self, studies: list[_Study], lookahead: int) -> None:
        from optuna.trial import TrialState

        in_pipeline = sum(s.in_flight for s in studies)
        for st in studies:
            if st.phase == "search" and not st.asking_done and in_pipeline < lookahead and self._shared:
                self._sync(st, force=False)  # other workers' trials count against the budget too
            while st.phase == "search" and not st.asking_done and in_pipeline < lookahead:
                if st.started is None:
                    st.started = time.perf_counter()
                if self._budget_spent(st):
                    st.asking_done = True
                    break
                trial = st.study.ask()
                st.asks += 1
                st.waiting -= 1  # an estimate until the next sync (ask takes a queued trial first)
                st.running[trial.number] = trial
                trial.set_user_attr("worker", WORKER_ID)
                if self._shared:  # epoch seconds: comparable across hosts (with synced clocks)
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
                if cfg.name not in st.seen and self._shared:
                    self._sync(st)  # another worker may have started this config since the last look
                if cfg.name in st.seen:
                    self._duplicate(st, trial, cfg)
                    continue
                st.seen[cfg.name] = trial.number
                st.counted += 1
                trial.set_user_attr("counted", True)
                st.in_flight += 1
                in_pipeline += 1
                self.pool.submit(cfg, _Candidate(st, trial, cfg))
            if in_pipeline >= lookahead:
                break

    def _budget_spent(self, st: _Study) -> bool:
        if st.counted >= st.budget:
            return True
        if self.opt.timeout is not None and time.perf_counter() - st.started > self.opt.timeout:
            log.info("study %s: --timeout %.0f s reached", st.study.study_name, self.opt.timeout)
            return True
        if len(st.seen) >= st.valid_size:
            return True  # every valid config has been tried
        if st.exhaustive and st.waiting <= 0:  # every config was queued at the start: the queue is the plan
            self._sync(st)  # confirm: another worker may have queued a lost trial again
            if st.waiting <= 0:
                return True
        return st.asks >= 20 * max(st.budget, 10) + st.space_size  # a sampler stuck on duplicates

    def _duplicate(self, st: _Study, trial, cfg: KernelConfig) -> None:
        from optuna.trial import TrialState

        first = st.seen[cfg.name]
        if cfg.name not in st.outcome:  # the first one is still running
            self._tell(st, trial, TrialState.PRUNED, None,
                       {"reason": f"duplicate of trial {first} (still running)", "duplicate_of": first}, cfg,
                       record=False)
            return
        state, value, attrs = st.outcome[cfg.name]
        copied = {k: v for k, v in attrs.items() if k in ("ms", "tflops", "rel_error", "reason", "stage")}
        copied["duplicate_of"] = first
        self._tell(st, trial, state, value, copied, cfg, record=False)

    def _tell(self, st: _Study, trial, state, value, attrs: dict, cfg: KernelConfig | None = None,
              record: bool = True) -> None:
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
        if isinstance(tag, tuple):  # a finalist recompiled for re-timing
            self._final_compiled(tag, res)
            return
        cand: _Candidate = tag
        st, trial, cfg = cand.study, cand.trial, cand.cfg
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
        cand.compiled = res
        self._runner_queue.append(("trial", cand))

    # ------------------------------------------------------------ runner
    def _feed_runner(self) -> None:
        if self._runner_job is not None or not self._runner_queue:
            return
        kind, job = self._runner_queue.popleft()
        self._next_id += 1
        if kind == "trial":
            st, cfg = job.study, job.cfg
            msg = {"op": "trial", "id": self._next_id, "config": cfg.to_dict(), "cubin": job.compiled["cubin"],
                   "report": job.compiled["report"], "checks": check_problems(cfg.head_dim, cfg.causal),
                   "buckets": [{"bucket": b, "problem": bench_problem(b, cfg.head_dim, cfg.causal, self.opt.tokens),
                                "best_ms": st.best.get(b)} for b in self.opt.buckets],
                   "timing": {"budget_ms": self.opt.budget_ms, "slower_factor": self.opt.slower_factor},
                   "seed": job.trial.number}
        else:
            msg = dict(job["msg"], id=self._next_id)
        self._runner_job = (kind, job)
        self._runner_since = time.perf_counter()
        self.runner.submit(msg)

    def _poll_runner(self) -> None:
        if self._runner_job is None:
            return
        reply = self.runner.poll(0.0 if self.pool.pending() else 0.02)
        if reply is None:
            return
        self.stats.runner_busy += time.perf_counter() - self._runner_since
        kind, job = self._runner_job
        self._runner_job = None
        if kind == "trial":
            self._trial_done(job, reply)
        else:
            self.stats.retime += time.perf_counter() - self._runner_since
            self._retime_done(job, reply)

    def _trial_done(self, cand: _Candidate, reply: dict) -> None:
        from optuna.trial import TrialState

        st, trial, cfg = cand.study, cand.trial, cand.cfg
        st.in_flight -= 1
        secs = reply.get("seconds", {})
        self.stats.verify += secs.get("verify", 0.0)
        self.stats.time += secs.get("time", 0.0)
        attrs = {"stage": "run", "timings": reply.get("timings", {})}
        if reply.get("rel_error") is not None:
            attrs["rel_error"] = reply["rel_error"]
        status = reply.get("status")
        if status == "ok" and len(reply.get("ms", {})) == len(self.opt.buckets):
            ms = {str(b): float(reply["ms"][str(b)]) for b in self.opt.buckets}
            attrs["ms"] = ms
            attrs["tflops"] = {b: flops(bench_problem(int(b), cfg.head_dim, cfg.causal, self.opt.tokens)) / (v * 1e9)
                               for b, v in ms.items()}
            value = math.exp(sum(math.log(v) for v in ms.values()) / len(ms))  # geometric mean over buckets
            self._update_best(st, ms)
            self._tell(st, trial, TrialState.COMPLETE, value, attrs, cfg)
        elif status == "pruned":
            attrs["reason"] = reply.get("reason", "pruned")
            attrs["ms"] = reply.get("ms", {})
            self._tell(st, trial, TrialState.PRUNED, None, attrs, cfg)
        else:
            attrs["reason"] = reply.get("reason") or f"runner replied {status!r}"
            self._tell(st, trial, TrialState.FAIL, None, attrs, cfg)

    # ---------------------------------------------------------- finalize
    def _maybe_finalize(self, st: _Study) -> None:
        if st.phase != "search" or not st.asking_done or st.in_flight:
            return
        from optuna.trial import TrialState

        if self._shared:
            self._sync(st, force=False)
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
        complete = [t for t in st.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                    if "duplicate_of" not in t.user_attrs and t.user_attrs.get("ms")]
        for b in self.opt.buckets:
            ranked = sorted(complete, key=lambda t: t.user_attrs["ms"][str(b)])
            chosen, names = [], set()
            for t in ranked:
                if t.user_attrs["config"] not in names:
                    names.add(t.user_attrs["config"])
                    chosen.append(t)
                if len(chosen) >= max(1, self.opt.finalists):
                    break
            if not chosen:
                continue
            # the heuristic default is re-timed beside them, so "vs default" compares like with like
            default = [t for t in complete if t.user_attrs["config"] == st.default_name]
            if default and default[0].user_attrs["config"] not in names:
                chosen.append(default[0])
            st.finals[b] = {"trials": chosen, "compiled": [None] * len(chosen)}
            for i, t in enumerate(chosen):
                cfg = suggest_from_params(st.key, t.params)
                st.finalize_jobs += 1
                self.pool.submit(cfg, (st, b, i))
        if not st.finalize_jobs:
            st.phase = "done"
            self.progress("study_done", key=st.key, entries=[])

    def _final_compiled(self, tag: tuple, res: dict) -> None:
        st, b, i = tag
        st.finals[b]["compiled"][i] = res
        if all(c is not None for c in st.finals[b]["compiled"]):
            ok = [(t, c) for t, c in zip(st.finals[b]["trials"], st.finals[b]["compiled"]) if c["ok"]]
            if not ok:
                self._final_entry(st, b, st.finals[b]["trials"][0], None, [])
                return
            st.finals[b]["ok"] = ok
            msg = {"op": "retime", "problem": bench_problem(b, st.key.head_dim, st.key.causal, self.opt.tokens),
                   "rounds": self.opt.retime_rounds, "launches_per_round": 5,
                   "kernels": [{"config": suggest_from_params(st.key, t.params).to_dict(), "cubin": c["cubin"],
                                "report": c["report"]} for t, c in ok]}
            self._runner_queue.append(("retime", {"study": st, "bucket": b, "msg": msg}))

    def _retime_done(self, job: dict, reply: dict) -> None:
        st, b = job["study"], job["bucket"]
        ok = st.finals[b]["ok"]
        if reply.get("status") != "ok" or len(reply.get("rounds", [])) != len(ok):
            log.warning("re-timing the finalists of %s N=%d failed (%s); using their trial times", st.key.describe(), b,
                        reply.get("reason"))
            best = min((t for t, _ in ok), key=lambda t: t.user_attrs["ms"][str(b)])
            finalists = [(t.user_attrs["config"], t.user_attrs["ms"][str(b)]) for t, _ in ok]
            self._final_entry(st, b, best, None, finalists, dict(finalists).get(st.default_name))
            return
        medians = [timing.median(r) for r in reply["rounds"]]
        order = sorted(range(len(ok)), key=lambda i: medians[i])
        win = order[0]
        finalists = [(ok[i][0].user_attrs["config"], medians[i]) for i in order]
        self._final_entry(st, b, ok[win][0], (medians[win], timing.spread(reply["rounds"][win])), finalists,
                          dict(finalists).get(st.default_name))

    def _final_entry(self, st: _Study, b: int, trial, retimed, finalists: list, default_ms=None) -> None:
        st.finalize_jobs -= len(st.finals[b]["trials"])
        cfg = suggest_from_params(st.key, trial.params)
        if retimed is not None:
            ms, spread = retimed
        else:
            ms = trial.user_attrs["ms"][str(b)]
            t = trial.user_attrs.get("timings", {}).get(str(b), {})
            spread = (t["max_ms"] - t["min_ms"]) / t["min_ms"] if t.get("min_ms") else 0.0
        problem = bench_problem(b, st.key.head_dim, st.key.causal, self.opt.tokens)
        counts = trial_counts(st.study)
        entry = {
            "device": st.key.device, "template": st.key.template, "dtype": st.key.dtype,
            "head_dim": st.key.head_dim, "causal": st.key.causal, "seq_bucket": b, "config": cfg.to_dict(),
            "problem": {"batch": problem["batch"], "heads": problem["heads_q"], "seq": b},
            "ms": round(ms, 5), "tflops": round(flops(problem) / (ms * 1e9), 2),
            "max_rel_error": float(trial.user_attrs.get("rel_error") or 0.0),
            "trials": {"run": counts["run"], "complete": counts["complete"], "pruned": counts["pruned"],
                       "failed": counts["failed"]},
            "spread": round(spread, 4),
            "finalists": [{"name": n, "ms": round(v, 5)} for n, v in finalists],
            "default_ms": round(default_ms, 5) if default_ms else None,
            "nvrtc": self.info.get("nvrtc", "0"), "driver": self.info.get("driver", "0"),
            "autoflash": _version(), "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        st.entries.append(entry)
        if st.finalize_jobs <= 0:
            st.phase = "done"
            self.progress("study_done", key=st.key, entries=st.entries)

    def _result(self, st: _Study) -> TuneResult:
        return TuneResult(st.key, st.study.study_name, sorted(st.entries, key=lambda e: e["seq_bucket"]),
                          trial_rows(st.study), trial_counts(st.study))


def suggest_from_params(key: StudyKey, params: dict) -> KernelConfig:
    """The config a finished trial's params describe."""
    from autoflash.variants import VARIANTS

    name = params["template"]
    arch = next(a for a in store.compatible_archs(key.arch) if a in VARIANTS[name].archs)
    fields = {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith(name + ".")}
    return KernelConfig(template=name, arch=arch, dtype=key.dtype, head_dim=key.head_dim, causal=key.causal, **fields)


def _version() -> str:
    from autoflash import __version__

    return __version__


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child its parent has not reaped yet (a zombie) still answers kill(pid, 0)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


# --------------------------------------------------------------- listings
def trial_counts(study) -> dict:
    from optuna.trial import TrialState

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


def write_log(path: Path, results: list[TuneResult], stats: Stats, info: dict) -> None:
    data = {"device": info, "stats": dataclasses.asdict(stats) | {"gpu_idle": stats.gpu_idle},
            "studies": {r.study_name: {"counts": r.counts, "trials": r.trials} for r in results}}
    path.parent.mkdir(parents=True, exist_ok=True)
    store.atomic_write_text(Path(path), json.dumps(data, indent=1, default=str) + "\n")


# ----------------------------------------------------------- compile-only
@dataclass
class SpaceRow:
    """One config of a compile-only run."""

    config: KernelConfig
    status: str  # ok | rule | resources | compile-error
    reason: str = ""
    registers: int | None = None
    spills: int | None = None
    smem: int | None = None
    blocks_per_sm: int | None = None
    cached: bool = False


def compile_space(keys: list[StudyKey], knobs: dict | None = None, workers: int | None = None,
                  standin: dict | None = None, progress: Callable | None = None) -> list[SpaceRow]:
    """Render and compile every config of the keys' spaces that passes the template
    rules (no GPU needed), and prune what the arch's resources rule out."""
    from autoflash.variants import VARIANTS

    rows: list[SpaceRow] = []
    todo: list[KernelConfig] = []
    names = set()
    for key in keys:
        for cfg in space(key, knobs):
            if cfg.name in names:
                continue
            names.add(cfg.name)
            problems = cfg.problems()
            if problems:
                rows.append(SpaceRow(cfg, "rule", "; ".join(problems)))
            else:
                todo.append(cfg)
    pool = CompilePool(default_workers(reserve=0) if workers is None else workers, standin)
    try:
        for i, cfg in enumerate(todo):
            pool.submit(cfg, i)
        done = 0
        while done < len(todo):
            for i, res in pool.collect(timeout=0.5):
                done += 1
                cfg = todo[i]
                if not res["ok"]:
                    rows.append(SpaceRow(cfg, "compile-error", res["error"].strip().splitlines()[0][:300]))
                else:
                    rep = res["report"]
                    smem = VARIANTS[cfg.template].smem_bytes(cfg)
                    blocks, reasons = resource_check(cfg, rep, smem)
                    rows.append(SpaceRow(cfg, "resources" if reasons else "ok", "; ".join(reasons), rep["registers"],
                                         rep["spill_stores"] + rep["spill_loads"], smem, blocks, bool(res.get("cached"))))
                if progress:
                    progress("compiled", done=done, total=len(todo))
    finally:
        pool.close()
    return rows


# ------------------------------------------------------ checking entries
def verify_lengths(bucket: int) -> tuple[int, int]:
    """Lengths a tuned entry is re-checked at: its bucket, and an odd length (a partial last tile)."""
    return bucket, bucket // 2 + 1


def check_entry_offline(entry: dict) -> tuple[object, list[str]]:
    """Render and compile a tuned entry's config (no GPU): (CompiledKernel, problems).
    Problems: spills, shared memory over the arch's limit, registers no SM can hold."""
    from autoflash.compile import compile_kernel
    from autoflash.variants import VARIANTS

    cfg = KernelConfig.from_dict(entry["config"])
    ck = compile_kernel(cfg)
    smem = VARIANTS[cfg.template].smem_bytes(cfg)
    _, reasons = resource_check(cfg, dataclasses.asdict(ck.report), smem)
    return ck, reasons


def check_entry_on_gpu(entry: dict, device: int = 0, seed: int = 0) -> list[tuple[dict, object]]:
    """Run a tuned entry's kernel on this GPU against the float64 reference at its
    bucket's length and at an odd length: [(problem, reference.Check)]."""
    from autoflash.api import loaded_kernel
    from autoflash.launch import Problem
    from autoflash.verify import run_checked

    cfg = KernelConfig.from_dict(entry["config"])
    kernel = loaded_kernel(cfg, device)
    out = []
    for i, n in enumerate(verify_lengths(entry["seq_bucket"])):
        p = Problem(1, 4, 2, n, n, cfg.head_dim, cfg.causal)
        out.append((dataclasses.asdict(p), run_checked(kernel, p, seed=seed + i)))
    return out
