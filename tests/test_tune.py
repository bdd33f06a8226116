"""The tuner's logic without a GPU: a deterministic stand-in runner and compiler
(runner.standin) drive every path of tuning.tuner.Tuner."""
import os

import optuna
import pytest

from autoflash import KernelConfig, store
from autoflash.ops.forward import FORWARD
from autoflash.runner.process import InlineRunner, RunnerProcess
from autoflash.runner.protocol import InfoRequest, KernelBinary, TrialRequest
from autoflash.runner.standin import StandInBackend, standin_speed
from autoflash.tuning.compile_only import compile_space
from autoflash.tuning.keys import StudyKey, TuneOptions
from autoflash.tuning.listing import stored_listing
from autoflash.tuning.space import heuristic_default, space, templates_for
from autoflash.tuning.storage import open_storage
from autoflash.tuning.tuner import Tuner
from standin_hooks import HOOK

DEVICE = "Stand-in GPU"
KEY = StudyKey.of("forward", "sm_90", DEVICE, None, dtype="fp32", head_dim=64, causal=False)
# A small slice of the simt space: 3 x 2 x 2 x 2 = 24 configs, some of which break the rules.
KNOBS = {"block_m": (32, 64, 128), "block_n": (32, 64), "warps": (4, 8), "thread_m": (4, 8)}
BUCKETS = (1024, 4096)


def standin(overrides=None):
    return {"kind": "standin", "arch": "sm_90", "device_name": DEVICE, "overrides": overrides or {}}


def run(overrides=None, key=KEY, **opts):
    spec = standin(overrides)
    runner = InlineRunner(StandInBackend(spec))
    options = TuneOptions(**{"trials": 64, "buckets": BUCKETS, "knobs": KNOBS, **opts})
    tuner = Tuner(options, runner, runner.call(InfoRequest()), workers=0, standin=spec)
    (result,) = tuner.run([key])
    return result, tuner


def valid_configs(key=KEY):
    return [c for c in space(key, KNOBS) if not c.problems()]


def by_state(result, state):
    return [r for r in result.trials if r["state"] == state and r["duplicate_of"] is None]


def test_space_has_rule_breakers_and_valid_configs():
    configs = space(KEY, KNOBS)
    assert len(configs) == 24
    assert 0 < len(valid_configs()) < 24


def test_prunes_rule_breakers_before_compiling_with_the_reason():
    result, tuner = run(sampler="exhaustive")
    pruned = [r for r in by_state(result, "PRUNED") if r["reason"].startswith("rule:")]
    invalid = {c.name for c in space(KEY, KNOBS) if c.problems()}
    # exhaustive enqueues valid configs only: rule-breakers come from the sampler (next test)
    assert not pruned and not invalid & {r["config"] for r in result.trials}
    result, tuner = run(sampler="tpe", trials=12, seed=3)
    pruned = [r for r in result.trials if r["reason"].startswith("rule:")]
    assert pruned, "TPE proposed no rule-breaker; the space should make it likely"
    for r in pruned:
        assert r["config"] in invalid
        assert r["registers"] is None  # never compiled


def test_failures_are_recorded_with_reasons_and_never_win():
    ranked = sorted(valid_configs(), key=lambda c: -standin_speed(c))
    fastest, second, third, fourth, fifth = (c.name for c in ranked[:5])
    overrides = {
        fastest: {"wrong": 0.5},  # the fastest config gives a wrong answer
        second: {"compile_error": "error: identifier 'x' is undefined"},
        third: {"launch_error": "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES"},
        fourth: {"spills": 64},
    }
    result, _ = run(overrides, sampler="exhaustive")
    rows = {r["config"]: r for r in result.trials}
    assert rows[fastest]["state"] == "FAIL" and "wrong answer" in rows[fastest]["reason"]
    assert rows[second]["state"] == "FAIL" and rows[second]["reason"].startswith("compile error:")
    assert "identifier 'x'" in rows[second]["reason"]
    assert rows[third]["state"] == "FAIL" and "OUT_OF_RESOURCES" in rows[third]["reason"]
    assert rows[fourth]["state"] == "PRUNED" and "spills 64 bytes" in rows[fourth]["reason"]
    assert len(result.entries) == len(BUCKETS)
    for e in result.entries:  # the fastest *correct* one wins
        assert e["config"]["block_m"] is not None
        assert KernelConfig.from_dict(e["config"]).name == fifth
    assert result.counts["failed"] == 3 and result.counts["pruned"] >= 1


