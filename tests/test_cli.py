"""The `autoflash` command line: help, the main job without a GPU (compile-only on a
small space), a stand-in tuning run end to end, show, verify --compile-only, errors."""
import json
import subprocess
import sys

import pytest

from autoflash import cli, store
from autoflash.cli import tune as cli_tune
from autoflash.cli.progress import Progress
from autoflash.runner.process import InlineRunner
from autoflash.runner.protocol import InfoRequest
from autoflash.runner.standin import StandInBackend
from autoflash.tuning.keys import StudyKey

SMALL = ["--dtype", "fp32", "--head-dim", "64", "--causal", "no", "--knob", "block_m=64", "--knob", "block_n=32,64",
         "--knob", "warps=8"]


def has_gpu() -> bool:
    from conftest import gpu_unavailable_reason

    return gpu_unavailable_reason() is None


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert all(c in out for c in ("tune", "show", "verify"))
    with pytest.raises(SystemExit):
        cli.main(["tune", "--help"])
    out = capsys.readouterr().out
    for flag in ("--arch", "--dtype", "--head-dim", "--seq-len", "--causal", "--trials", "--timeout", "--seed",
                 "--storage", "--out", "--compile-only", "--template"):
        assert flag in out


def test_console_script_entry_point_runs():
    proc = subprocess.run([sys.executable, "-c", "import sys; from autoflash.cli import main; sys.exit(main())",
                           "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "tune" in proc.stdout


def test_compile_only_prints_the_resource_table(capsys):
    rc = cli.main(["tune", "--arch", "sm_90", "--compile-only", *SMALL])
    out = capsys.readouterr().out
    assert rc == 0
    assert "regs" in out and "spills" in out and "smem KB" in out
    assert "flash_fwd_simt_sm_90_fp32_d64_br64_bc64_w8_s1_tm4" in out
    assert "compiled and fit" in out


def test_compile_only_for_another_arch_prunes_by_its_limits(capsys):
    # sm_89 has 99 KB of shared memory per block: 128x128 fp32 D128 tiles fit the H100, not it
    rc = cli.main(["tune", "--arch", "sm_89", "--compile-only", "--all", "--dtype", "fp32", "--head-dim", "128",
                   "--causal", "no", "--knob", "block_m=128", "--knob", "block_n=128", "--knob", "warps=16",
                   "--knob", "thread_m=8"])
    out = capsys.readouterr().out
    assert rc == 1  # nothing fits
    assert "sm_89 allows 101376 B" in out


@pytest.mark.skipif("has_gpu()", reason="checks the no-GPU path of the main job")
def test_main_job_without_gpu_compiles_instead_and_says_so(capsys):
    rc = cli.main(["tune", "--arch", "sm_90", *SMALL])
    out = capsys.readouterr().out
    assert rc == 0
    assert "No usable GPU here" in out and "compiles the sm_90 search space" in out
    assert "regs" in out and "Traceback" not in out


def test_tuning_another_arch_than_the_gpus_is_an_error(capsys, monkeypatch):
    runner = InlineRunner(StandInBackend({"kind": "standin", "device_name": "NVIDIA H100 80GB HBM3"}))
    monkeypatch.setattr(cli_tune, "_probe_gpu", lambda device: (runner.call(InfoRequest()), runner))
    rc = cli.main(["tune", "--arch", "sm_89", *SMALL])
    err = capsys.readouterr().err
    assert rc == 2
    assert "is sm_90, not sm_89" in err and "--compile-only" in err


def test_stand_in_tune_writes_entries_and_show_lists_them(tmp_path, capsys):
    out_dir = tmp_path / "tuned"
    log = tmp_path / "log.json"
    rc = cli.main(["tune", "--stand-in", "--arch", "sm_90", "--out", str(out_dir), "--log", str(log),
                   "--seq-len", "1024,4096", "--trials", "6", *SMALL])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "best config" in out and "TFLOP/s" in out and "2 entries merged" in out
    entries = store.read(out_dir / "sm_90.json")
    assert sorted(e["seq_bucket"] for e in entries) == [1024, 4096]
    assert json.loads(log.read_text())["studies"]

    assert cli.main(["show", "--dir", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert "sm_90 / Stand-in GPU: 2 entries" in out and "flash_fwd_simt_sm_90_fp32_d64" in out

    assert cli.main(["show", "--log", str(log)]) == 0
    out = capsys.readouterr().out
    assert "COMPLETE" in out and "autoflash|forward|sm_90|Stand-in GPU|any|fp32|64|False" in out

    assert cli.main(["verify", "--compile-only", "--arch", "sm_90", "--dir", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert "2/2 sm_90 configs compiled: all pass" in out


def test_stand_in_tune_resumes_from_storage(tmp_path, capsys):
    args = ["tune", "--stand-in", "--arch", "sm_90", "--out", str(tmp_path), "--log", str(tmp_path / "l.json"),
            "--storage", str(tmp_path / "study.log"), "--seq-len", "1024", "--sampler", "tpe", *SMALL]
    assert cli.main(args + ["--trials", "2"]) == 0
    assert cli.main(args + ["--trials", "4"]) == 0
    capsys.readouterr()
    assert cli.main(["show", "--storage", str(tmp_path / "study.log")]) == 0
    out = capsys.readouterr().out
    assert out.count("COMPLETE") + out.count("PRUNED") + out.count("FAIL") >= 4


@pytest.mark.parametrize("argv,message", [
    (["tune", "--compile-only"], "--compile-only needs --arch"),
    (["tune", "--arch", "sm_90", "--compile-only", "--knob", "unroll=2"], "unknown knob"),
    (["tune", "--arch", "sm_90", "--compile-only", "--template", "flash_fwd_evil"], "unknown template"),
    (["tune", "--arch", "sm_90", "--compile-only", "--dtype", "fp8"], "unknown dtype"),
    (["tune", "--arch", "sm_90", "--compile-only", "--dtype", "fp32", "--head-dim", "44"], "nothing to tune"),
    (["tune", "--stand-in", "--arch", "sm_90"], "give --out"),
    (["verify", "--compile-only"], "--compile-only needs --arch"),
])
def test_errors_are_one_clear_line(argv, message, capsys):
    rc = cli.main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err, err


def test_bad_arguments_are_argparse_errors(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["tune", "--arch", "sm_99"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        cli.main(["tune", "--arch", "sm_90", "--knob", "block_m"])
    assert "NAME=V1,V2" in capsys.readouterr().err


def test_show_names_a_damaged_file(tmp_path, capsys):
    (tmp_path / "sm_90.json").write_text('{"schema": 1, "arch": "sm_90", "entries": [{"device": 1}]}')
    rc = cli.main(["show", "--dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "sm_90.json: entry 0" in err


@pytest.mark.skipif("has_gpu()", reason="checks the no-GPU error of verify")
def test_verify_without_gpu_points_to_compile_only(capsys):
    rc = cli.main(["verify"])
    err = capsys.readouterr().err
    assert rc == 2 and "no usable GPU" in err and "--compile-only" in err


def test_verbosity_flags_set_the_autoflash_log_level(monkeypatch):
    import logging

    seen = {}
    monkeypatch.setattr(logging, "basicConfig", lambda **kw: seen.update(kw))
    for flag, level in (("-v", logging.INFO), ("-q", logging.ERROR), (None, logging.WARNING)):
        cli.main([flag, "show", "--dir", "/nonexistent"] if flag else ["show", "--dir", "/nonexistent"])
        assert seen["level"] == level
    with pytest.raises(SystemExit):
        cli.main(["-v", "-q", "show"])


def test_progress_has_a_bar_per_problem_with_best_and_failures():
    fp16, bf16 = (StudyKey.of("forward", "sm_90", "GPU", None, dtype=d, head_dim=64, causal=False)
                  for d in ("fp16", "bf16"))
    progress = Progress()
    progress("start", studies=[(fp16, 4), (bf16, 3)])
    progress("trial", key=fp16, state="COMPLETE", ms={"1024": 0.5, "4096": 2.0})
    progress("trial", key=fp16, state="COMPLETE", ms={"1024": 0.4, "4096": 2.5})
    progress("trial", key=fp16, state="FAIL", ms=None)
    progress("trial", key=fp16, state="PRUNED", ms=None, stage="rules")  # not a candidate: not counted
    progress("trial", key=bf16, state="PRUNED", ms=None, duplicate=True)  # nor a duplicate
    assert progress.count == {fp16: 3, bf16: 0} and progress.bars[fp16].total == 4
    assert progress.best == {fp16: 0.4} and progress.failed == {fp16: 1, bf16: 0} and progress.done == 3
    progress.close()
