"""A study's search space: the templates that compete, their knobs, the Optuna
params a config is stored as ("template" and "<template>.<knob>"), and the resource
check that prunes a compiled kernel."""
from __future__ import annotations

import logging

from autoflash import store
from autoflash.kernels.archs import ARCHS, build_arch
from autoflash.kernels.config import OpConfig
from autoflash.key_flags import with_new_flags
from autoflash.kernels.registry import OPERATIONS, TEMPLATES, templates_of
from autoflash.tuning.keys import StudyKey, TuneError

log = logging.getLogger("autoflash")


def templates_for(op: str, arch: str, key: dict, templates=None) -> list[tuple]:
    """(template, the arch its configs are built for) of every registered template of
    the op that supports the problem on a GPU of this arch (sm_90 also takes sm_90a-only templates)."""
    mine = templates_of(op)
    if templates:
        unknown = sorted(set(templates) - set(mine))
        if unknown:
            raise TuneError(f"unknown template(s) {unknown}; the registered {op} templates: {sorted(mine)}")
    out = []
    for name, t in mine.items():
        if templates and name not in templates:
            continue
        use_arch = build_arch(t.archs, arch)
        if use_arch is not None and t.supports(use_arch, key):
            out.append((t, use_arch))
    return out


def check_knobs(knobs: dict | None, op: str = "forward", templates=None) -> None:
    if not knobs:
        return
    known = {k for name, t in templates_of(op).items() if not templates or name in templates for k in t.knobs}
    unknown = sorted(set(knobs) - known)
    if unknown:
        raise TuneError(f"unknown knob(s) {unknown}; the {op} templates' knobs are {sorted(known)}")


def _candidates(key: StudyKey) -> list[tuple]:
    return templates_for(key.op, key.arch, key.params, [key.template] if key.template else None)


def space(key: StudyKey, knobs: dict | None = None) -> list:
    """Every config of the study's search space, rule-breakers included."""
    return [cfg for t, arch in _candidates(key) for cfg in t.space(arch, key.params, knobs)]


def params_of(cfg) -> dict:
    params = {"template": cfg.template}
    for knob in TEMPLATES[cfg.template].knobs:
        params[f"{cfg.template}.{knob}"] = getattr(cfg, knob)
    return params


def suggest_config(trial, key: StudyKey, knobs: dict | None):
    """Ask Optuna for a config: the template first, then that template's knobs."""
    by_name = {t.name: (t, a) for t, a in _candidates(key)}
    name = trial.suggest_categorical("template", sorted(by_name))
    template, arch = by_name[name]
    values = {knob: trial.suggest_categorical(f"{name}.{knob}", list(allowed))
              for knob, allowed in template.restricted_knobs(knobs).items()}
    return template.config(arch, key.params, **values)


def config_from_params(key: StudyKey, params: dict):
    """The config a finished trial's params describe."""
    template = TEMPLATES[params["template"]]
    values = {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith(template.name + ".")}
    return template.config(build_arch(template.archs, key.arch), key.params, **values)


def heuristic_default(key: StudyKey):
    """The config a study is seeded with, or None."""
    try:
        if key.template:
            template = TEMPLATES[key.template]
            return template.default(build_arch(template.archs, key.arch), key.params)
        return OPERATIONS[key.op].default(key.arch, key.params)
    except Exception:  # no default for this problem: the study simply starts unseeded
        return None


def tuned_seeds(key: StudyKey) -> list:
    """Configs already tuned for this problem key on this arch (any device, any bucket), so
    a short study on a new GPU starts from the winners of the old one and ends at least as
    fast as them (each is re-timed and re-checked here like any trial)."""
    params = key.params
    seeds = {}
    try:
        entries = store.entries_for_arch(key.arch)
    except Exception as exc:  # an unreadable tuned file must not stop a study
        log.warning("tuning: no seeds from the tuned files (%s)", exc)
        return []
    for entry in entries:
        entry = with_new_flags(entry)  # a key field added after the entry was written reads as off
        if entry["op"] != key.op or any(entry.get(f) != v for f, v in params.items()):
            continue
        if key.template and entry["config"]["template"] != key.template:
            continue
        try:
            cfg = OpConfig.from_dict(entry["config"])
        except Exception:
            continue
        seeds.setdefault(cfg.name, cfg)
    return list(seeds.values())


def resource_check(cfg, report: dict, smem: int) -> tuple[int, list[str]]:
    """(estimated resident blocks per SM, reasons the compiled kernel is pruned)."""
    lim = ARCHS[cfg.arch]
    reasons = []
    spills = report["spill_stores"] + report["spill_loads"]
    if spills:
        reasons.append(f"spills {spills} bytes (registers {report['registers']})")
    if report.get("wgmma_serialized"):
        reasons.append("ptxas serialised its wgmma instructions (C75xx: e.g. too few registers for the pipeline)")
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
