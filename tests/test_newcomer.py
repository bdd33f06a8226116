"""A newcomer's first run without a GPU (issue 18): every surprise met there is an error or a word."""
import logging

import pytest

from autoflash import store
from autoflash.cli import main
from autoflash.serve import dispatch


def test_usage_errors_take_one_line(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["tune", "--arch", "sm_99"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("autoflash tune: error: argument --arch: invalid choice: 'sm_99'")


@pytest.mark.parametrize("kind", ["file", "missing"])
def test_tuned_configs_variable_must_name_folders(tmp_path, monkeypatch, kind, capsys):
    target = tmp_path / "sm_90.json"
    if kind == "file":
        target.write_text("{}")
    monkeypatch.setenv(store.TUNED_ENV, str(target))
    with pytest.raises(store.StoreError, match="is a file" if kind == "file" else "does not exist"):
        store.search_dirs()
    assert main(["show"]) == 2
    assert "AUTOFLASH_TUNED_CONFIGS" in capsys.readouterr().err


def test_show_of_a_missing_storage_is_an_error_and_creates_nothing(tmp_path, capsys):
    missing = tmp_path / "tune.log"
    assert main(["show", "--storage", str(missing)]) == 2
    assert "no tuning storage at" in capsys.readouterr().err
    assert not missing.exists()
    assert main(["show", "--storage", f"sqlite:///{tmp_path / 'tune.db'}"]) == 2
    assert not (tmp_path / "tune.db").exists()


def test_export_says_when_it_exports_other_than_what_attention_serves(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(dispatch, "_chosen", {})
    with caplog.at_level(logging.WARNING, logger="autoflash"):
        assert main(["export", "--arch", "sm_90", "--out", str(tmp_path)]) == 0
    text = caplog.text
    assert "attention() serves flash_fwd_wgmma" in text and "cannot be exported" in text
    assert "exporting flash_fwd_mma" in text


def test_untuned_warning_names_no_empty_gpu(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(dispatch, "_warned", set())  # warned once per process: earlier tests may have
    monkeypatch.setattr(dispatch, "_chosen", {})
    with caplog.at_level(logging.WARNING, logger="autoflash"):
        assert main(["export", "--arch", "sm_89", "--out", str(tmp_path)]) == 0
    assert " on ;" not in caplog.text and "on any GPU" in caplog.text


def test_export_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    out = capsys.readouterr().out
    assert "default: bf16" in out and "default: 128" in out


def test_no_gpu_is_said_in_the_users_terms():
    from autoflash.kernels.device import no_gpu_reason

    assert "no NVIDIA driver" in no_gpu_reason("cudaErrorInsufficientDriver: CUDA driver version is insufficient")
    assert no_gpu_reason("something else") == "something else"


def _compile_only(tmp_path, *flags):
    return main(["tune", "--arch", "sm_90", "--compile-only", "--stand-in", "--out", str(tmp_path), *flags])


def test_compile_only_takes_served_configs_and_a_sample_unless_asked_for_all(tmp_path, capsys):
    assert _compile_only(tmp_path, "--dtype", "bf16", "--head-dim", "128", "--causal", "no") == 0
    out = capsys.readouterr().out
    assert "compiling the served configs and 2 more of 1 problem(s)" in out
    # the shipped tuned entry of this key is among what was compiled
    assert "flash_fwd_wgmma_sm_90a_bf16_d128_br128_bc128_w12_s3" in out
    sampled = int(out.split("sm_90: ")[1].split(" configs")[0])
    assert _compile_only(tmp_path, "--dtype", "bf16", "--head-dim", "128", "--causal", "no", "--whole-space") == 0
    whole = int(capsys.readouterr().out.split("sm_90: ")[1].split(" configs")[0])
    assert 3 <= sampled < whole


def test_timing_flags_without_a_gpu_are_named_as_ignored(tmp_path, capsys):
    _compile_only(tmp_path, "--dtype", "bf16", "--head-dim", "64", "--causal", "no", "--trials", "5", "--seq-len", "1024")
    assert "note: --trials, --seq-len only matter when kernels are timed: ignored here" in capsys.readouterr().out


def test_a_knob_matching_nothing_and_an_unsupported_head_dim_say_what_exists(tmp_path, capsys):
    assert _compile_only(tmp_path, "--dtype", "bf16", "--head-dim", "128", "--knob", "block_m=999") == 2
    err = capsys.readouterr().err
    assert "no config of the search space matches --knob block_m=999" in err and "block_m 16," in err
    assert _compile_only(tmp_path, "--head-dim", "77") == 2
    assert "the forward templates take" in capsys.readouterr().err
