"""The tuner's bookkeeping: a study in progress, a candidate in the pipeline, a
finalist re-timing job, and what a run returns."""
from __future__ import annotations

from dataclasses import dataclass, field

from autoflash.tuning.keys import StudyKey


@dataclass
class StudyState:
    key: StudyKey
    study: object  # optuna.Study
    buckets: tuple  # the bucket sizes timed
    tokens: int  # the size of the timed problems
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
    finals: dict = field(default_factory=dict)  # bucket -> Finals
    entries: list = field(default_factory=list)
    default_name: str | None = None
    running: dict = field(default_factory=dict)  # trial number -> optuna.Trial asked here, not yet told
    others_running: int = 0  # trials other workers are running (as of the last sync)
    waiting: int = 0  # queued trials nobody has taken yet
    last_sync: float = -1e9

    @property
    def operation(self):
        return self.key.operation

    def problem(self, bucket: int) -> dict:
        """The problem candidates are timed on at a bucket."""
        return self.operation.bench_problem(self.key.params, bucket, self.tokens)


@dataclass
class Candidate:
    """A trial's config on its way through the compile pool and the runner."""

    study: StudyState
    trial: object  # optuna.Trial
    cfg: object  # the op's config
    compiled: dict | None = None


@dataclass
class Finals:
    """The finalists of one bucket: their trials, then their compile results."""

    trials: list
    compiled: list
    ok: list = field(default_factory=list)  # (trial, compile result) of those that compiled


@dataclass
class FinalTag:
    """Compile-pool tag of a finalist recompiled for re-timing."""

    study: StudyState
    bucket: int
    index: int


@dataclass
class RetimeJob:
    study: StudyState
    bucket: int
    request: object  # runner.protocol.RetimeRequest (its id is set when sent)


@dataclass
class TuneResult:
    key: StudyKey
    study_name: str
    entries: list  # store entries, one per bucket with a correct config
    trials: list  # listing.trial_rows(study)
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
