"""Regression tests over every committed tuned config (tuned_configs/*.json).

Without a GPU: each entry validates, renders and compiles for its arch with no
spills and shared memory within the arch's limit. With a GPU of that arch: each
entry's kernel matches the float64 reference at its bucket's length and at an odd
length (tolerances: autoflash/ops/reference.py)."""
from pathlib import Path

import pytest

from autoflash import store
from autoflash.kernels.archs import ARCHS
from autoflash.kernels.config import OpConfig
from autoflash.tuning.entries import check_entry_offline, check_entry_on_gpu


def _entries():
    params = []
    for path in sorted(store.shipped_dir().glob("*.json")):
        entries = store.read(path) if path.stem in ARCHS else []
        for i, e in enumerate(entries):
            name = OpConfig.from_dict(e["config"]).name
            key = "-".join(str(v) for v in store.problem_key(e).values())
            params.append(pytest.param(path, i, e, id=f"{path.stem}-{e['op']}-{key}-N{e['seq_bucket']}-{name}"))
    return params


ENTRIES = _entries()


def test_every_file_validates():
    files = sorted(store.shipped_dir().glob("*.json"))
    for path in files:
        assert path.stem in ARCHS, f"{path}: tuned_configs files must be named <arch>.json"
        store.read(path)  # raises StoreError naming file and entry


@pytest.mark.parametrize("path,index,entry", ENTRIES)
def test_entry_compiles_without_spills_within_limits(path: Path, index, entry):
    ck, problems = check_entry_offline(entry)
    assert not problems, f"{path} entry {index} ({ck.name}): " + "; ".join(problems)
    assert ck.report.spills == 0


@pytest.mark.gpu
@pytest.mark.parametrize("path,index,entry", ENTRIES)
def test_entry_matches_reference_on_its_gpu(path: Path, index, entry):
    from autoflash.kernels.device import device_arch

    arch, _ = device_arch(0)
    if path.stem != arch:
        pytest.skip(f"{path.name} is for {path.stem}; this GPU is {arch}")
    for problem, check in check_entry_on_gpu(entry, 0, seed=index):
        assert check.passed, f"{path} entry {index} at {problem}: {check.describe()}"
