"""What a study tunes (StudyKey) and how (TuneOptions)."""
from __future__ import annotations

from dataclasses import dataclass

from autoflash.kernels.registry import OPERATIONS
from autoflash.runner import timing
from autoflash.key_flags import is_off, off_values


class TuneError(RuntimeError):
    """A tuning request that cannot run (bad arch, empty space, no GPU, ...)."""


@dataclass(frozen=True)
class StudyKey:
    """A problem key minus the bucket: what one study tunes. key holds the operation's
    problem key as (field, value) pairs in the op's order (dtype first)."""

    op: str
    arch: str
    device: str
    template: str | None  # None: every template of the op supporting the problem competes
    key: tuple

    @classmethod
    def of(cls, op: str, arch: str, device: str, template: str | None = None, **key) -> "StudyKey":
        operation = OPERATIONS[op]
        key = {**off_values(op), **key}  # a variant flag (or head_dim_v) left out is off
        errors = operation.check_key(key)
        if errors:
            raise TuneError(f"{op} key {key}: " + "; ".join(errors))
        return cls(op, arch, device, template, tuple((f, key[f]) for f in ("dtype",) + operation.key_fields))

    @property
    def params(self) -> dict:
        """The problem key as a dict, e.g. {"dtype": "bf16", "head_dim": 128, "causal": False}."""
        return dict(self.key)

    @property
    def operation(self):
        return OPERATIONS[self.op]

    def study_name(self, buckets, tokens: int) -> str:
        # fields that are off stay out: plain keys keep their study names
        values = "|".join(str(v) for f, v in self.key if not is_off(self.op, f, v))
        b = ",".join(str(x) for x in buckets)
        return f"autoflash|{self.op}|{self.arch}|{self.device}|{self.template or 'any'}|{values}|N{b}|T{tokens}"

    def describe(self) -> str:
        what = self.operation.describe_key(self.params)
        return (what if self.op == "forward" else f"{self.op} {what}") + (f" [{self.template}]" if self.template else "")

    def to_dict(self) -> dict:
        return {"op": self.op, "arch": self.arch, "device": self.device, "template": self.template,
                "key": self.params}

    @classmethod
    def from_dict(cls, d: dict) -> "StudyKey":
        return cls.of(d["op"], d["arch"], d["device"], d["template"], **d["key"])


@dataclass
class TuneOptions:
    trials: int = 64  # candidates compiled and timed per study (rule-pruned ones and duplicates not counted)
    timeout: float | None = None  # seconds per study, from its first candidate on the GPU
    seed: int = 0
    sampler: str = "auto"  # auto | tpe | exhaustive | random
    storage: str | None = None  # Optuna storage URL (sqlite:///..., a journal file path, any RDB URL)
    buckets: tuple[int, ...] | None = None  # None: the operation's default_buckets
    tokens: int | None = None  # size of the timed problems; None: the operation's default_tokens
    knobs: dict | None = None  # knob -> allowed values (restricts the space)
    finalists: int = 3
    warm_start: bool = False  # seed studies with the configs tuned for the same key on this arch before
    retime_rounds: int = 5
    budget_ms: float = timing.DEFAULT_BUDGET_MS
    slower_factor: float = timing.SLOWER_FACTOR
    lookahead: int | None = None  # candidates in the compile pipeline at once (default: workers + 2)
    # Several workers on one storage (campaign.py): "full" searches, waits for the other
    # workers' trials, then re-times finalists and makes entries; "search" only searches.
    role: str = "full"
    grace_s: float = 120.0  # a running trial whose worker's heartbeat is older than this is lost

    def buckets_for(self, op) -> tuple[int, ...]:
        return tuple(self.buckets) if self.buckets else op.default_buckets

    def tokens_for(self, op) -> int:
        return self.tokens or op.default_tokens


# Campaign options a worker reads back from the storage (campaign.py); not storage or role,
# which are the worker's own.
SHARED_OPTIONS = ("trials", "timeout", "seed", "sampler", "buckets", "tokens", "knobs", "finalists", "warm_start",
                  "retime_rounds", "budget_ms", "slower_factor", "grace_s")
