"""Which backward config attention_backward serves where flash_bwd_wgmma serves the key (an sm_90 GPU, bf16/fp16,
D 64/128, no variant): the entry tuned for this GPU and length in tuned_configs/ when one exists, else the template's
own default (never flash_bwd_mma's, and no untuned-config warning). Without a GPU: device_arch and the search folders
are patched."""
import json

import pytest

from autoflash import store
from autoflash.ops.backward_wgmma import serving_config
from autoflash.serve import autograd, dispatch

KEY = dict(dtype="bf16", head_dim=64, causal=False, deterministic=False, window=False, softcap=False, sinks=False,
           alibi=False)


@pytest.fixture
def h200(monkeypatch, tmp_path):
    monkeypatch.setattr(autograd, "device_arch", lambda device: ("sm_90", "NVIDIA H200"))
    monkeypatch.setattr(store, "search_dirs", lambda: [tmp_path])
    dispatch._chosen.clear()
    yield tmp_path
    dispatch._chosen.clear()


def shipped_wgmma_entry(key: dict, bucket: int) -> dict:
    entries = json.loads((store.shipped_dir() / "sm_90.json").read_text())["entries"]
    return next(e for e in entries if e["template"] == "flash_bwd_wgmma" and e["seq_bucket"] == bucket
                and all(e[k] == v for k, v in key.items()))


def test_a_tuned_flash_bwd_wgmma_entry_is_served(h200):
    entry = shipped_wgmma_entry(KEY, 4096)
    default = serving_config("sm_90", KEY)
    if (entry["config"]["block_n"], entry["config"]["stages"]) == (default.block_n, default.stages):
        entry["config"]["stages"] = 3 if default.stages == 2 else 2  # differs from the default whatever was tuned
    (h200 / "sm_90.json").write_text(json.dumps({"schema": 1, "arch": "sm_90", "entries": [entry]}))
    cfg = autograd._served_config(0, KEY, 4096)
    assert cfg.template == "flash_bwd_wgmma"
    assert (cfg.block_n, cfg.stages) == (entry["config"]["block_n"], entry["config"]["stages"])
    assert cfg != default and not cfg.problems()


def test_without_an_entry_the_template_default_is_served_without_a_warning(h200, caplog):
    cfg = autograd._served_config(0, KEY, 4096)
    assert cfg == serving_config("sm_90", KEY) and cfg.template == "flash_bwd_wgmma"
    assert "no tuned config" not in caplog.text
