"""Real GPU faults through the real runner: the GPU counterpart of test_tune.py's
stand-in overrides ("crash", "fatal", "wrong"). The kernels come from the test-only
fault_test template (tests/fault_test_template.py): an out-of-bounds write that
poisons the CUDA context, a kernel that never returns, one that returns wrong values,
and a correct one. The first tests need no GPU (NVRTC only)."""
import dataclasses
import subprocess
import sys
import time

import pytest

import fault_test_template as fault_test
from autoflash import store
from autoflash.kernels.compile import compile_kernel
from autoflash.kernels.registry import TEMPLATES
from autoflash.ops import PLUGINS_ENV
from autoflash.ops.forward import FORWARD
from autoflash.ops.reference import TOLERANCE
from autoflash.runner.process import RunnerProcess
from autoflash.runner.protocol import BucketRequest, InfoRequest, KernelBinary, TimingOptions, TrialRequest
from autoflash.tuning.keys import StudyKey, TuneOptions
from autoflash.tuning.tuner import Tuner

pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")

GPU = {"kind": "gpu", "device": 0}
BUCKET = 256
TOKENS = 4096  # a tiny timed problem: these tests are about faults, not speed
HANG_TIMEOUT_S = 20.0  # a fresh runner's CUDA start-up plus a correct trial fits well inside


@pytest.fixture
def fault_variant(monkeypatch):
    """fault_test registered here, and (through $AUTOFLASH_PLUGINS) in every runner process started meanwhile."""
    monkeypatch.setenv(PLUGINS_ENV, fault_test.PLUGIN)
    monkeypatch.setitem(TEMPLATES, fault_test.TEMPLATE.name, fault_test.TEMPLATE)
    return fault_test.TEMPLATE


def trial_msg(fault: str, msg_id: int) -> TrialRequest:
    """A trial message as the Tuner builds it."""
    cfg = fault_test.config(fault)
    ck = compile_kernel(cfg)
    key = FORWARD.key_of(cfg)
    return TrialRequest(msg_id, KernelBinary(cfg.to_dict(), ck.cubin, dataclasses.asdict(ck.report)),
                        checks=FORWARD.check_problems(key),
                        buckets=[BucketRequest(BUCKET, FORWARD.bench_problem(key, BUCKET, TOKENS))],
                        timing=TimingOptions(budget_ms=5.0), seed=msg_id)


def assert_correct(reply) -> None:
    assert reply.status == "ok", reply.reason
    assert reply.rel_error < TOLERANCE["fp32"]
    assert reply.ms[str(BUCKET)] > 0


@pytest.fixture
def gpu_runner(fault_variant):
    r = RunnerProcess(GPU, timeout_s=120)
    yield r
    r.close()


# ------------------------------------------------------------------ no GPU
def test_fault_test_is_not_registered_by_default():
    code = ("import autoflash, autoflash.tuning.tuner; from autoflash.kernels.registry import TEMPLATES; "
            "print(sorted(TEMPLATES))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "flash_fwd_simt" in out and "fault_test" not in out
    assert "fault_test" not in TEMPLATES  # nor left behind in this process by another test


@pytest.mark.parametrize("fault", fault_test.FAULTS)
def test_each_fault_renders_and_compiles_for_sm_90(fault_variant, fault):
    from autoflash.kernels.render import render

    cfg = fault_test.config(fault, dtype="bf16")
    source = render(cfg)
    assert f"constexpr int FAULT = {fault_test.FAULTS.index(fault)};" in source
    kernel = compile_kernel(cfg, use_cache=False)
    assert kernel.cubin[:4] == b"\x7fELF" and kernel.report.spills == 0
    assert fault_test.fault_of(cfg) == fault


def test_registered_is_undone():
    with fault_test.registered():
        assert fault_test.config("none").problems() == []
    assert "fault_test" not in TEMPLATES


# --------------------------------------------------------------------- GPU
@pytest.mark.gpu
def test_out_of_bounds_write_fails_the_trial_and_the_runner_is_replaced(gpu_runner):
    assert_correct(gpu_runner.call(trial_msg("none", 1)))
    first_pid = gpu_runner.proc.pid
    reply = gpu_runner.call(trial_msg("oob", 2))
    assert reply.status == "fail" and reply.fatal
    assert reply.reason.startswith("verify error") and "illegal" in reply.reason.lower(), reply.reason
    assert gpu_runner.restarts == 1 and gpu_runner.proc is None  # the poisoned process is gone
    assert_correct(gpu_runner.call(trial_msg("none", 3)))
    assert gpu_runner.proc.pid != first_pid and gpu_runner.restarts == 1


@pytest.mark.gpu
def test_hang_is_cut_by_the_timeout_and_the_runner_is_replaced(gpu_runner):
    assert_correct(gpu_runner.call(trial_msg("none", 1)))
    t0 = time.monotonic()
    reply = gpu_runner.call(trial_msg("hang", 2), timeout=HANG_TIMEOUT_S)
    waited = time.monotonic() - t0
    assert reply.status == "fail" and "timed out" in reply.reason, reply.reason
    assert HANG_TIMEOUT_S <= waited < HANG_TIMEOUT_S + 30
    assert gpu_runner.restarts == 1
    assert_correct(gpu_runner.call(trial_msg("none", 3)))


@pytest.mark.gpu
def test_wrong_values_are_a_wrong_answer_and_the_runner_goes_on(gpu_runner):
    reply = gpu_runner.call(trial_msg("wrong", 1))
    assert reply.status == "fail" and reply.reason.startswith("wrong answer"), reply.reason
    assert reply.rel_error > TOLERANCE["fp32"] and not reply.fatal
    pid = gpu_runner.proc.pid
    assert_correct(gpu_runner.call(trial_msg("none", 2)))
    assert gpu_runner.proc.pid == pid and gpu_runner.restarts == 0  # a wrong answer is no reason to restart


@pytest.mark.gpu
def test_tuner_records_every_fault_and_writes_the_correct_entry(fault_variant, tmp_path):
    r = RunnerProcess(GPU, timeout_s=HANG_TIMEOUT_S)
    try:
        info = r.call(InfoRequest())
        assert info.ok, info
        key = StudyKey.of("forward", "sm_90", info.device_name, "fault_test", dtype="fp32", head_dim=64, causal=False)
        options = TuneOptions(trials=8, buckets=(BUCKET,), tokens=TOKENS, sampler="exhaustive",
                                   knobs={"block_m": (64,), "warps": (2,)}, budget_ms=5.0, retime_rounds=2)
        (result,) = Tuner(options, r, info, workers=0).run([key])
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
