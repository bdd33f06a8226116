"""autoflash bench's table (the timing itself needs a GPU: run by `autoflash bench` there)."""
from autoflash import bench


def _row(autoflash_tflops, cudnn_tflops, correct=True):
    row = {"dtype": "bf16", "head_dim": 128, "causal": False, "seq_len": 4096, "rel_err": 2e-3, "correct": correct,
           "autoflash": autoflash_tflops, "autoflash_spread": 0.01}
    for backend in bench.BACKENDS:
        row[backend], row[f"{backend}_spread"] = 300.0, 0.03
    row["sdpa_cudnn"] = cudnn_tflops
    return row


def test_table_reports_ratios_spread_and_summary():
    table = bench.format_table({"device": "GPU", "torch": "2.x", "rounds": 5,
                                "rows": [_row(660.0, 600.0), _row(540.0, 600.0, correct=False)]})
    lines = table.splitlines()
    assert "| 660 | 300 | 600 | 300 | 1.10x | 1.10x | 3.0% | ok" in lines[3]
    assert "0.90x" in lines[4] and "WRONG" in lines[4]
    assert lines[-1] == "vs cuDNN: median 1.00x, range 0.90-1.10x, at or above 1.0x in 1 of 2 rows"


def test_a_backend_that_refused_the_inputs_shows_as_nan_not_as_zero():
    row = _row(500.0, 600.0)
    row["sdpa_flash"] = row["sdpa_flash_spread"] = float("nan")
    assert "| nan |" in bench.format_row(row)


def test_cli_bench_without_a_usable_gpu_is_a_one_line_error(capsys):
    import importlib.util

    from autoflash.cli import main

    torch_with_gpu = importlib.util.find_spec("torch") is not None and __import__("torch").cuda.is_available()
    if torch_with_gpu:
        import pytest
        pytest.skip("torch sees a GPU here: the GPU run of autoflash bench is the benchmark itself")
    assert main(["bench", "--dtype", "bf16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("autoflash bench: error: ") and ("torch" in err[0])