def test_returns_the_fastest_correct_config_per_bucket_and_records_what_was_measured():
    result, tuner = run(sampler="exhaustive")
    best = max(valid_configs(), key=standin_speed)
    assert [e["seq_bucket"] for e in result.entries] == list(BUCKETS)
    for e in result.entries:
        store.validate_entry(e, "sm_90")
        assert KernelConfig.from_dict(e["config"]) == best
        problem = FORWARD.bench_problem(KEY.params, e["seq_bucket"], FORWARD.default_tokens)
        assert e["problem"] == {"batch": problem["batch"], "heads": problem["heads_q"], "seq": e["seq_bucket"]}
        expected_ms = FORWARD.work(problem) / (standin_speed(best) * 1e9)
        assert e["ms"] == pytest.approx(expected_ms, rel=1e-2)
        assert e["tflops"] == pytest.approx(standin_speed(best), rel=1e-2)
        names = [f["name"] for f in e["finalists"]]
        assert names[0] == best.name  # re-timed fastest first
        default = heuristic_default(KEY).name
        assert default in names and len(names) == (3 if default in names[:3] else 4)  # the default re-timed beside them
        assert e["default_ms"] == pytest.approx(e["finalists"][names.index(default)]["ms"])
        assert 0 <= e["spread"] < 0.01
        assert e["default_ms"] is not None and e["default_ms"] >= e["ms"]
        assert e["trials"]["run"] == len(valid_configs())
        assert e["device"] == DEVICE and e["driver"] == "13.0"


def test_study_is_seeded_with_the_heuristic_default():
    result, _ = run(sampler="tpe", trials=5)
    default = heuristic_default(KEY)
    assert result.trials[0]["config"] == default.name and result.trials[0]["state"] == "COMPLETE"


def test_trial_budget_counts_compiled_candidates_only():
    result, _ = run(sampler="tpe", trials=6, seed=1)
    counted = [r for r in result.trials if r["duplicate_of"] is None and not r["reason"].startswith("rule:")]
    assert len(counted) == 6


def test_far_slower_configs_stop_early_as_pruned():
    result, _ = run(sampler="exhaustive", slower_factor=1.05)
    early = [r for r in result.trials if r["reason"].startswith("stopped early")]
    assert early, "with a 1.05x threshold some configs must stop early"
    assert all(r["state"] == "PRUNED" for r in early)
    best = max(valid_configs(), key=standin_speed)
    assert all(KernelConfig.from_dict(e["config"]) == best for e in result.entries)


def test_no_correct_config_gives_no_entry():
    result, _ = run({c.name: {"wrong": 1.0} for c in valid_configs()}, sampler="exhaustive")
    assert result.entries == []
    assert result.counts["failed"] == len(valid_configs())


def test_fixed_template_is_part_of_the_key():
    key = StudyKey.of("forward", "sm_90", DEVICE, "flash_fwd_simt", dtype="fp32", head_dim=64, causal=False)
    result, _ = run(key=key, sampler="exhaustive")
    assert result.entries and all(e["template"] == "flash_fwd_simt" for e in result.entries)
    assert "|flash_fwd_simt|" in result.study_name


def test_every_template_supporting_the_problem_competes():
    key = StudyKey.of("forward", "sm_90", DEVICE, None, dtype="fp16", head_dim=64, causal=False)
    names = {t.name for t, _ in templates_for("forward", "sm_90", key.params)}
    assert "flash_fwd_simt" in names and len(names) >= 2  # simt plus the tensor-core templates
    assert {c.template for c in space(key)} == names
    fp32 = dict(key.params, dtype="fp32")
    assert templates_for("forward", "sm_90", fp32) and all(
        t.name == "flash_fwd_simt" for t, _ in templates_for("forward", "sm_90", fp32))


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_resumes_from_storage(tmp_path, kind):
    url = str(tmp_path / "tune.log") if kind == "journal" else f"sqlite:///{tmp_path / 'tune.db'}"
    first, _ = run(sampler="tpe", trials=4, seed=5, storage=url)
    second, _ = run(sampler="tpe", trials=9, seed=5, storage=url)
    assert second.study_name == first.study_name
    counted = [r for r in second.trials if r["duplicate_of"] is None and not r["reason"].startswith("rule:")]
    assert len(counted) == 9  # 4 from the first run + 5 more, not 9 new ones
    assert len({r["config"] for r in counted}) == 9  # nothing already tried is tried again
    assert [r["number"] for r in second.trials[:len(first.trials)]] == [r["number"] for r in first.trials]
    listing = stored_listing(url)
    assert list(listing) == [first.study_name] and len(listing[first.study_name]) == len(second.trials)


