"""flash_fwd_wgmma's O store through shared memory and TMA (KernelConfig.o_store: -1 the rule, 0 registers,
1 TMA; issue 18 item 2), without a GPU: the rule (TMA for 128-row tiles at head dims 96-128 where the staging
tile fits, registers elsewhere), the knob's checks (a rule value spelled out, a staging tile that does not fit),
registers add no code, O's staging tile sits after the V ring, the launch passes O's tensor map after V's (and a
packed launch re-encodes it when o moves), and the kernels compile for sm_90a without spills. The GPU
comparison against float64: tests/test_wgmma_schedule_ostore_gpu.py."""
import json
import re
from dataclasses import replace

import pytest

from autoflash import KernelConfig
from autoflash.kernels.config import OpConfig
from autoflash.kernels.render import environment, render, templates_dir
from autoflash.kernels.registry import TEMPLATES
from autoflash.ops import forward_wgmma
from autoflash.ops.forward_base import Problem
from autoflash.ops.forward_launch import plan as make_plan
from autoflash.store import shipped_dir

from test_host_path import FakeFunction, fake_kernel, no_context_binding  # noqa: F401  (an autouse fixture)
from test_host_plans import driver, fake_tma_maps, param_bytes  # noqa: F401  (fixtures)

W = TEMPLATES["flash_fwd_wgmma"]
BLOCK = re.compile(r"\s*\{%- if o_store_tma %\}.*?\{%- endif %\}", re.S)  # the knob's blocks
SIGNATURE = "{% if o_store_tma %}const __grid_constant__ TmaDesc tma_o, {% endif %}"  # and its kernel argument


