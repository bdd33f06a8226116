"""What `autoflash tune` shows while it runs and when it is done."""
from __future__ import annotations

import sys

from tqdm import tqdm

from autoflash.cli.common import cfg_name, speed, table


class Progress:
    """One tqdm bar per problem key: trials done here out of the budget left, best time
    so far, failures. Bars only on a terminal (tqdm's disable=None); the summary table
    at the end is printed either way."""

    def __init__(self):
        self.bars = {}
        self.best = {}
        self.failed = {}
        self.count = {}  # per key (a disabled tqdm bar does not count)
        self.done = 0

    def __call__(self, event: str, **kw) -> None:
        if event == "start":
            for i, (key, todo) in enumerate(kw["studies"]):
                self.bars[key] = tqdm(total=todo, desc=key.describe(), unit="trial", position=i, leave=True,
                                      dynamic_ncols=True, file=sys.stderr, disable=None)
                self.failed[key] = self.count[key] = 0
        elif event == "trial":
            if kw.get("duplicate") or kw.get("stage") == "rules":
                return
            key = kw["key"]
            self.done += 1
            self.count[key] = self.count.get(key, 0) + 1
            if kw["state"] == "FAIL":
                self.failed[key] = self.failed.get(key, 0) + 1
            ms = kw.get("ms") or {}
            if kw["state"] == "COMPLETE" and ms:
                self.best[key] = min(self.best.get(key, float("inf")), min(ms.values()))
            bar = self.bars.get(key)
            if bar is not None:
                best = f"{self.best[key]:.3f} ms" if key in self.best else "-"
                bar.set_postfix_str(f"best {best}, failed {self.failed[key]}", refresh=False)
                bar.update(1)
        elif event == "study_done" and kw["entries"]:
            bar = self.bars.get(kw["key"])
            for e in kw["entries"]:
                line = f"  {kw['key'].describe()} N={e['seq_bucket']}: {cfg_name(e)} {e['ms']:.3f} ms {speed(e)}"
                (bar.write if bar is not None else print)(line)

    def close(self):
        for bar in self.bars.values():
            bar.close()


def print_summary(results) -> None:
    rows = []
    for r in results:
        c = r.counts
        for e in r.entries:
            vs = f"{e['default_ms'] / e['ms']:.2f}x" if e.get("default_ms") else "-"
            rows.append([r.key.describe(), e["seq_bucket"], cfg_name(e), f"{e['ms']:.3f}", speed(e),
                         f"{e['max_rel_error']:.1e}", vs, f"{100 * e['spread']:.1f}%",
                         f"{c['run']}/{c['pruned']}/{c['failed']}"])
        if not r.entries:
            rows.append([r.key.describe(), "-", "no correct config", "-", "-", "-", "-", "-",
                         f"{c['run']}/{c['pruned']}/{c['failed']}"])
    print()
    print(table(["problem", "N", "best config", "ms", "speed", "rel err", "vs default", "spread",
                  "trials run/pruned/failed"], rows))
