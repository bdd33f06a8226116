"""flash_fwd_wgmma's UNIFORM_WG switch (forward_wgmma.UNIFORM_WG, off; issue 18), without a GPU: the consumers read
their warpgroup index through a lane-0 shuffle, which ptxas treats as warp-uniform, so Qi's wgmma descriptor, and with
it the tile loop's ring slot, parity and K/V descriptors, are computed in uniform registers instead of vector registers
moved by R2UR before each wgmma. Checked here: off by default and off renders as before (the full render identity
against the previous tree was a throw-away script, see /tmp/FA_notes.md), on changes only that one line (paged
configs: not at all), and the compiled D 64 served tiles (and D 128, D 256, variants) have no spills, no local memory,
no serialised wgmma, and fewer instructions and R2UR than with the switch off. The float64 GPU checks:
tests/test_wgmma_uniform_wg_gpu.py."""
import collections
import re

import pytest

from autoflash import KernelConfig
from autoflash.kernels.registry import TEMPLATES
from autoflash.kernels.render import render
from autoflash.ops import forward_wgmma

from sass import sass

W = TEMPLATES["flash_fwd_wgmma"]
PLAIN = "        const int wg = warpgroup - 1;                      // rows 64wg .. 64wg+63 of Qi"
SHUFFLED = "        const int wg = __shfl_sync(0xffffffffu, warpgroup - 1, 0);  // rows 64wg .. 64wg+63 of Qi"


def wgmma(head_dim=64, causal=True, block_m=128, block_n=128, stages=4, dtype="bf16", **extra):
    return KernelConfig("flash_fwd_wgmma", "sm_90a", dtype, head_dim, causal, block_m, block_n,
                        4 * (block_m // 64 + 1), stages, **extra)


# the H200's served D 64 tiles (tuned_configs/sm_90.json): causal N 1024 br128 bc128 s4 (fp16: pingpong 0), causal
# N 4096 br192 bc128 s2, non-causal br192 bc128 s3 (bf16) / s2 (fp16)
SERVED_D64 = [wgmma(), wgmma(dtype="fp16", pingpong=0), wgmma(block_m=192, stages=2),
              wgmma(block_m=192, stages=2, dtype="fp16"), wgmma(causal=False, block_m=192, stages=3),
              wgmma(causal=False, block_m=192, stages=2, dtype="fp16")]
OTHERS = [wgmma(128, stages=3), wgmma(256, block_n=80, stages=2), wgmma(64, stages=3, window=True, softcap=True),
          wgmma(128, stages=2, sinks=True, alibi=True), wgmma(192, stages=2, head_dim_v=128)]


@pytest.fixture
def on(monkeypatch):
    monkeypatch.setattr(forward_wgmma, "UNIFORM_WG", True)


def test_off_by_default():
    assert forward_wgmma.UNIFORM_WG is False
    for cfg in SERVED_D64 + OTHERS:
        assert W.template_values(cfg)["uniform_wg"] == 0
        source = render(cfg)
        assert PLAIN in source and "UNIFORM_WG" not in source and "__shfl_sync(0xffffffffu, warpgroup" not in source


@pytest.mark.parametrize("cfg", SERVED_D64 + OTHERS, ids=lambda c: c.name)
def test_on_changes_only_the_warpgroup_index(on, cfg):
    assert cfg.problems() == [], cfg.problems()
    source = render(cfg)
    forward_wgmma.UNIFORM_WG = False
    before = render(cfg)
    assert source.count(SHUFFLED) == 1 and PLAIN not in source
    # the line and its three comment lines: everything else renders as before
    removed = [line for line in before.splitlines() if line not in source.splitlines()]
    added = [line for line in source.splitlines() if line not in before.splitlines()]
    assert removed == [PLAIN] and added[-1] == SHUFFLED and len(added) == 4
    assert all(line.lstrip().startswith("//") for line in added[:-1])


def test_paged_configs_are_left_alone(on):
    cfg = wgmma(128, stages=2, paged=True)
    assert cfg.problems() == [] and W.template_values(cfg)["uniform_wg"] == 0
    source = render(cfg)
    forward_wgmma.UNIFORM_WG = False
    assert source == render(cfg)


def counts(code: str) -> collections.Counter:
    """Opcodes (without modifiers) of a SASS listing."""
    return collections.Counter(m.group(1) for m in re.finditer(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)",
                                                              code))


@pytest.mark.parametrize("cfg", SERVED_D64[:3] + OTHERS[:3], ids=lambda c: c.name)
def test_compiles_to_fewer_instructions_without_spills_or_serialisation(cfg, tmp_path, monkeypatch):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels import compile as afc

    found = {}
    for switched in (False, True):
        monkeypatch.setattr(forward_wgmma, "UNIFORM_WG", switched)
        kernel = afc.compile_kernel(cfg, use_cache=False)
        report = kernel.report
        assert report.spills == 0 and report.stack_frame == 0 and not report.wgmma_serialized, (switched, report)
        code = sass(kernel.cubin, tmp_path)
        assert not re.search(r"\b(LDL|STL)\b", code), "local memory"
        found[switched] = counts(code)
    off, on_ = found[False], found[True]
    # the same math (FMNMX may drop: the shuffles' divergent fall-back paths go once the warp is known converged)
    assert on_["HGMMA"] == off["HGMMA"] and on_["MUFU"] == off["MUFU"] and on_["FMNMX"] <= off["FMNMX"]
    # (the whole kernels, H200 served D 64 causal tiles: 4632 -> 4448 and 4736 -> 4424 instructions; see the notes)
    assert sum(on_.values()) < sum(off.values()) and on_["R2UR"] < off["R2UR"], (sum(off.values()), sum(on_.values()))
