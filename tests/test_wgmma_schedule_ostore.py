"""flash_fwd_wgmma's O store through shared memory and TMA (WgmmaTemplate.o_store = "tma", issue 18 item 2),
without a GPU: off (the default) adds no code; on, O's staging tile sits after the V ring (tiles that no longer
fit are refused), the launch passes O's tensor map after V's, and the kernels compile for sm_90a without
spills. The GPU comparison against float64: tests/test_wgmma_schedule_ostore_gpu.py."""
import json
import re

import pytest

from autoflash import KernelConfig
from autoflash.kernels.config import OpConfig
from autoflash.kernels.render import environment, render, templates_dir
from autoflash.kernels.registry import TEMPLATES
from autoflash.ops import forward_wgmma
from autoflash.ops.forward_base import Problem
from autoflash.store import shipped_dir

W = TEMPLATES["flash_fwd_wgmma"]
BLOCK = re.compile(r"\s*\{%- if o_store_tma %\}.*?\{%- endif %\}", re.S)  # the knob's blocks
SIGNATURE = "{% if o_store_tma %}const __grid_constant__ TmaDesc tma_o, {% endif %}"  # and its kernel argument


def wgmma(head_dim=128, causal=False, block_m=128, block_n=128, stages=2, dtype="bf16", **extra):
    return KernelConfig("flash_fwd_wgmma", "sm_90a", dtype, head_dim, causal, block_m, block_n,
                        4 * (block_m // 64 + 1), stages, **extra)


@pytest.fixture
def tma(monkeypatch):
    monkeypatch.setattr(W, "o_store", "tma")


def configs_to_render() -> list[KernelConfig]:
    entries = json.loads((shipped_dir() / "sm_90.json").read_text())["entries"]
    shipped = [OpConfig.from_dict(e["config"]) for e in entries if e["config"]["template"] == "flash_fwd_wgmma"]
    variants = [wgmma(causal=True, **{flag: True}) for flag in ("window", "softcap", "sinks", "alibi", "paged")]
    return shipped + variants + [wgmma(192, head_dim_v=128), wgmma(40, block_m=192), wgmma(256, block_n=80)]


def test_default_store_is_registers_and_adds_no_code(tmp_path):
    """Off, the source is the template's with the knob's blocks cut out: every shipped entry and variant."""
    assert W.o_store == "registers"
    source = (templates_dir() / W.template_file).read_text()
    assert len(BLOCK.findall(source)) == 5 and source.count(SIGNATURE) == 1
    cut_source = BLOCK.sub("", source).replace(SIGNATURE, "")
    assert "o_store_tma" not in cut_source
    (tmp_path / W.template_file).write_text(cut_source)
    cut = environment(str(tmp_path)).get_template(W.template_file)
    for cfg in configs_to_render():
        off = render(cfg)
        assert off == cut.render(**W.values(cfg)), cfg.name
        assert "tma_o" not in off and "stmatrix" not in off, cfg.name


def test_tma_store_renders_its_code(tma):
    source = render(wgmma())
    assert "const __grid_constant__ TmaDesc tma_o, int batch" in source
    assert source.count("stmatrix_x4(") == 2 and "cp.async.bulk.wait_group.read 0" in source
    assert W.template_values(wgmma())["o_store_tma"] == 1


def test_staging_tile_follows_the_v_ring(tma, monkeypatch):
    cfg = wgmma(96, head_dim_v=40, block_n=128)
    on, on_bytes = W.smem_layout(cfg), W.smem_bytes(cfg)
    monkeypatch.setattr(W, "o_store", "registers")
    off = W.smem_layout(cfg)
    assert "o_off" not in off
    assert on["o_off"] == off["bar_off"] and on["o_off"] % 1024 == 0
    assert on["bar_off"] - off["bar_off"] == 128 * 64 * 2  # BLOCK_M x Dv padded to 64 columns x 2 B
    assert on_bytes - W.smem_bytes(cfg) == 128 * 64 * 2


@pytest.mark.parametrize("cfg", [wgmma(128, stages=3), wgmma(256, block_n=80)], ids=lambda c: c.name)
def test_tiles_without_room_for_the_staging_tile_are_refused(tma, monkeypatch, cfg):
    errors = cfg.problems()
    assert len(errors) == 1 and "shared memory" in errors[0], errors
    monkeypatch.setattr(W, "o_store", "registers")
    assert cfg.problems() == []


def test_unknown_store_is_refused(monkeypatch):
    monkeypatch.setattr(W, "o_store", "smem")
    assert any("o_store='smem'" in e for e in wgmma().problems())


@pytest.fixture
def fake_maps(monkeypatch):
    """Tensor maps need the driver: record what the launch asks for instead."""
    made = []

    class Map:
        def __init__(self, *geometry):
            self.geometry = geometry
            made.append(geometry)

        def kernel_arg(self):
            return self

    monkeypatch.setattr(forward_wgmma, "cached_operand_map", Map)
    monkeypatch.setattr(forward_wgmma, "qkv_map_args", lambda *a: ("tq", "tk", "tv"))
    return made


@pytest.mark.parametrize("store", ["registers", "tma"])
def test_launch_passes_o_map_after_v_map(fake_maps, monkeypatch, store):
    monkeypatch.setattr(W, "o_store", store)
    p = Problem(2, 8, 2, 1000, 1000, 192, True, head_dim_v=128)
    args = W.launch_args(wgmma(192, True, head_dim_v=128), p, 0.1)(16, 32, 48, 64, 80)
    i = args.index("tv")
    if store == "registers":
        assert fake_maps == [] and args[i + 1] == 2  # the batch follows V's map
        return
    assert args[i + 1].geometry == (64, "bf16", 2, 8, 1000, 128, (8 * 1000 * 128, 1000 * 128, 128), 64)
    assert args[i + 2] == 2


def test_varlen_launch_passes_a_map_over_the_packed_output(fake_maps, tma):
    packed = (0, 64, 4 * 64)  # (total, H, D) strides as run_varlen_checked passes them
    p = Problem(3, 4, 4, 500, 500, 64, False, strides=(packed,) * 4, cu_seqlens_q=8, cu_seqlens_k=8, total_q=900,
                total_k=900)
    args = W.launch_args(wgmma(64, block_m=192), p, 0.1)(16, 32, 48, 64, 80)
    o_map = args[args.index("tv") + 1]
    assert o_map.geometry == (64, "bf16", 1, 4, 900, 64, (64 * 4 + 256 * 900, 64, 256), 64)


# Compiles without a GPU (NVRTC + ptxas): D 64/128/256 (D 256: one consumer warpgroup, the tiles with two leave
# no room for the staging tile), D 40 (an odd count of 8-column units: the x2 stmatrix), Dv != D, paged.
COMPILED = ([wgmma(64, c, block_m=192) for c in (False, True)] + [wgmma(128, c) for c in (False, True)]
            + [wgmma(128, c, block_n=160, dtype="fp16") for c in (False, True)]
            + [wgmma(256, c, block_m=64, block_n=80) for c in (False, True)]
            + [wgmma(40, True), wgmma(192, head_dim_v=128, block_n=64), wgmma(128, True, paged=True),
               wgmma(64, True, stages=4, pingpong=0)])


@pytest.mark.parametrize("cfg", COMPILED, ids=lambda c: c.name)
def test_tma_store_compiles_without_spills(tma, cfg):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels import compile as afc

    assert cfg.problems() == []
    kernel = afc.compile_kernel(cfg, use_cache=False)
    assert kernel.report.spills == 0, kernel.report
    assert kernel.report.registers <= 255


def test_output_strides_the_tma_store_cannot_take_are_refused(fake_maps, tma):
    odd = (8 * 1000 * 132, 1000 * 132, 132)  # a token stride of 264 B
    contiguous = (8 * 1000 * 128, 1000 * 128, 128)
    p = Problem(2, 8, 8, 1000, 1000, 128, False, strides=(contiguous, contiguous, contiguous, odd))
    with pytest.raises(ValueError, match="multiples of 16 bytes"):
        W.launch_args(wgmma(128), p, 0.1)
