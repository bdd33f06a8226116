"""Replays the first counted candidates of a decode paged tune study on the CPU (no GPU): the trial sequence
is deterministic until the first runner result, since the first ask loop fills the pipeline first. Same
sampler as the tuner (TPE, seed 0, n_startup 8), default enqueued first, rule-breakers and duplicates pruned.
It reproduced benchmarks/paged_tune_h200_2026-11-29_s4.log's totals (d64: 82 trials, fp16 d128: 173).

  python benchmarks/paged_tune_replay.py bf16 64
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import optuna  # noqa: E402
from optuna.trial import TrialState
from autoflash.tuning.keys import StudyKey
from autoflash.tuning.space import space, suggest_config, params_of, heuristic_default
from autoflash.tuning.storage import make_sampler
optuna.logging.set_verbosity(optuna.logging.WARNING)
dtype, d = sys.argv[1], int(sys.argv[2])
key = StudyKey.of("decode", "sm_90", "H200", None, dtype=dtype, head_dim=d, m_tiles=1, paged=True)
configs = space(key, None); valid=[c for c in configs if not c.problems()]
print(len(configs), len(valid))
study = optuna.create_study(direction="minimize", sampler=make_sampler("tpe", 0))
default = heuristic_default(key)
study.enqueue_trial(params_of(default), user_attrs={"config": default.name})
seen=set(); counted=[]
asks=0
while len(counted) < 16 and asks < 2000:
    t = study.ask(); asks+=1
    cfg = suggest_config(t, key, None)
    if cfg.problems():
        study.tell(t, state=TrialState.PRUNED); continue
    if cfg.name in seen:
        study.tell(t, state=TrialState.PRUNED); continue
    seen.add(cfg.name); counted.append((t.number, cfg.name))
for n, c in counted: print(n, c)
