"""store.py: the tuned_configs schema, rejection of damaged or hostile files with
errors naming file and entry, atomic writes, merging under a lock, and look-up."""
import json
import logging
import multiprocessing
import os

import pytest

from autoflash import store
from autoflash.serve import dispatch
from autoflash.kernels.registry import TEMPLATES
from autoflash.ops.forward_base import VARIANT_FLAGS
from conftest import fwd_key as K


def make_entry(dtype="fp32", head_dim=64, causal=False, bucket=4096, device="NVIDIA H100 80GB HBM3", ms=1.0,
               template=None, **config_changes):
    cfg = TEMPLATES["flash_fwd_simt"].default("sm_90", K(dtype, head_dim, causal)).replace(**config_changes)
    return {
        "op": "forward", "device": device, "template": template, "dtype": dtype, "head_dim": head_dim, "causal": causal,
        **{f: getattr(cfg, f) for f in VARIANT_FLAGS + ("head_dim_v",)}, "seq_bucket": bucket, "config": cfg.to_dict(), "problem": {"batch": 2, "heads": 16, "seq": bucket},
        "ms": ms, "tflops": 12.5, "max_rel_error": 1e-6,
        "trials": {"run": 10, "complete": 6, "pruned": 3, "failed": 1}, "spread": 0.01,
        "finalists": [{"name": cfg.name, "ms": ms}], "default_ms": 1.5, "nvrtc": "13.0", "driver": "13.0",
        "autoflash": "0.1.0", "date": "2026-11-25T05:00:00Z",
    }


def write_raw(path, entries, arch="sm_90", schema=2):
    path.write_text(json.dumps({"schema": schema, "arch": arch, "entries": entries}))


def test_roundtrip(tmp_path):
    path = tmp_path / "sm_90.json"
    entries = [make_entry(bucket=b) for b in (1024, 4096)]
    store.write(path, entries)
    assert store.read(path) == sorted(entries, key=lambda e: e["seq_bucket"])
    assert store.read(tmp_path / "sm_80.json") == []  # absent file: no entries


def test_schema_1_files_load_as_forward_entries(tmp_path):
    """Files written before operations existed (schema 1, no "op") still load."""
    old = [{k: v for k, v in make_entry(bucket=b).items() if k != "op"} for b in (1024, 4096)]
    write_raw(tmp_path / "sm_90.json", old, schema=1)
    assert [e["op"] for e in store.read(tmp_path / "sm_90.json")] == ["forward", "forward"]
    write_raw(tmp_path / "sm_90.json", old, schema=2)  # schema 2 requires "op"
    with pytest.raises(store.StoreError, match="op must be a registered operation"):
        store.read(tmp_path / "sm_90.json")


def _bad(entry_changes=None, drop=None, config_changes=None):
    e = make_entry()
    if config_changes:
        e["config"].update(config_changes)
    if drop:
        del e[drop]
    e.update(entry_changes or {})
    return e


