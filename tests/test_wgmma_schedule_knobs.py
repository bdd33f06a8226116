"""flash_fwd_wgmma's schedule knobs (issue 18 item 2): consumer ping-pong and the persistent grid.

-1 (every config and tuned entry written before the knobs) keeps the old rules: ping-pong iff causal,
the grid persistent; 0 / 1 choose. An explicit value equal to the rule's is refused (one name per kernel)."""
import json

import pytest

from autoflash import KernelConfig
from autoflash.kernels.config import ConfigError, OpConfig
from autoflash.kernels.render import environment, render
from autoflash.kernels.registry import TEMPLATES
from autoflash.ops import forward_wgmma
from autoflash.ops.forward_base import Problem
from autoflash.store import shipped_dir

W = TEMPLATES["flash_fwd_wgmma"]
SMS = 132  # an H100/H200's SM count, patched in: grid() asks the GPU otherwise


def wgmma(causal=False, block_m=128, head_dim=128, **knobs):
    return KernelConfig("flash_fwd_wgmma", "sm_90a", "bf16", head_dim, causal, block_m, 128, 4 * (block_m // 64 + 1),
                        3, **knobs)


def tuned_wgmma_configs() -> list[KernelConfig]:
    entries = json.loads((shipped_dir() / "sm_90.json").read_text())["entries"]
    return [OpConfig.from_dict(e["config"]) for e in entries if e["config"]["template"] == "flash_fwd_wgmma"]


@pytest.fixture
def sms(monkeypatch):
    monkeypatch.setattr(forward_wgmma, "_sm_count", lambda: SMS)


def test_space_has_the_schedule_values():
    assert W.knobs["pingpong"] == (-1, 0, 1) and W.knobs["persistent"] == (-1, 0, 1)
    key = {"dtype": "bf16", "head_dim": 128, "causal": False}
    names = {c.name for c in W.space("sm_90a", key) if not c.problems()}
    base = "flash_fwd_wgmma_sm_90a_bf16_d128_br128_bc128_w12_s3"
    assert {base, base + "_pp1", base + "_persist0", base + "_pp1_persist0"} <= names


@pytest.mark.parametrize("causal", [False, True])
def test_the_rules_own_values_are_spelled_minus_one(causal):
    assert wgmma(causal).problems() == []
    assert wgmma(causal, pingpong=1 - int(causal)).problems() == []
    assert wgmma(causal, persistent=0).problems() == []
    pp = wgmma(causal, pingpong=int(causal)).problems()
    assert len(pp) == 1 and "spelled -1" in pp[0]
    grid = wgmma(causal, persistent=1).problems()
    assert len(grid) == 1 and "spelled -1" in grid[0]


def test_names_carry_only_explicit_schedules():
    assert wgmma(True).name == "flash_fwd_wgmma_sm_90a_bf16_d128_br128_bc128_w12_s3_causal"
    assert wgmma(True, pingpong=0, persistent=0).name.endswith("_s3_causal_pp0_persist0")
    assert wgmma(False, pingpong=1).name.endswith("_s3_pp1")


@pytest.mark.parametrize("block_m", [64, 192])
def test_pingpong_needs_two_consumer_warpgroups(block_m):
    for value in (0, 1):
        errors = wgmma(False, block_m=block_m, head_dim=64, pingpong=value).problems()
        assert any("two consumer warpgroups" in e for e in errors), errors
    assert wgmma(False, block_m=block_m, head_dim=64).problems() == []


def test_values_outside_minus_one_to_one_are_refused():
    for field in ("pingpong", "persistent"):
        with pytest.raises(ConfigError, match=field):
            OpConfig.from_dict({**wgmma().to_dict(), field: 2})
        with pytest.raises(ConfigError, match=field):
            OpConfig.from_dict({**wgmma().to_dict(), field: True})  # a bool is not an int here


@pytest.mark.parametrize("template,arch,tiles", [("flash_fwd_mma", "sm_80", dict(block_m=64, block_n=64, warps=4,
                                                                                    stages=2)),
                                                  ("flash_fwd_simt", "sm_80", None)])
@pytest.mark.parametrize("field", ["pingpong", "persistent"])
def test_mma_and_simt_refuse_the_schedule_fields(template, arch, tiles, field):
    t = TEMPLATES[template]
    key = {"dtype": "bf16", "head_dim": 64, "causal": True}
    cfg = t.config(arch, key, **tiles) if tiles else t.default(arch, key)
    assert cfg.problems() == []
    for value in (0, 1):
        errors = cfg.replace(**{field: value}).problems()
        assert any(f"has no {field} choice" in e for e in errors), errors


def test_rendered_pingpong_follows_the_knob():
    def rendered(cfg):
        return W.template_values(cfg)["pingpong"]

    assert (rendered(wgmma(False)), rendered(wgmma(True))) == (0, 1)  # the rule: iff causal
    assert (rendered(wgmma(False, pingpong=1)), rendered(wgmma(True, pingpong=0))) == (1, 0)


def test_grid_follows_the_persistent_knob(sms, monkeypatch):
    p = Problem(8, 16, 16, 4096, 4096, 128, False)
    items = W.items(wgmma(False), p)
    assert items == 32 * 16 * 8 > SMS
    assert W.grid(wgmma(False), p) == (SMS, 1, 1)  # the rule: persistent
    assert W.grid(wgmma(False, persistent=0), p) == (items, 1, 1)
    pc = Problem(8, 16, 16, 4096, 4096, 128, True)
    assert W.grid(wgmma(True, persistent=0), pc) == (W.items(wgmma(True), pc), 1, 1)
    # benchmarks flip the rule through the class attribute: -1 configs follow it, explicit ones do not
    monkeypatch.setattr(W, "persistent", False)
    assert W.grid(wgmma(False), p) == (items, 1, 1)
    assert W.grid(wgmma(False, persistent=1), p) == (SMS, 1, 1)


def test_tuned_entries_load_unchanged(sms):
    """Entries without the knobs (all but those tuned with them) load with -1, keep their names, and
    render the source and grid of the old rules (ping-pong iff causal, persistent grid); entries tuned
    with a knob name it."""
    configs = tuned_wgmma_configs()
    explicit = [c for c in configs if (c.pingpong, c.persistent) != (-1, -1)]
    for cfg in explicit:  # tuned with the knobs (H200, fifth session: N 1024 keys)
        assert ("_pp" in cfg.name) == (cfg.pingpong != -1) and ("_persist" in cfg.name) == (cfg.persistent != -1)
    configs = [c for c in configs if c not in explicit]
    assert configs
    env = environment()
    p = Problem(4, 16, 16, 8192, 8192, 128, False)
    for cfg in configs:
        assert "_pp" not in cfg.name and "_persist" not in cfg.name
        old_values = {**W.values(cfg), "pingpong": 1 if cfg.causal else 0}
        assert render(cfg) == env.get_template(W.template_file).render(**old_values), cfg.name
        assert W.grid(cfg, p) == (min(W.items(cfg, p), SMS), 1, 1)


# Compiles without a GPU (NVRTC + ptxas): the non-rule schedules build for sm_90a without spills.
@pytest.mark.parametrize("cfg", [wgmma(False, pingpong=1), wgmma(True, pingpong=0),
                                 KernelConfig("flash_fwd_wgmma", "sm_90a", "bf16", 256, False, 128, 80, 12, 2,
                                              pingpong=1)],
                         ids=lambda c: c.name)
def test_other_pingpong_compiles_without_spills(cfg):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels import compile as afc

    assert cfg.problems() == []
    kernel = afc.compile_kernel(cfg)
    assert kernel.report.spills == 0 and not kernel.report.wgmma_serialized, kernel.report
    assert kernel.report.registers <= 255