def wgmma(head_dim=128, causal=False, block_m=128, block_n=128, stages=2, dtype="bf16", **extra):
    return KernelConfig("flash_fwd_wgmma", "sm_90a", dtype, head_dim, causal, block_m, block_n,
                        4 * (block_m // 64 + 1), stages, **extra)


def tma_store(cfg: KernelConfig) -> KernelConfig:
    """cfg with O stored by TMA, spelled as the checks want (-1 where that is the rule)."""
    return replace(cfg, o_store=-1 if W.o_store_rule(cfg) else 1)


def register_store(cfg: KernelConfig) -> KernelConfig:
    return replace(cfg, o_store=0 if W.o_store_rule(cfg) else -1)


def shipped() -> list[KernelConfig]:
    entries = json.loads((shipped_dir() / "sm_90.json").read_text())["entries"]
    return [OpConfig.from_dict(e["config"]) for e in entries if e["config"]["template"] == "flash_fwd_wgmma"]


def configs_to_render() -> list[KernelConfig]:
    variants = [wgmma(causal=True, **{flag: True}) for flag in ("window", "softcap", "sinks", "alibi", "paged")]
    return shipped() + variants + [wgmma(192, head_dim_v=128), wgmma(40, block_m=192), wgmma(256, block_n=80),
                                   wgmma(96), wgmma(112, True, block_n=160)]


# ------------------------------------------------------------ the rule and the knob's checks
@pytest.mark.parametrize("cfg, tma", [
    (wgmma(128), True), (wgmma(128, True, block_n=160, dtype="fp16"), True), (wgmma(96), True),
    (wgmma(104, True), True), (wgmma(112, block_n=144), True), (wgmma(112, block_n=176), False), (wgmma(128, True, paged=True), True),
    (wgmma(128, True, window=True, sinks=True), True),
    (wgmma(128, stages=3), False),  # the staging tile does not fit beside a three-stage ring
    (wgmma(128, block_n=192), False),  # nor beside 192-key tiles (H200 N 4096's served tile)
    (wgmma(88), False), (wgmma(64, block_m=192), False), (wgmma(64, stages=4), False),  # D 64: neutral
    (wgmma(136, block_n=64), False), (wgmma(256, block_n=80), False), (wgmma(256, block_m=64, block_n=80), False),
    (wgmma(128, block_m=64, block_n=192), False),  # one consumer warpgroup: lost at N 4096
    (wgmma(192, head_dim_v=128, block_n=64), False), (wgmma(128, head_dim_v=64), False),
], ids=lambda x: x.name if isinstance(x, KernelConfig) else str(x))
def test_rule(cfg, tma):
    assert cfg.problems() == [], cfg.problems()
    assert W.o_store_rule(cfg) is tma and W.o_store_tma(cfg) is tma
    # O's tensor map also where O goes over Qi (dense plain configs above D 128: tests/test_wgmma_o_via_q.py)
    assert W.template_values(cfg)["o_store_tma"] == int(tma or W.o_via_q(cfg))


def test_knob_is_in_the_search_space():
    assert W.knobs["o_store"] == (-1, 0, 1)
    space = W.space("sm_90a", dict(dtype="bf16", head_dim=128, causal=True, head_dim_v=0),
                    dict(block_m=[128], block_n=[128], stages=[2], pingpong=[-1], persistent=[-1]))
    valid = {c.o_store for c in space if not c.problems()}
    assert valid == {-1, 0}  # 1 is the rule here: spelled -1


def test_explicit_values_are_named_and_checked():
    assert wgmma(128, o_store=0).name.endswith("_s2_ostore0")
    assert wgmma(64, block_m=192, o_store=1).name.endswith("_ostore1")
    assert wgmma(128).name.endswith("_s2")  # the rule's configs keep their names
    for cfg in (wgmma(128, o_store=1), wgmma(64, block_m=192, o_store=0)):
        (error,) = cfg.problems()
        assert "rule's value" in error and "spelled -1" in error, error
    assert wgmma(128, o_store=0).problems() == [] and wgmma(64, block_m=192, o_store=1).problems() == []


@pytest.mark.parametrize("cfg", [wgmma(128, stages=3, o_store=1), wgmma(256, block_n=80, o_store=1)],
                         ids=lambda c: c.name)
def test_staging_tile_that_does_not_fit_is_refused_clearly(cfg):
    (error,) = cfg.problems()
    assert "o_store=1" in error and "staging tile does not fit" in error and "shared memory" in error, error
    assert replace(cfg, o_store=-1).problems() == []


def test_other_templates_refuse_the_knob():
    cfg = KernelConfig("flash_fwd_mma", "sm_80", "bf16", 128, False, 128, 64, 8, 2, o_store=1)
    assert any("o_store=1" in e and "must be -1" in e for e in cfg.problems())


def test_shipped_entries_read_as_the_rule():
    configs = shipped()
    assert configs and all(c.o_store == -1 for c in configs)
    assert any(W.o_store_tma(c) for c in configs)  # e.g. the D 128 N 1024 entries: 128 x 128 two-stage tiles


# ------------------------------------------------------------ what renders
def test_register_store_adds_no_code(tmp_path):
    """Registers (the rule's or o_store=0): the source is the template's with the knob's blocks cut out (configs
    whose O goes over Qi by TMA, dense plain ones above D 128, use those blocks: left out)."""
    source = (templates_dir() / W.template_file).read_text()
    assert len(BLOCK.findall(source)) == 5 and source.count(SIGNATURE) == 1
    cut_source = BLOCK.sub("", source).replace(SIGNATURE, "")
    assert "o_store_tma" not in cut_source
    (tmp_path / W.template_file).write_text(cut_source)
    cut = environment(str(tmp_path)).get_template(W.template_file)
    checked = 0
    for cfg in map(register_store, configs_to_render()):
        if W.o_via_q(cfg):
            continue
        assert cfg.problems() == [], (cfg.name, cfg.problems())
        off = render(cfg)
        assert off == cut.render(**W.values(cfg)), cfg.name
        assert "tma_o" not in off and "stmatrix" not in off, cfg.name
        checked += cfg.o_store == 0
    assert checked >= 5  # configs whose rule is TMA rendered with o_store=0


def test_tma_store_renders_its_code():
    source = render(wgmma())
    assert "const __grid_constant__ TmaDesc tma_o, int batch" in source
    assert source.count("stmatrix_x4(") == 2 and "cp.async.bulk.wait_group.read 0" in source


def test_staging_tile_follows_the_v_ring():
    cfg = wgmma(96, head_dim_v=40, block_n=128)
    on = replace(cfg, o_store=1)
    assert cfg.problems() == [] and on.problems() == []
    off, lay_on = W.smem_layout(cfg), W.smem_layout(on)
    assert "o_off" not in off
    assert lay_on["o_off"] == off["bar_off"] and lay_on["o_off"] % 1024 == 0
    assert lay_on["bar_off"] - off["bar_off"] == 128 * 64 * 2  # BLOCK_M x Dv padded to 64 columns x 2 B
    assert W.smem_bytes(on) - W.smem_bytes(cfg) == 128 * 64 * 2


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


@pytest.mark.parametrize("o_store", [-1, 1])
def test_launch_passes_o_map_after_v_map(fake_maps, o_store):
    cfg = wgmma(192, True, head_dim_v=128, block_n=64, o_store=o_store)  # registers by the rule (Dqk 192)
    assert cfg.problems() == []
    p = Problem(2, 8, 2, 1000, 1000, 192, True, head_dim_v=128)
    build = W.launch_args(cfg, p, 0.1)
    args = build(16, 32, 48, 64, 80)
    i = args.index("tv")
    if o_store == -1:
        assert fake_maps == [] and args[i + 1] == 2 and build.struct_pointers == 3  # the batch follows V's map
        return
    assert args[i + 1].geometry == (64, "bf16", 2, 8, 1000, 128, (8 * 1000 * 128, 1000 * 128, 128), 64)
    assert args[i + 2] == 2 and build.struct_pointers == 4


def test_varlen_launch_passes_a_map_over_the_packed_output(fake_maps):
    packed = (0, 128, 4 * 128)  # (total, H, D) strides as run_varlen_checked passes them
    p = Problem(3, 4, 4, 500, 500, 128, False, strides=(packed,) * 4, cu_seqlens_q=8, cu_seqlens_k=8, total_q=900,
                total_k=900)
    args = W.launch_args(wgmma(128), p, 0.1)(16, 32, 48, 64, 80)
    o_map = args[args.index("tv") + 1]
    assert o_map.geometry == (64, "bf16", 1, 4, 900, 128, (128 * 4 + 512 * 900, 128, 512), 64)


def test_paged_launch_passes_o_map(fake_maps):
    cfg = wgmma(128, True, paged=True)
    p = Problem(2, 8, 2, 300, 1024, 128, True, strides=((8 * 300 * 128, 300 * 128, 128),
                                                        (16 * 2 * 128, 128, 2 * 128), (16 * 2 * 128, 128, 2 * 128),
                                                        (8 * 300 * 128, 300 * 128, 128)),
                block_table=8, table_stride=64, page_size=16, num_pages=128)
    build = W.launch_args(cfg, p, 0.1)
    args = build(16, 32, 48, 64, 80)
    assert build.struct_pointers == 4
    o_maps = [a for a in args if getattr(a, "geometry", (None,))[0] == 64]
    assert [m.geometry for m in o_maps] == [(64, "bf16", 2, 8, 300, 128, (8 * 300 * 128, 300 * 128, 128), 64)]


def test_packed_launch_re_encodes_o_map_when_o_moves(fake_tma_maps, driver):
    """attention()'s per-call path (a packed launch) writes a fresh output each call: O's map must follow it."""
    made = fake_tma_maps
    cfg = wgmma(128, True)
    assert W.o_store_tma(cfg)
    kernel = fake_kernel(cfg)
    kernel.function.ptr = 0xDEF
    plan = make_plan(kernel, Problem(2, 4, 2, 256, 512, 128, True), 0.1)
    first = (0x100000, 0x200000, 0x300000, 0x400000, 0)
    packed = plan.packed(*first)
    assert len(packed.launches[0].struct_slots) == 4
    o_slot = packed.launches[0].struct_slots[3]
    for ptrs in (first, first[:3] + (0x500000, 0), first[:3] + (0x500000, 0x10)):
        encoded = len(made)
        packed(ptrs, 0)
        assert param_bytes(driver[-1]["params"], o_slot, 8) == ptrs[3].to_bytes(8, "little"), ptrs
        if ptrs[4] == 0x10:
            assert len(made) == encoded  # only lse moved: the maps are the last call's


# Compiles without a GPU (NVRTC + ptxas): the rule's TMA configs at D 96-128 (104, 120: an odd count of 8-column
# units, the x2 stmatrix), with every variant and paged; explicit o_store=1 at D 64, D 256 (one consumer warpgroup:
# the tiles with two leave no room for the staging tile), D 40, Dv != D.
COMPILED = ([wgmma(128, c) for c in (False, True)] + [wgmma(128, c, block_n=160, dtype="fp16") for c in (False, True)]
            + [wgmma(d, True, block_n=bn) for d, bn in ((96, 160), (104, 128), (112, 144), (120, 128))]
            + [wgmma(128, True, window=True, softcap=True, sinks=True, alibi=True), wgmma(96, softcap=True),
               wgmma(128, True, paged=True), wgmma(128, True, paged=True, softcap=True)]
            + [wgmma(64, c, block_m=192, o_store=1) for c in (False, True)]
            + [wgmma(256, c, block_m=64, block_n=80, o_store=1) for c in (False, True)]
            + [wgmma(40, True, o_store=1), wgmma(192, head_dim_v=128, block_n=64, o_store=1),
               wgmma(64, True, stages=4, pingpong=0, o_store=1)])


@pytest.mark.parametrize("cfg", COMPILED, ids=lambda c: c.name)
def test_tma_store_compiles_without_spills(cfg):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels import compile as afc

    assert cfg.problems() == [] and W.o_store_tma(cfg), cfg.problems()
    kernel = afc.compile_kernel(cfg, use_cache=False)
    assert kernel.report.spills == 0 and not kernel.report.wgmma_serialized, kernel.report
    assert kernel.report.registers <= 255


def test_output_strides_the_tma_store_cannot_take_are_refused(fake_maps):
    odd = (8 * 1000 * 132, 1000 * 132, 132)  # a token stride of 264 B
    contiguous = (8 * 1000 * 128, 1000 * 128, 128)
    p = Problem(2, 8, 8, 1000, 1000, 128, False, strides=(contiguous, contiguous, contiguous, odd))
    with pytest.raises(ValueError, match="multiples of 16 bytes"):
        W.launch_args(wgmma(128), p, 0.1)
    W.launch_args(wgmma(128, o_store=0), p, 0.1)  # the register store takes any strides


@pytest.mark.parametrize("head_dim, window, tma", [(128, True, True), (96, True, True), (128, False, False),
                                                  (64, True, False), (256, True, False)])
def test_window_keys_default_to_tiles_with_the_tma_store(head_dim, window, tma):
    """Window keys at D 96-128 default to 128 x 128 two-stage tiles (TMA store by the rule); the H200 window probe:
    428 vs 391 TFLOP/s for the three-stage register-store default (D 128 N 4096 causal (1024, 0))."""
    key = dict(dtype="bf16", head_dim=head_dim, causal=True, head_dim_v=0, window=window)
    cfg = W.default("sm_90a", key)
    assert W.o_store_tma(cfg) is tma, cfg.name
    if tma:
        assert (cfg.block_m, cfg.block_n, cfg.stages) == (128, 128, 2)
