"""Real GPU faults through the real runner: the GPU counterpart of test_tune.py's
stand-in overrides ("crash", "fatal", "wrong"). The kernels come from the test-only
fault_test template (autoflash/variants/fault_test.py): an out-of-bounds write that
poisons the CUDA context, a kernel that never returns, one that returns wrong values,
and a correct one. The first tests need no GPU (NVRTC only)."""
import dataclasses
import subprocess
import sys
import time

import pytest

from autoflash import runner, store, timing, tune
from autoflash.compile import compile_kernel
from autoflash.reference import TOLERANCE
from autoflash.runner import RunnerProcess
from autoflash.variants import VARIANTS, fault_test

pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")

GPU = {"kind": "gpu", "device": 0}
BUCKET = 256
TOKENS = 4096  # a tiny timed problem: these tests are about faults, not speed
HANG_TIMEOUT_S = 20.0  # a fresh runner's CUDA start-up plus a correct trial fits well inside


@pytest.fixture
def fault_variant(monkeypatch):
    """fault_test registered here and in every runner subprocess started meanwhile."""
    monkeypatch.setitem(VARIANTS, fault_test.VARIANT.name, fault_test.VARIANT)
    monkeypatch.setattr(runner, "serve", fault_test.serve)  # RunnerProcess starts runner.serve
    return fault_test.VARIANT


def trial_msg(fault: str, msg_id: int) -> dict:
    """A trial message as Tuner._feed_runner builds it."""
    cfg = fault_test.config(fault)
    ck = compile_kernel(cfg)
    return {"op": "trial", "id": msg_id, "config": cfg.to_dict(), "cubin": ck.cubin,
            "report": dataclasses.asdict(ck.report), "checks": tune.check_problems(cfg.head_dim, cfg.causal),
            "buckets": [{"bucket": BUCKET, "problem": tune.bench_problem(BUCKET, cfg.head_dim, cfg.causal, TOKENS),
                         "best_ms": None}],
            "timing": {"budget_ms": 5.0, "slower_factor": timing.SLOWER_FACTOR}, "seed": msg_id}


def assert_correct(reply: dict) -> None:
    assert reply["status"] == "ok", reply["reason"]
    assert reply["rel_error"] < TOLERANCE["fp32"]
    assert reply["ms"][str(BUCKET)] > 0


@pytest.fixture
def gpu_runner(fault_variant):
    r = RunnerProcess(GPU, timeout_s=120)
    yield r
    r.close()


# ------------------------------------------------------------------ no GPU
def test_fault_test_is_not_registered_by_default():
    code = "import autoflash, autoflash.tune, autoflash.variants as v; print(sorted(v.VARIANTS))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "flash_fwd_simt" in out and "fault_test" not in out
    assert "fault_test" not in VARIANTS  # nor left behind in this process by another test


@pytest.mark.parametrize("fault", fault_test.FAULTS)
def test_each_fault_renders_and_compiles_for_sm_90(fault_variant, fault):
    from autoflash.render import render

    cfg = fault_test.config(fault, dtype="bf16")
    source = render(cfg)
    assert f"constexpr int FAULT = {fault_test.FAULTS.index(fault)};" in source
    kernel = compile_kernel(cfg, use_cache=False)
    assert kernel.cubin[:4] == b"\x7fELF" and kernel.report.spills == 0
    assert fault_test.fault_of(cfg) == fault


def test_registered_is_undone():
    with fault_test.registered():
        assert fault_test.config("none").problems() == []
    assert "fault_test" not in VARIANTS


# --------------------------------------------------------------------- GPU
@pytest.mark.gpu
def test_out_of_bounds_write_fails_the_trial_and_the_runner_is_replaced(gpu_runner):
    assert_correct(gpu_runner.call(trial_msg("none", 1)))
    first_pid = gpu_runner.proc.pid
    reply = gpu_runner.call(trial_msg("oob", 2))
    assert reply["status"] == "fail" and reply["fatal"]
    assert reply["reason"].startswith("verify error") and "illegal" in reply["reason"].lower(), reply["reason"]
    assert gpu_runner.restarts == 1 and gpu_runner.proc is None  # the poisoned process is gone
    assert_correct(gpu_runner.call(trial_msg("none", 3)))
    assert gpu_runner.proc.pid != first_pid and gpu_runner.restarts == 1


@pytest.mark.gpu
def test_hang_is_cut_by_the_timeout_and_the_runner_is_replaced(gpu_runner):
    assert_correct(gpu_runner.call(trial_msg("none", 1)))
    t0 = time.monotonic()
    reply = gpu_runner.call(trial_msg("hang", 2), timeout=HANG_TIMEOUT_S)
    waited = time.monotonic() - t0
    assert reply["status"] == "fail" and "timed out" in reply["reason"], reply["reason"]
    assert HANG_TIMEOUT_S <= waited < HANG_TIMEOUT_S + 30
    assert gpu_runner.restarts == 1
    assert_correct(gpu_runner.call(trial_msg("none", 3)))


@pytest.mark.gpu
def test_wrong_values_are_a_wrong_answer_and_the_runner_goes_on(gpu_runner):
    reply = gpu_runner.call(trial_msg("wrong", 1))
    assert reply["status"] == "fail" and reply["reason"].startswith("wrong answer"), reply["reason"]
    assert reply["rel_error"] > TOLERANCE["fp32"] and not reply.get("fatal")
    pid = gpu_runner.proc.pid
    assert_correct(gpu_runner.call(trial_msg("none", 2)))
    assert gpu_runner.proc.pid == pid and gpu_runner.restarts == 0  # a wrong answer is no reason to restart


@pytest.mark.gpu
def test_tuner_records_every_fault_and_writes_the_correct_entry(fault_variant, tmp_path):
    r = RunnerProcess(GPU, timeout_s=HANG_TIMEOUT_S)
    try:
        info = r.call({"op": "info"})
        assert info["ok"], info
        key = tune.StudyKey("sm_90", info["device_name"], "fault_test", "fp32", 64, False)
        options = tune.TuneOptions(trials=8, buckets=(BUCKET,), tokens=TOKENS, sampler="exhaustive",
                                   knobs={"block_m": (64,), "warps": (2,)}, budget_ms=5.0, retime_rounds=2)
        (result,) = tune.Tuner(options, r, info, workers=0).run([key])
    finally:
        r.close()
    rows = {r["config"]: r for r in result.trials}
    expect = {"none": ("COMPLETE", ""), "wrong": ("FAIL", "wrong answer"), "oob": ("FAIL", "illegal"),
              "hang": ("FAIL", "timed out")}
    assert len(rows) == len(expect)
    for fault, (state, reason) in expect.items():
        row = rows[fault_test.config(fault).name]
        assert row["state"] == state, (fault, row)
        assert reason in row["reason"].lower(), (fault, row["reason"])
    assert result.counts["failed"] == 3 and result.counts["complete"] == 1
    (entry,) = result.entries
    assert entry["config"] == fault_test.config("none").to_dict() and entry["trials"]["failed"] == 3
    path = tmp_path / "sm_90.json"
    store.write(path, result.entries)
    assert store.read(path, "sm_90") == result.entries
