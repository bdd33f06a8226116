"""Compile-only: render and compile a search space with NVRTC, no GPU needed, and
say which configs fit the arch (`autoflash tune --compile-only`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from autoflash import store
from autoflash.kernels.config import OpConfig
from autoflash.kernels.registry import TEMPLATES
from autoflash.tuning.compile_pool import CompilePool, default_workers
from autoflash.tuning.keys import StudyKey
from autoflash.tuning.space import resource_check, space


@dataclass
class SpaceRow:
    """One config of a compile-only run."""

    config: object  # the op's config
    status: str  # ok | rule | resources | compile-error
    reason: str = ""
    registers: int | None = None
    spills: int | None = None
    smem: int | None = None
    blocks_per_sm: int | None = None
    cached: bool = False


def _first_configs(key: StudyKey, configs: list, sample: int) -> list:
    """What a quick look compiles of one key's space: the configs served for it (tuned
    entries of this arch, and the heuristic default), then `sample` more spread evenly
    over the rest."""
    by_name = {c.name: c for c in configs}
    served = []
    for entry in store.entries_for_arch(key.arch):
        if entry["op"] == key.op and store.problem_key(entry) == key.params:
            served.append(OpConfig.from_dict(entry["config"]).name)
    try:
        served.append(key.operation.default(key.arch, key.params).name)
    except ValueError:  # no default for this key: the sample alone
        pass
    chosen = list(dict.fromkeys(n for n in served if n in by_name))
    rest = [n for n in by_name if n not in chosen and not by_name[n].problems()]
    step = max(1, len(rest) // sample) if sample and rest else 0
    chosen += rest[::step][:sample] if step else []
    return [by_name[n] for n in chosen]


def compile_space(keys: list[StudyKey], knobs: dict | None = None, workers: int | None = None,
                  standin: dict | None = None, progress: Callable | None = None,
                  sample: int | None = None) -> list[SpaceRow]:
    """Render and compile every config of the keys' spaces that passes the template
    rules (no GPU needed), and prune what the arch's resources rule out. With `sample`,
    only the served configs of each key and `sample` more (see _first_configs)."""
    rows: list[SpaceRow] = []
    todo: list = []
    names = set()
    for key in keys:
        configs = space(key, knobs)
        for cfg in configs if sample is None else _first_configs(key, configs, sample):
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
                    smem = TEMPLATES[cfg.template].smem_bytes(cfg)
                    blocks, reasons = resource_check(cfg, rep, smem)
                    rows.append(SpaceRow(cfg, "resources" if reasons else "ok", "; ".join(reasons), rep["registers"],
                                         rep["spill_stores"] + rep["spill_loads"], smem, blocks, bool(res.get("cached"))))
                if progress:
                    progress("compiled", done=done, total=len(todo))
    finally:
        pool.close()
    return rows