def test_resume_marks_trials_of_a_dead_process_failed(tmp_path):
    url = str(tmp_path / "tune.log")
    first, _ = run(sampler="tpe", trials=3, storage=url)
    study = optuna.load_study(study_name=first.study_name, storage=open_storage(url))
    t = study.ask()  # a trial a killed `autoflash tune` left RUNNING
    t.set_user_attr("worker", f"{os.uname().nodename}:999999999")
    t.set_user_attr("counted", True)
    result, _ = run(sampler="tpe", trials=5, storage=url)
    row = next(r for r in result.trials if r["number"] == t.number)
    assert row["state"] == "FAIL"


def test_per_key_trial_listing_explains_every_trial():
    ranked = sorted(valid_configs(), key=lambda c: -standin_speed(c))
    result, _ = run({ranked[0].name: {"wrong": 0.5}}, sampler="tpe", trials=10, seed=2)
    assert result.trials
    for r in result.trials:
        assert r["state"] in ("COMPLETE", "PRUNED", "FAIL")
        if r["state"] == "COMPLETE":
            assert set(r["ms"]) == {str(b) for b in BUCKETS} and all(v > 0 for v in r["ms"].values())
        else:
            assert r["reason"], f"trial {r['number']} ({r['state']}) has no reason"


def test_tuner_with_real_processes():
    """The runner in a subprocess and a compile pool of 1 process, as a real run has them."""
    spec = standin({})
    runner = RunnerProcess(spec, timeout_s=60)
    try:
        info = runner.call(InfoRequest())
        assert info.ok and info.device_name == DEVICE
        tuner = Tuner(TuneOptions(trials=6, buckets=BUCKETS, knobs=KNOBS, sampler="tpe"), runner, info, workers=1,
                      standin=spec)
        (result,) = tuner.run([KEY])
    finally:
        runner.close()
    assert len(result.entries) == len(BUCKETS)
    assert result.counts["complete"] >= 1


def test_runner_process_survives_a_crash_and_a_fault():
    name = valid_configs()[0].name
    trial = TrialRequest(1, KernelBinary(valid_configs()[0].to_dict()))
    runner = RunnerProcess(dict(standin({}), hook=HOOK, crash={name: 3}), timeout_s=60)
    try:
        reply = runner.call(trial)
        assert reply.status == "fail" and "died (exit code 3)" in reply.reason
        assert runner.call(InfoRequest()).ok  # a fresh runner took over
        assert runner.restarts == 1
    finally:
        runner.close()
    runner = RunnerProcess(standin({name: {"launch_error": "illegal address", "fatal": True}}), timeout_s=60)
    try:
        reply = runner.call(trial)
        assert reply.status == "fail" and "illegal address" in reply.reason
        assert runner.call(InfoRequest()).ok and runner.restarts == 1
    finally:
        runner.close()


def test_runner_process_cuts_a_hung_trial_at_its_own_limit(tmp_path):
    trial = TrialRequest(1, KernelBinary(valid_configs()[0].to_dict()))
    runner = RunnerProcess(dict(standin({}), hook=HOOK, hang=f"0:{tmp_path / 'hung'}"), timeout_s=60)
    try:
        reply = runner.call(trial, timeout=2)
        assert reply.status == "fail" and "timed out after 2 s" in reply.reason, reply.reason
        assert runner.call(InfoRequest()).ok and runner.restarts == 1  # replaced; the marker stops a 2nd hang
    finally:
        runner.close()


def test_runner_reports_no_gpu_as_data():
    runner = RunnerProcess({"kind": "nonexistent"}, timeout_s=60)
    try:
        reply = runner.call(InfoRequest())
    finally:
        runner.close()
    assert reply.ok is False and "unknown runner kind" in reply.error


