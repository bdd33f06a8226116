"""Reproduces, without a GPU, the paged tune's 1-trial bf16 d128 study (benchmarks/paged_tune_h200_2026-11-29_s4.log):
the stand-in runner takes 12 s for its first trial (a fresh machine's CuPy JIT) and 1 s for the others; the four
paged keys are tuned as the CLI orders them, --trials 16 --timeout 10, lookahead 17 (15 compile workers + 2).
The second study gets one ask while the first fills the pipeline, its --timeout clock starts there, and it has
expired when a slot frees: it ends with 1 trial. Prints each study's trial counts.

  python benchmarks/tune_timeout_repro.py
"""
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
_first = [True]


def on_trial(spec, config_name, trial_number):  # the stand-in runner's hook (runs in the runner process)
    time.sleep(spec["first"] if _first[0] else spec["sleep"])
    _first[0] = False


def main():
    from autoflash.runner.process import RunnerProcess
    from autoflash.runner.protocol import InfoRequest
    from autoflash.tuning.keys import StudyKey, TuneOptions
    from autoflash.tuning.tuner import Tuner

    spec = {"kind": "standin", "arch": "sm_90", "device_name": "NVIDIA H200", "overrides": {},
            "hook": f"{Path(__file__).resolve()}:on_trial", "first": 12.0, "sleep": 1.0}
    keys = [StudyKey.of("decode", "sm_90", "NVIDIA H200", None, dtype=dt, head_dim=d, m_tiles=1, paged=True)
            for dt in ("bf16", "fp16") for d in (64, 128)]
    runner = RunnerProcess(spec, timeout_s=60)
    try:
        tuner = Tuner(TuneOptions(trials=16, timeout=10, lookahead=17), runner, runner.call(InfoRequest()), workers=0,
                      standin=spec)
        for r in tuner.run(keys):
            print(r.key.describe(), r.counts)
    finally:
        runner.close()


if __name__ == "__main__":
    main()
