"""The operation contract: what one kernel family tells the pipeline about itself.

An operation (dense forward, split-KV decode, backward, ...) is a subclass of
Operation registered with autoflash.ops.register. The tuner, runner, store, CLI and
compile cache handle every operation alike through these members; nothing outside
the operation's own module knows its fields. What crosses a process boundary is plain
data: a problem is a dict of ints/bools/strings, a key is a dict, a config is a dict.

Names used below:
  key      the problem key a tuned entry is for: {"dtype": ..., <key_fields>...}
           (forward: dtype, head_dim, causal). One study tunes one key.
  bucket   the run-time size the winner depends on (forward: the sequence length);
           each key is timed at every bucket and gets one tuned entry per bucket.
  problem  one concrete launch shape, a dict the op turns into its own dataclass.
  kernel   a kernels.loaded.LoadedKernel: the config's compiled module on a GPU.
"""
from __future__ import annotations

from typing import Callable


# Units of the metrics an operation reports its speed in: TFLOP/s and GB/s.
METRIC_SCALE = {"tflops": 1e12, "gbps": 1e9}

class Operation:
    """Base class of an operation. Class attributes first, then the hooks."""

    name: str = ""  # "forward", "decode", "backward", ...: the entries' "op" field
    config_class: type = None  # its kernels.config.OpConfig subclass
    templates: tuple = ()  # its kernels.template.Template instances
    key_fields: tuple[str, ...] = ()  # problem-key fields besides dtype, all also fields of config_class
    key_defaults: dict = {}  # key field -> the values `autoflash tune` tunes when no flag names them
    bucket_name: str = "N"  # what a bucket measures, for messages ("N", "cache length", ...)
    default_buckets: tuple[int, ...] = ()
    # What a timing is reported in: "tflops" (work() counts FLOPs) or "gbps" (work() counts bytes moved).
    metric: str = "tflops"
    default_tokens: int = 131072  # the size of the timed problems (see bench_problem)

    # ---------------------------------------------------- CPU side (no CUDA)
    def key_of(self, cfg) -> dict:
        """The problem key a config serves."""
        return {f: getattr(cfg, f) for f in ("dtype",) + self.key_fields}

    def check_key(self, key: dict) -> list[str]:
        """Why a key (e.g. from CLI flags or a tuned file) is malformed; [] when fine."""
        missing = [f for f in ("dtype",) + self.key_fields if f not in key]
        unknown = sorted(set(key) - {"dtype", *self.key_fields})
        return ([f"missing key field(s) {missing}"] if missing else []) + (
            [f"unknown key field(s) {unknown}"] if unknown else [])

    def describe_key(self, key: dict) -> str:
        """A short human label, e.g. 'fp16 d128 causal'."""
        return " ".join(str(key[f]) for f in ("dtype",) + self.key_fields)

    def bench_problem(self, key: dict, bucket: int, tokens: int) -> dict:
        """The problem a candidate is timed on at a bucket; `tokens` sizes it so every
        bucket fills the GPU."""
        raise NotImplementedError

    def check_problems(self, key: dict) -> list[dict]:
        """The problems every candidate must get right before it is timed (odd sizes,
        partial tiles, GQA...)."""
        raise NotImplementedError

    def verify_problems(self, key: dict, bucket: int) -> list[dict]:
        """The problems `autoflash verify` re-checks a tuned entry of this bucket on."""
        raise NotImplementedError

    def work(self, problem: dict) -> float:
        """FLOPs (metric "tflops") or bytes moved (metric "gbps") of one call on problem."""
        raise NotImplementedError

    def rate(self, problem: dict, ms: float) -> float:
        """The metric of one call taking `ms`: TFLOP/s (work in FLOPs) or GB/s (work in bytes)."""
        return self.work(problem) / (ms * 1e-3) / METRIC_SCALE[self.metric]

    def entry_problem(self, problem: dict) -> dict:
        """What a tuned entry records of its timed problem (positive ints, <= 8 fields)."""
        return {k: v for k, v in problem.items() if type(v) is int}

    def default(self, arch: str, key: dict):
        """The heuristic default config for a key on a GPU of `arch` (ValueError if none).
        It seeds every study and serves a problem nobody tuned."""
        raise NotImplementedError

    # -------------------------------------------- GPU side (runner process)
    # These run where CUDA lives and may import CuPy lazily. The runner calls them;
    # the tuner never does.
    def verify(self, kernel, problem: dict, seed: int):
        """Launch on fresh random inputs (outputs poisoned with NaN) and compare with the
        float64 reference. Returns an object with .passed, .rel_error and .describe()
        (ops.reference.Check)."""
        raise NotImplementedError

    def input_bytes(self, problem: dict, dtype: str) -> int:
        """Bytes of one input set (the runner rotates enough sets to defeat L2)."""
        raise NotImplementedError

    def make_inputs(self, problem: dict, dtype: str, seed: int):
        """One set of device arrays for timing: inputs, outputs and any workspace."""
        raise NotImplementedError

    def launcher(self, kernel, problem: dict, inputs) -> Callable[[], None]:
        """One call of the operation on `inputs` (every kernel it launches, e.g. split-KV
        then combine) on the current stream, with all host work (grid, arguments,
        descriptors) done beforehand: only launches sit between two timing events."""
        raise NotImplementedError