def test_compile_space_prunes_by_rules_and_resources():
    name = valid_configs()[0].name
    rows = compile_space([KEY], KNOBS, workers=0, standin=standin({name: {"spills": 8}}))
    status = {r.config.name: r for r in rows}
    assert status[name].status == "resources" and "spills 8 bytes" in status[name].reason
    assert {r.status for r in rows} == {"ok", "rule", "resources"}
    assert all(r.registers is not None for r in rows if r.status == "ok")


def test_templates_compete_and_the_fastest_template_wins():
    """bf16: every simt config is made 10x slower than any other, so a simt config must
    not win, although simt configs are in the study."""
    key = StudyKey.of("forward", "sm_90", DEVICE, None, dtype="bf16", head_dim=128, causal=False)
    spec = standin({c.name: {"speed": 0.5} for c in space(key) if c.template == "flash_fwd_simt"})
    runner = InlineRunner(StandInBackend(spec))
    tuner = Tuner(TuneOptions(trials=30, buckets=(4096,), sampler="random", seed=1), runner,
                  runner.call(InfoRequest()), workers=0, standin=spec)
    (result,) = tuner.run([key])
    tried = {r["config"].split("_sm_")[0] for r in result.trials if r["registers"] is not None}  # compiled
    assert "flash_fwd_simt" in tried and len(tried) >= 2
    (entry,) = result.entries
    assert entry["config"]["template"] != "flash_fwd_simt"


def test_warm_start_seeds_the_configs_tuned_for_the_key_before(monkeypatch):
    default = heuristic_default(KEY)
    other = next(c for c in valid_configs() if c.name != default.name)
    elsewhere = {"op": "forward", "dtype": "fp32", "head_dim": 128, "causal": False, "config": default.to_dict()}
    tuned = {"op": "forward", "dtype": "fp32", "head_dim": 64, "causal": False, "config": other.to_dict()}
    monkeypatch.setattr(store, "entries_for_arch", lambda arch: [elsewhere, tuned])
    result, _ = run(sampler="tpe", trials=3, warm_start=True)
    first = [r["config"] for r in sorted(result.trials, key=lambda r: r["number"])][:2]
    assert first == [default.name, other.name]  # the default, then the other GPU's winner for this key
    result, _ = run(sampler="tpe", trials=3, seed=5)
    assert [r["config"] for r in sorted(result.trials, key=lambda r: r["number"])][0] == default.name


def test_timeout_counts_from_a_study_s_first_candidate_on_the_gpu():
    """A study whose candidates wait behind another study's slow first trial keeps its --timeout: the clock
    starts when its first candidate reaches the runner, not when it was asked (the H200 paged-decode tune
    ended a study with 1 trial that way)."""
    keys = [KEY, StudyKey.of("forward", "sm_90", DEVICE, None, dtype="fp32", head_dim=64, causal=True)]
    spec = {**standin({}), "hook": HOOK, "first_sleep": 1.5}
    runner = InlineRunner(StandInBackend(spec))
    options = TuneOptions(trials=4, timeout=1.0, lookahead=5, buckets=BUCKETS, knobs=KNOBS, sampler="random")
    tuner = Tuner(options, runner, runner.call(InfoRequest()), workers=0, standin=spec)
    first, second = tuner.run(keys)
    assert second.counts["complete"] >= 2, second.counts


def test_a_journal_lock_left_by_a_killed_worker_is_broken_after_the_grace(tmp_path, monkeypatch):
    """A worker SIGKILLed while appending leaves the journal's lock behind; the next run
    breaks it after JOURNAL_LOCK_GRACE_S (1 s here) instead of Optuna's default 30 s."""
    import time
    import warnings

    from autoflash.tuning import storage

    monkeypatch.setattr(storage, "JOURNAL_LOCK_GRACE_S", 1)
    path = tmp_path / "study.journal"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna finds 1 s a small grace
        journal = storage.open_storage(str(path))
    os.symlink(path, str(path) + ".lock")  # the lock as a killed writer leaves it
    started = time.monotonic()
    optuna.create_study(study_name="after-a-kill", storage=journal)
    assert 1 <= time.monotonic() - started < 15
