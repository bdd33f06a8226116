"""flash_fwd_mma and flash_fwd_simt specialised for the variants (issue 17) without a GPU: the rules
accept every flag, every combination renders with the flags as compile-time constants, and the
combinations compile for sm_80 and sm_90 without register spills (ptxas through NVRTC).
Correctness on a GPU: benchmarks/variants_probe.py and the gpu-marked tests."""
import itertools
import re

import pytest

from autoflash.kernels.registry import TEMPLATES
from autoflash.kernels.render import render
from autoflash.ops.forward_base import VARIANT_FLAGS
from conftest import fwd_key as K

MMA, SIMT = TEMPLATES["flash_fwd_mma"], TEMPLATES["flash_fwd_simt"]
SUBSETS = [dict(zip(VARIANT_FLAGS, bits)) for bits in itertools.product((False, True), repeat=4)]
ALL = dict.fromkeys(VARIANT_FLAGS, True)
SINGLES = [{f: True} for f in VARIANT_FLAGS]


def flag_id(flags: dict) -> str:
    return "+".join(f for f, on in flags.items() if on) or "plain"


def variant(template, arch, dtype, d, causal, flags, **knobs):
    base = template.config(arch, K(dtype, d, causal), **knobs) if knobs else template.default(arch, K(dtype, d, causal))
    return base.replace(**flags)


@pytest.mark.parametrize("template, dtype", [(MMA, "bf16"), (SIMT, "fp32"), (SIMT, "fp16")], ids=lambda x: getattr(x, "name", x))
@pytest.mark.parametrize("flags", SUBSETS, ids=flag_id)
def test_every_combination_is_accepted_and_renders(template, dtype, flags):
    for d, causal in itertools.product((64, 128), (False, True)):
        cfg = variant(template, "sm_90", dtype, d, causal, flags)
        assert not cfg.problems(), cfg.problems()
        assert template.supports("sm_90", {**K(dtype, d, causal), **flags})
        source = render(cfg)
        for f in VARIANT_FLAGS:  # each flag reaches the kernel as a compile-time constant
            assert re.search(rf"constexpr bool {f.upper()} = {'true' if flags.get(f) else 'false'};", source), f
        assert cfg.name in source  # the kernel symbol carries the flags (unique per specialisation)


def test_window_code_is_rendered_only_into_window_kernels():
    """Plain kernels keep their two key loops (no window-edge loop, no window tile bounds)."""
    plain = render(MMA.default("sm_90", K("bf16", 128, True)))
    windowed = render(MMA.default("sm_90", K("bf16", 128, True)).replace(window=True))
    bound = "int t_begin = max(0, q_start + offset - var.win_left) / BLOCK_N;"  # first key tile of the window
    assert bound not in plain and bound in windowed
    # each loop (FlashAttention-2 and pipelined) renders: unmasked + masked tiles, window: + left-edge tiles
    assert plain.count("for (int j = ") == 4 and windowed.count("for (int j = ") == 6


# (template, arch, dtype, head dim, causal, flags, knobs): every branch of the score modification and
# masks switched on and off once (each flag alone, all four), every arch's ptxas, both loops of mma.
COMPILED = (
    [(MMA, "sm_90", "bf16", 64, True, f, {}) for f in SINGLES]
    + [(MMA, arch, "bf16", d, causal, ALL, {}) for arch in ("sm_80", "sm_90") for d in (64, 128) for causal in (False, True)]
    + [(MMA, "sm_90", "bf16", 64, True, ALL, dict(block_m=128, block_n=32, warps=4, stages=3)),  # pipelined loop
       (MMA, "sm_80", "fp16", 128, True, {"window": True}, dict(block_m=128, block_n=32, warps=4, stages=3))]
    + [(SIMT, "sm_90", "fp32", 64, True, f, {}) for f in SINGLES + [ALL]]
    + [(SIMT, "sm_80", "bf16", 128, False, ALL, {})]
)


@pytest.mark.parametrize("case", COMPILED, ids=lambda c: f"{c[0].name}-{c[1]}-{c[2]}-d{c[3]}-{'causal' if c[4] else 'full'}-"
                         f"{flag_id(c[5])}{'-s' + str(c[6]['stages']) if c[6] else ''}")
def test_variants_compile_without_spills(case):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels import compile as afc

    template, arch, dtype, d, causal, flags, knobs = case
    cfg = variant(template, arch, dtype, d, causal, flags, **knobs)
    report = afc.compile_kernel(cfg).report
    assert report.spills == 0 and report.stack_frame == 0, (cfg.name, report)
    assert report.registers <= 255


# Head dims that are not a multiple of the mma k-step (16) run padded to it in shared memory and
# registers (issue 17 item 2); 192 is DeepSeek-style MLA prefill's Dqk.
@pytest.mark.parametrize("d", [8, 40, 72, 136, 160, 192, 248])
def test_mma_takes_every_multiple_of_8(d):
    for arch, causal in (("sm_80", False), ("sm_90", True)):
        cfg = MMA.default(arch, K("bf16", d, causal))
        assert not cfg.problems() and MMA.padded_dim(cfg) == -(-d // 16) * 16
        source = render(cfg)
        assert f"constexpr int HEAD_DIM = {d};" in source
        assert ("if constexpr (DIM != HEAD_DIM)" in source)  # the pad chunk is zero-filled once
    assert MMA.config("sm_90", K("bf16", 44, False), block_m=64, block_n=64, warps=4, stages=2).problems()


@pytest.mark.parametrize("case", [("sm_90", 40, True, {}), ("sm_80", 72, False, ALL), ("sm_90", 136, False, {}),
                                  ("sm_80", 160, True, {}), ("sm_90", 192, True, ALL), ("sm_80", 192, False, {})],
                         ids=lambda c: f"{c[0]}-d{c[1]}-{'causal' if c[2] else 'full'}-{flag_id(c[3])}")
def test_padded_head_dims_compile_without_spills(case):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels import compile as afc

    arch, d, causal, flags = case
    cfg = variant(MMA, arch, "bf16", d, causal, flags)
    report = afc.compile_kernel(cfg).report
    assert report.spills == 0 and report.stack_frame == 0, (cfg.name, report)
