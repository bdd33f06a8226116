"""Pictures of tuning and speed: `autoflash report`.

- plot_study: per Optuna study in a storage, the optimisation history (each trial's
  time and the best so far), time by tile size (block_m x block_n), and parameter
  importance, one PNG each.
- plot_bench: TFLOP/s against sequence length per backend (autoflash, SDPA flash,
  cuDNN, efficient), one PNG per dtype and head dim, from benchmarks/bench_attention.py's
  --out JSON; for benchmarks/bench_decode.py's JSON (rows with kv_bytes), GB/s against the
  KV-cache size per backend beside the copy bandwidth, one PNG per head dim and head ratio.
matplotlib is optional (`pip install 'autoflash[report]'`) and imported only here.
"""
from __future__ import annotations

import json
import logging
import re
import warnings
from pathlib import Path

from autoflash.tuning.storage import open_storage

log = logging.getLogger("autoflash")

BACKENDS = {"autoflash": "autoflash (tuned)", "sdpa_flash": "SDPA flash (FA2)", "sdpa_cudnn": "SDPA cuDNN",
            "sdpa_efficient": "SDPA efficient"}


def _pyplot():
    try:
        import matplotlib
    except ModuleNotFoundError:
        raise RuntimeError("autoflash report needs matplotlib: pip install 'autoflash[report]'") from None
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")[:150]


def plot_bench(results: Path, out_dir: Path) -> list[Path]:
    data = json.loads(Path(results).read_text())
    decode = data.get("rows") and "kv_bytes" in data["rows"][0]
    return (plot_decode_result if decode else plot_bench_result)(data, out_dir)


DECODE_BACKENDS = {"ours": "autoflash decode", "flash": "SDPA flash (FA2)", "cudnn": "SDPA cuDNN",
                   "efficient": "SDPA efficient"}


def _rows_by(data: dict, fields: tuple[str, ...]) -> list[tuple[tuple, list[dict]]]:
    """A benchmark's rows grouped by the values of fields (one figure per group), sorted."""
    groups: dict[tuple, list[dict]] = {}
    for row in data["rows"]:
        groups.setdefault(tuple(row[f] for f in fields), []).append(row)
    return sorted(groups.items())


def _save_figure(plt, fig, ax, path: Path, *, xlabel: str, ylabel: str, title: str, ncol: int = 1) -> Path:
    """The look every benchmark figure shares (log2 x axis, grid, small legend), written as a PNG."""
    ax.set_xscale("log", base=2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=ncol)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_decode_result(data: dict, out_dir: Path) -> list[Path]:
    """One PNG per (head dim, heads_q/heads_kv) from benchmarks/bench_decode.py's JSON: GB/s of each
    backend against the KV bytes a call reads, every batch size a point, and the copy bandwidth
    measured in the same run as a line."""
    plt = _pyplot()
    copy = max(c["copy"] for c in data.get("ceilings", [{"copy": 0}]))
    written = []
    for (d, hq, hkv), rows in _rows_by(data, ("head_dim", "heads_q", "heads_kv")):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for i, (backend, label) in enumerate(DECODE_BACKENDS.items()):
            pts = sorted((r["kv_bytes"] / 2**20, r[backend]["gbps"]) for r in rows if backend in r)
            if pts:
                ax.plot(*zip(*pts), "o" if backend != "ours" else "o-", color=f"C{i}", label=label, alpha=0.85)
        if copy:
            ax.axhline(copy, color="gray", linestyle="--", label=f"copy {copy:.0f} GB/s (same run)")
        written.append(_save_figure(
            plt, fig, ax, Path(out_dir) / f"decode_d{d}_{hq}q{hkv}kv.png", ylabel="GB/s",
            xlabel="K + V bytes per call (MiB; batch 1-256 x cache length)",
            title=f"{data.get('device', '')}: decode Nq=1, head dim {d}, {hq}/{hkv} heads"))
    return written


def plot_bench_result(data: dict, out_dir: Path) -> list[Path]:
    """One PNG per dtype and head dim from a benchmark result (`autoflash bench --json`)."""
    plt = _pyplot()
    written = []
    for (dtype, d), rows in _rows_by(data, ("dtype", "head_dim")):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for i, (backend, label) in enumerate(BACKENDS.items()):
            for causal, style in ((False, "-"), (True, "--")):
                pts = sorted((r["seq_len"], r[backend]) for r in rows if r["causal"] == causal)
                if pts:
                    ax.plot(*zip(*pts), style, marker="o", color=f"C{i}",
                            label=f"{label}{' causal' if causal else ''}")
        written.append(_save_figure(plt, fig, ax, Path(out_dir) / f"bench_{dtype}_d{d}.png",
                                    xlabel="sequence length N", ylabel="TFLOP/s",
                                    title=f"{data.get('device', '')}: {dtype}, head dim {d} (forward)", ncol=2))
    return written


def plot_study(storage: str, out_dir: Path) -> list[Path]:
    import optuna
    from optuna.trial import TrialState

    plt = _pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    store = open_storage(storage)
    written = []
    for summary in optuna.get_all_study_summaries(store):
        study = optuna.load_study(study_name=summary.study_name, storage=store)
        done = [t for t in study.trials if t.state == TrialState.COMPLETE and t.value is not None]
        if not done:
            log.info("study %s has no completed trial; nothing to plot", summary.study_name)
            continue
        stem = out_dir / _safe(summary.study_name)
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
        # optimisation history: each trial's objective and the best so far
        nums, vals = [t.number for t in done], [t.value for t in done]
        best = [min(vals[: i + 1]) for i in range(len(vals))]
        axes[0].scatter(nums, vals, s=12, label="trial")
        axes[0].step(nums, best, where="post", color="C3", label="best so far")
        axes[0].set(xlabel="trial", ylabel="objective (geo-mean ms)", title="optimisation history")
        axes[0].legend(fontsize=7)
        # time by tile size
        tiles = {}
        for t in done:
            m = re.search(r"_br(\d+)_bc(\d+)", t.user_attrs.get("config", ""))
            if m:
                tiles.setdefault(f"{m[1]}x{m[2]}", []).append(t.value)
        names = sorted(tiles, key=lambda s: tuple(int(x) for x in s.split("x")))
        axes[1].boxplot([tiles[n] for n in names], tick_labels=names) if names else None
        axes[1].set(xlabel="block_m x block_n", ylabel="ms", title="time by tile size")
        axes[1].tick_params(axis="x", rotation=60, labelsize=7)
        # parameter importance (needs at least two completed trials that differ)
        try:
            with warnings.catch_warnings():  # few trials per value: the estimate is rough, the plot says so
                warnings.simplefilter("ignore")
                imp = optuna.importance.get_param_importances(study)
        except (RuntimeError, ValueError) as exc:
            imp = {}
            log.info("no parameter importance for %s: %s", summary.study_name, exc)
        if imp:
            axes[2].barh(list(imp)[::-1], list(imp.values())[::-1])
        axes[2].set(xlabel="importance", title="parameter importance")
        fig.suptitle(f"{summary.study_name}  ({len(done)} completed trials; importance is a rough estimate)",
                     fontsize=8)
        fig.tight_layout()
        path = stem.with_suffix(".png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
