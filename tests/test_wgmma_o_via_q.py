"""flash_fwd_wgmma's O over Qi (forward_wgmma.o_via_q; issue 18), without a GPU: which configs take it (dense
plain configs above D 128 that would store O from registers: no room for O's staging tile), what they
render (O staged at Qi's offset, Qi handed back after the store, no early release, Qi loaded after the item's first
K/V tile), the unchanged shared memory, the launch's O map, and the D 256 served tiles compiled for sm_90a: no spills,
no local memory, wgmma not serialised, the TMA store (UTMASTG) in the SASS. The synchronisation: tests/test_wgmma_protocol.py (o_via_q); the GPU comparison
against float64: tests/test_wgmma_o_via_q_gpu.py."""
import re
import pytest

from autoflash import KernelConfig
from autoflash.kernels.registry import TEMPLATES
from autoflash.kernels.render import render
from autoflash.ops import forward_wgmma
from autoflash.ops.forward_base import Problem

from sass import sass

W = TEMPLATES["flash_fwd_wgmma"]


def wgmma(head_dim=256, causal=True, block_m=128, block_n=80, stages=2, dtype="bf16", **extra):
    return KernelConfig("flash_fwd_wgmma", "sm_90a", dtype, head_dim, causal, block_m, block_n,
                        4 * (block_m // 64 + 1), stages, **extra)


# the H200's served D 256 tiles (tuned_configs/sm_90.json: br128 bc80 s2 at every N, causal and not)
SERVED_D256 = [wgmma(256, c, dtype=t) for t in ("bf16", "fp16") for c in (True, False)]


@pytest.mark.parametrize("cfg, switched", [
    (wgmma(256, True), True), (wgmma(256, False, dtype="fp16"), True), (wgmma(256, block_m=64, block_n=96), True),
    (wgmma(192, block_n=64), True), (wgmma(136, False, block_n=64), True),
    (wgmma(128, block_n=128), False),  # the rule's TMA store (staging tile)
    (wgmma(128, block_n=128, stages=3), False), (wgmma(64, block_m=192, block_n=128), False),  # D <= 128
    (wgmma(256, block_m=64, block_n=80, o_store=1), False),  # already a staging tile
    (wgmma(192, block_n=64, head_dim_v=128), False),  # Dqk != Dv
    (wgmma(256, paged=True), False), (wgmma(256, window=True), False), (wgmma(256, sinks=True), False),
    (wgmma(256, softcap=True), False), (wgmma(256, alibi=True), False),  # variants: ignored (served as before)
], ids=lambda x: x.name if isinstance(x, KernelConfig) else str(x))
def test_which_configs_take_it(cfg, switched):
    assert cfg.problems() == [], cfg.problems()
    assert W.o_via_q(cfg) is switched
    assert W.template_values(cfg)["o_via_q"] == int(switched)
    assert ("if (j == 0) load_q();" in render(cfg)) is switched


@pytest.mark.parametrize("cfg", SERVED_D256 + [wgmma(192, block_n=64), wgmma(256, block_m=64, block_n=96)],
                         ids=lambda c: c.name)
def test_renders_o_staged_over_qi(cfg):
    before = W.smem_layout(cfg)
    source = render(cfg)
    assert "const __grid_constant__ TmaDesc tma_o, int batch" in source
    assert f"constexpr u32 O_OFF = {before['q_off']};" in source and "O over Qi" in source
    # Qi is handed back once per item: by the store's leader (4 warps) or, varlen, after the register store
    assert source.count("release(empty_q)") == 1 and "release(empty_q);  // varlen" in source
    assert re.search(r"commit_group;.*\n.*\n\s*asm volatile\(\"cp\.async\.bulk\.wait_group\.read 0;\".*\n"
                     r"\s*asm volatile\(\"\{\\n\.reg \.b64 st;\\nmbarrier\.arrive\.shared::cta\.b64 st, \[%0\], 4;",
                     source), "the leader waits for the store's read, then arrives for its 4 warps"
    # the producer loads Qi after the item's first K/V tile (those slots were freed before the last epilogue)
    assert source.count("mbar_wait(empty_q,") == 1 and "if (j == 0) load_q();" in source
    assert "o_off" not in before  # no staging tile: the same shared memory as a register store


def test_launch_passes_o_map(monkeypatch):
    made = []

    class Map:
        def __init__(self, *geometry):
            made.append(geometry)
            self.geometry = geometry

        def kernel_arg(self):
            return self

    monkeypatch.setattr(forward_wgmma, "cached_operand_map", Map)
    monkeypatch.setattr(forward_wgmma, "qkv_map_args", lambda *a: ("tq", "tk", "tv"))
    p = Problem(2, 8, 2, 1000, 1000, 256, True)
    build = W.launch_args(wgmma(256), p, 0.1)
    args = build(16, 32, 48, 64, 80)
    i = args.index("tv")
    assert args[i + 1].geometry == (64, "bf16", 2, 8, 1000, 256, (8 * 1000 * 256, 1000 * 256, 256), 64)
    assert args[i + 2] == 2 and build.struct_pointers == 4
    build = W.launch_args(wgmma(128), Problem(2, 8, 2, 1000, 1000, 128, True), 0.1)  # the staging tile's map
    assert build.struct_pointers == 4
    build = W.launch_args(wgmma(256, paged=False, window=True), p, 0.1)  # a variant: from registers, no O map
    assert build(16, 32, 48, 64, 80)[i + 1] == 2 and build.struct_pointers == 3


COMPILED = SERVED_D256 + [wgmma(256, True, block_n=64), wgmma(256, False, block_m=64, block_n=96),
                          wgmma(192, True, block_n=64)]


@pytest.mark.parametrize("cfg", COMPILED, ids=lambda c: c.name)
def test_compiles_without_spills_local_memory_or_serialisation(cfg, tmp_path):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels import compile as afc

    assert cfg.problems() == [] and W.o_via_q(cfg)
    kernel = afc.compile_kernel(cfg, use_cache=False)
    report = kernel.report
    assert report.spills == 0 and report.stack_frame == 0 and not report.wgmma_serialized, report
    code = sass(kernel.cubin, tmp_path)
    assert not re.search(r"\b(LDL|STL)\b", code), "local memory"
    assert code.count("UTMASTG") == -(-cfg.head_dim // 64), "one TMA store per 64-column block of O"
