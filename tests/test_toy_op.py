"""The seam between the pipeline and an operation: a toy operation defined only in the
tests (toy_op.py: its config, template, key, reference, bytes, launch) compiles with
NVRTC and tunes end to end through the stand-in runner and the unchanged tuner, store
and CLI; on a GPU, through the real runner as well."""
import json
from pathlib import Path

import pytest

from autoflash import cli, store
from autoflash.kernels.compile import compile_kernel
from autoflash.kernels.registry import OPERATIONS, TEMPLATES, register_operation, unregister_operation
from autoflash.ops import PLUGINS_ENV
from autoflash.runner.standin import standin_speed
from toy_op import TOY, ToyConfig

TOY_TEMPLATE = TOY.templates[0]


PLUGIN = str(Path(__file__).resolve().parent / "toy_op_plugin.py")


@pytest.fixture
def toy(monkeypatch):
    """The toy registered here, and (through $AUTOFLASH_PLUGINS) in every compile or runner
    process started meanwhile."""
    monkeypatch.setenv(PLUGINS_ENV, PLUGIN)
    register_operation(TOY)
    yield TOY
    unregister_operation(TOY.name)


def test_toy_is_registered_only_by_the_tests():
    assert "toy" not in OPERATIONS and "toy_scale" not in TEMPLATES


def test_toy_template_renders_and_compiles_with_nvrtc(toy):
    cfg = TOY.default("sm_90", {"dtype": "fp16", "width": 64})
    assert cfg.name == "toy_scale_sm_90_fp16_w64_b4_warps2"
    kernel = compile_kernel(cfg, use_cache=False)
    assert kernel.cubin[:4] == b"\x7fELF" and kernel.report.spills == 0


def test_toy_config_is_validated_like_any_other(toy):
    bad = {**TOY.default("sm_90", {"dtype": "fp32", "width": 64}).to_dict(), "block": 3}
    with pytest.raises(ValueError, match="block=3 is not one of"):
        ToyConfig.from_dict(bad)
    assert store.OpConfig.from_dict({**bad, "block": 8}).op == "toy"  # the config's template picks its class


def test_toy_tunes_end_to_end_through_the_cli_with_the_stand_in(toy, tmp_path, capsys):
    out, log = tmp_path / "tuned", tmp_path / "log.json"
    rc = cli.main(["tune", "--stand-in", "--op", "toy", "--arch", "sm_90", "--out", str(out), "--log", str(log),
                   "--dtype", "fp32", "--key", "width=32,64", "--trials", "20"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "GB/s" in text and "4 entries merged" in text
    entries = store.read(out / "sm_90.json")
    assert {(e["op"], e["width"], e["seq_bucket"]) for e in entries} == {
        ("toy", w, b) for w in (32, 64) for b in TOY.default_buckets}
    for e in entries:
        key = {"dtype": "fp32", "width": e["width"]}
        valid = [c for c in TOY_TEMPLATE.space("sm_90", key) if not c.problems()]
        best = max(valid, key=standin_speed)  # exhaustive: every valid config ran, the fastest won
        assert e["config"] == best.to_dict()
        problem = TOY.bench_problem(key, e["seq_bucket"], TOY.default_tokens)
        assert e["gbps"] == pytest.approx(standin_speed(best), rel=1e-2) and e["problem"] == problem
        assert e["ms"] == pytest.approx(TOY.work(problem) / (standin_speed(best) * 1e9) * 1e3, rel=1e-2)  # bytes / (GB/s), in ms
    assert all(s["trials"] for s in json.loads(log.read_text())["studies"].values())

    assert cli.main(["show", "--dir", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "toy" in shown and "fp32 64" in shown and "GB/s" in shown
    assert cli.main(["verify", "--compile-only", "--arch", "sm_90", "--dir", str(out)]) == 0  # NVRTC, every entry
    assert "4/4 sm_90 configs compiled: all pass" in capsys.readouterr().out


def test_toy_compile_only_prunes_by_rules_and_resources(toy, capsys):
    rc = cli.main(["tune", "--compile-only", "--op", "toy", "--arch", "sm_90", "--dtype", "fp16", "--key", "width=32",
                   "--knob", "block=1,16", "--all"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "toy_scale_sm_90_fp16_w32_b16_warps4" in text and "leaves some of the" in text


def test_toy_key_flags_are_checked(toy, capsys):
    assert cli.main(["tune", "--compile-only", "--op", "toy", "--arch", "sm_90", "--head-dim", "64"]) == 2
    assert "has no field(s) ['head_dim']" in capsys.readouterr().err


@pytest.mark.gpu
def test_toy_tunes_on_the_gpu_through_the_real_runner(toy, tmp_path):
    from autoflash.runner.process import RunnerProcess
    from autoflash.runner.protocol import InfoRequest
    from autoflash.tuning.keys import StudyKey, TuneOptions
    from autoflash.tuning.tuner import Tuner

    runner = RunnerProcess({"kind": "gpu", "device": 0})
    try:
        info = runner.call(InfoRequest())
        assert info.ok, info.error
        key = StudyKey.of("toy", info.arch, info.device_name, None, dtype="fp16", width=64)
        (result,) = Tuner(TuneOptions(trials=6, sampler="random", retime_rounds=2), runner, info, workers=0).run([key])
    finally:
        runner.close()
    assert len(result.entries) == len(TOY.default_buckets) and result.counts["complete"] >= 1
    for e in result.entries:
        assert e["gbps"] > 0 and e["max_rel_error"] < 1e-3