HOSTILE = {
    "unknown field": (_bad({"evil": 1}), "unknown field"),
    "missing field": (_bad(drop="ms"), "missing field(s) ['ms']"),
    "ms not a number": (_bad({"ms": "fast"}), "ms must be"),
    "negative ms": (_bad({"ms": -1.0}), "ms must be"),
    "bool as head_dim": (_bad({"head_dim": True}), "head_dim must be"),
    "device with newline": (_bad({"device": "H100\n#include <evil>"}), "device must be"),
    "unknown template": (_bad(config_changes={"template": "flash_fwd_evil"}), "template 'flash_fwd_evil' is not one of"),
    "injection in template": (_bad(config_changes={"template": 'x"; system("rm -rf /"); //'}), "config:"),
    "injection in dtype": (_bad(config_changes={"dtype": "float; asm(\"trap;\")"}), "config:"),
    "out-of-range tile": (_bad(config_changes={"block_m": 4096}), "block_m=4096 is not one of"),
    "string tile": (_bad(config_changes={"block_n": "64"}), "block_n must be an integer"),
    "unknown config key": (_bad(config_changes={"unroll": 4}), "unknown config key"),
    "config for another arch": (_bad(config_changes={"arch": "sm_80"}), "config is for sm_80"),
    "config differs from key": (_bad({"head_dim": 128}), "differ from the entry's key"),
    "bad trials": (_bad({"trials": {"run": -1, "complete": 0, "pruned": 0, "failed": 0}}), "trials must be"),
    "bad date": (_bad({"date": "yesterday"}), "date must be"),
    "bad finalist": (_bad({"finalists": [{"name": "a b", "ms": 1.0}]}), "finalists must hold"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_entries_are_rejected_naming_file_and_entry(tmp_path, case):
    entry, message = HOSTILE[case]
    path = tmp_path / "sm_90.json"
    write_raw(path, [make_entry(bucket=1024), entry])
    with pytest.raises(store.StoreError) as err:
        store.read(path)
    text = str(err.value)
    assert str(path) in text and "entry 1" in text and message in text, text


@pytest.mark.parametrize("content,message", [
    ('{"schema": 1, "arch": "sm_90", "entries": [', "not valid JSON"),  # truncated
    ('{"schema": 1, "arch": "sm_90", "arch": "sm_80", "entries": []}', "duplicate key"),
    ('{"schema": 1, "arch": "sm_90", "entries": [], "extra": 1}', "must be an object with keys"),
    ('{"schema": 3, "arch": "sm_90", "entries": []}', "schema 3 is not supported"),
    ('{"schema": 1, "arch": "sm_89", "entries": []}', "holds arch 'sm_89'"),
    ('{"schema": 1, "arch": "sm_90", "entries": {}}', "entries must be a list"),
    ('[1, 2, 3]', "must be an object"),
    ('{"schema": 1, "arch": "sm_90", "entries": [' + "[" * 100000 + "]" * 100000 + ']}', "not valid JSON"),
])
def test_damaged_files_are_rejected(tmp_path, content, message):
    path = tmp_path / "sm_90.json"
    path.write_text(content)
    with pytest.raises(store.StoreError) as err:
        store.read(path)
    assert str(path) in str(err.value) and message in str(err.value), str(err.value)


def test_nan_and_binary_and_duplicate_entries_rejected(tmp_path):
    path = tmp_path / "sm_90.json"
    text = json.dumps({"schema": 1, "arch": "sm_90", "entries": [make_entry()]}).replace('"ms": 1.0', '"ms": NaN')
    path.write_text(text)
    with pytest.raises(store.StoreError, match="not valid JSON"):
        store.read(path)
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(store.StoreError, match="not UTF-8"):
        store.read(path)
    write_raw(path, [make_entry(), make_entry()])
    with pytest.raises(store.StoreError, match="entry 1 repeats the key of entry 0"):
        store.read(path)
    bad_name = tmp_path / "evil.json"
    write_raw(bad_name, [])
    with pytest.raises(store.StoreError, match="file name must be <arch>.json"):
        store.read(bad_name)


def test_oversized_file_rejected(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "MAX_FILE_BYTES", 100)
    path = tmp_path / "sm_90.json"
    write_raw(path, [make_entry()])
    with pytest.raises(store.StoreError, match="bytes is over"):
        store.read(path)


def test_write_refuses_invalid_entries(tmp_path):
    with pytest.raises(store.StoreError, match="refusing to write"):
        store.write(tmp_path / "sm_90.json", [_bad({"ms": 0})])
    assert not (tmp_path / "sm_90.json").exists()


def test_merge_keeps_other_entries_and_replaces_same_key(tmp_path):
    path = tmp_path / "sm_90.json"
    store.merge(path, [make_entry("fp16", bucket=1024), make_entry("fp16", bucket=4096, ms=2.0)])
    store.merge(path, [make_entry("bf16", bucket=1024), make_entry("fp16", bucket=4096, ms=1.5)])
    entries = store.read(path)
    assert len(entries) == 3
    by_key = {(e["dtype"], e["seq_bucket"]): e for e in entries}
    assert set(by_key) == {("fp16", 1024), ("fp16", 4096), ("bf16", 1024)}  # tuning bf16 kept fp16
    assert by_key[("fp16", 4096)]["ms"] == 1.5
    assert [p.name for p in tmp_path.iterdir()] == ["sm_90.json"]  # no lock or temp file left beside it


def test_merge_never_overwrites_a_damaged_file(tmp_path):
    path = tmp_path / "sm_90.json"
    path.write_text("{ half a file")
    with pytest.raises(store.StoreError):
        store.merge(path, [make_entry()])
    assert path.read_text() == "{ half a file"


def test_atomic_write_leaves_old_file_on_crash(tmp_path, monkeypatch):
    path = tmp_path / "sm_90.json"
    store.write(path, [make_entry(bucket=1024)])
    before = path.read_text()

    def crash(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        store.write(path, [make_entry(bucket=4096)])
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["sm_90.json"]  # no temp file left behind


def _merge_worker(path, dtype, n):
    for i in range(n):
        store.merge(path, [make_entry(dtype, bucket=1024 * (i + 1))])


def test_concurrent_merges_all_land(tmp_path):
    path = str(tmp_path / "sm_90.json")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_merge_worker, args=(path, dtype, 6)) for dtype in ("fp16", "bf16")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert len(store.read(path)) == 12


def test_lookup_fallbacks():
    h100, other = "NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe"
    entries = [make_entry(bucket=1024, device=h100, ms=1.0), make_entry(bucket=16384, device=h100, ms=2.0),
               make_entry(bucket=4096, device=other, ms=3.0)]
    e, how = store.lookup(entries, h100, "forward", K("fp32", 64, False), 1024)
    assert e["seq_bucket"] == 1024 and how.startswith("exact device, bucket")
    e, how = store.lookup(entries, h100, "forward", K("fp32", 64, False), 3000)  # log2 distance: 1.55 to 1024, 2.45 to 16384
    assert e["seq_bucket"] == 1024 and "nearest bucket" in how
    e, _ = store.lookup(entries, h100, "forward", K("fp32", 64, False), 9000)
    assert e["seq_bucket"] == 16384
    e, how = store.lookup(entries, "NVIDIA H200", "forward", K("fp32", 64, False), 4096)  # other device of the arch
    assert how.startswith("same arch") and e["device"] in (h100, other)
    assert store.lookup(entries, h100, "forward", K("fp32", 128, False), 4096)[0] is None


def test_lookup_prefers_entries_tuned_over_all_templates():
    fixed = make_entry(template="flash_fwd_simt", ms=0.5)
    free = make_entry(ms=1.0, block_n=32)
    e, _ = store.lookup([fixed, free], "NVIDIA H100 80GB HBM3", "forward", K("fp32", 64, False), 4096)
    assert e is free
    e, _ = store.lookup([fixed, free], "NVIDIA H100 80GB HBM3", "forward", K("fp32", 64, False), 4096, template="flash_fwd_simt")
    assert e["config"]["template"] == "flash_fwd_simt"


def test_dispatch_serves_tuned_entry_else_default_with_one_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(store, "search_dirs", lambda: [tmp_path])
    tuned = make_entry(bucket=4096, block_n=32)
    store.write(tmp_path / "sm_90.json", [tuned])
    cfg, how = dispatch.explain("sm_90", "NVIDIA H100 80GB HBM3", "forward", K("fp32", 64, False), 4000)
    assert cfg.to_dict() == tuned["config"] and how.startswith("tuned: exact device")
    cfg, how = dispatch.explain("sm_90", "NVIDIA H200", "forward", K("fp32", 64, False), 20000)
    assert cfg.to_dict() == tuned["config"] and "same arch" in how
    dispatch._warned.clear()
    with caplog.at_level(logging.WARNING, logger="autoflash"):
        for _ in range(3):
            cfg, how = dispatch.explain("sm_90", "NVIDIA H100 80GB HBM3", "forward", K("fp32", 128, True), 4096)
    assert how == "heuristic default" and cfg == TEMPLATES["flash_fwd_simt"].default("sm_90", K("fp32", 128, True))
    warnings = [r for r in caplog.records if "no tuned config" in r.getMessage()]
    assert len(warnings) == 1
    assert "autoflash tune --arch sm_90 --dtype fp32 --head-dim 128 --causal yes" in warnings[0].getMessage()


def test_dispatch_refuses_a_hostile_file(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "search_dirs", lambda: [tmp_path])
    write_raw(tmp_path / "sm_90.json", [_bad(config_changes={"template": "flash_fwd_evil"})])
    with pytest.raises(store.StoreError, match="sm_90.json: entry 0"):
        dispatch.select("sm_90", "NVIDIA H100 80GB HBM3", "forward", K("fp32", 64, False), 4096)
