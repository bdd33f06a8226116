"""`autoflash report`: PNGs of a benchmark run and of tuning studies (stand-in studies here)."""
from pathlib import Path

import pytest

from autoflash import cli

pytest.importorskip("matplotlib", reason="matplotlib is not installed (pip install 'autoflash[report]')")

ROOT = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n"


def test_bench_plots_one_png_per_dtype_and_head_dim(tmp_path, capsys):
    bench = ROOT / "benchmarks" / "results_h100_2026-11-25.json"
    assert cli.main(["report", "--bench", str(bench), "--out", str(tmp_path)]) == 0
    pngs = sorted(tmp_path.glob("bench_*.png"))
    assert [p.name for p in pngs] == ["bench_bf16_d128.png", "bench_bf16_d64.png", "bench_fp16_d128.png",
                                      "bench_fp16_d64.png"]
    assert all(p.read_bytes().startswith(PNG) and p.stat().st_size > 10_000 for p in pngs)


def test_study_plots_one_png_per_study(tmp_path, capsys):
    storage = tmp_path / "study.log"
    assert cli.main(["tune", "--stand-in", "--arch", "sm_90", "--out", str(tmp_path), "--log", str(tmp_path / "l.json"),
                     "--storage", str(storage), "--dtype", "fp32", "--head-dim", "64", "--causal", "both",
                     "--seq-len", "1024", "--trials", "8"]) == 0
    capsys.readouterr()
    assert cli.main(["report", "--storage", str(storage), "--out", str(tmp_path / "r")]) == 0
    pngs = list((tmp_path / "r").glob("*.png"))
    assert len(pngs) == 2 and all(p.read_bytes().startswith(PNG) for p in pngs)


def test_report_needs_an_input(capsys):
    assert cli.main(["report"]) == 2
    assert "give --storage" in capsys.readouterr().err


def test_decode_bench_plots_one_png_per_head_dim_and_ratio(tmp_path):
    """bench_decode.py's JSON (rows with kv_bytes) gets GB/s plots beside the copy bandwidth."""
    bench = ROOT / "benchmarks" / "bench_decode_h200_2026-11-29_final.json"
    assert cli.main(["report", "--bench", str(bench), "--out", str(tmp_path)]) == 0
    pngs = sorted(p.name for p in tmp_path.glob("decode_*.png"))
    assert pngs == ["decode_d128_32q8kv.png", "decode_d128_8q1kv.png", "decode_d64_32q8kv.png", "decode_d64_8q1kv.png"]
    assert all((tmp_path / p).read_bytes().startswith(PNG) for p in pngs)
