"""flash_fwd_mma without a GPU: the rules, every problem key renders, representative
configs compile for each arch without spills, and the code uses the tensor cores."""
import re

import pytest

from autoflash import ConfigError, KernelConfig
from autoflash.kernels.archs import ARCHS
from autoflash.kernels.render import render
from autoflash.kernels.registry import TEMPLATES
from conftest import fwd_key as K
from sass import sass as read_sass

MMA = TEMPLATES["flash_fwd_mma"]


def cfg(**kw):
    base = dict(template="flash_fwd_mma", arch="sm_90", dtype="bf16", head_dim=128, causal=False,
                block_m=128, block_n=64, warps=8, stages=2)
    base.update(kw)
    return KernelConfig(**base)


# ------------------------------------------------------------------ rules
def test_registered_and_default_is_valid_everywhere():
    for arch in MMA.archs:
        for dtype in MMA.dtypes:
            for d in MMA.head_dims:
                for causal in (False, True):
                    c = MMA.default(arch, K(dtype, d, causal))
                    assert c.template == "flash_fwd_mma" and not c.problems(), c.name


@pytest.mark.parametrize("bad, why", [
    (dict(block_m=192, warps=8), "not a multiple of 16 rows"),  # 192 rows over 8 warps of 16
    (dict(block_m=128, warps=2), "mma tiles of 16 rows per warp"),  # 4 tiles a warp: over the limit
    (dict(head_dim=256, block_m=128, warps=4, block_n=128, stages=1), "registers per thread"),
    (dict(arch="sm_89", block_n=128, stages=2), "shared memory"),  # 99 KB on sm_89
    (dict(arch="sm_70"), "does not support arch"),
    (dict(dtype="fp32"), "does not support dtype"),
    (dict(head_dim=44), "head_dim 44"),  # not a multiple of 8
    (dict(block_n=48), "block_n=48 is not one of"),
    (dict(thread_m=4), "thread_m"),
    (dict(block_m=256, warps=16, block_n=64), "registers x 512 threads"),
])
def test_rule_breakers_are_rejected(bad, why):
    c = cfg(**bad)
    problems = c.problems()
    assert problems and any(why in p for p in problems), problems
    with pytest.raises(ConfigError):
        c.validate()


def test_smem_and_name():
    c = cfg()
    assert MMA.smem_bytes(c) == (128 + 2 * 2 * 64) * (128 + 8) * 2
    assert c.name == "flash_fwd_mma_sm_90_bf16_d128_br128_bc64_w8_s2"


def test_default_raises_for_unsupported():
    with pytest.raises(ValueError):
        MMA.default("sm_90", K("bf16", 44, False))


# ------------------------------------------------------------------ render
def test_every_problem_key_renders_tensor_core_code():
    """A valid config of every (arch, dtype, head dim, causal) renders mma.sync code of its dtype
    (tests/test_render.py renders every valid config of the space)."""
    keys = 0
    for arch in MMA.archs:
        for dtype in MMA.dtypes:
            for d in MMA.head_dims:
                for causal in (False, True):
                    c = next(c for c in MMA.space(arch, K(dtype, d, causal)) if not c.problems())
                    src = render(c)
                    assert c.name in src and "mma.sync.aligned.m16n8k16" in src
                    assert ("bf16.bf16" in src) == (dtype == "bf16")
                    keys += 1
    assert keys == len(MMA.archs) * len(MMA.dtypes) * len(MMA.head_dims) * 2


# ------------------------------------------------------------------ compile
cupy = pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
from autoflash.kernels import compile as afc  # noqa: E402

REPRESENTATIVE = [
    MMA.default("sm_90", K("bf16", 128, False)),
    MMA.default("sm_90", K("fp16", 64, True)),
    MMA.default("sm_80", K("bf16", 256, False)),
    MMA.default("sm_86", K("fp16", 128, True)),
    MMA.default("sm_89", K("bf16", 96, False)),
    cfg(block_m=128, block_n=32, warps=4, stages=3, causal=True),  # the software-pipelined loop
]


@pytest.mark.parametrize("c", REPRESENTATIVE, ids=lambda c: c.name)
def test_representative_configs_compile_without_spills(c):
    kernel = afc.compile_kernel(c)
    assert kernel.cubin[:4] == b"\x7fELF"
    assert kernel.report.spills == 0 and kernel.report.stack_frame == 0, kernel.report
    assert kernel.report.registers <= 255
    assert MMA.smem_bytes(c) + kernel.report.static_smem <= ARCHS[c.arch].smem_per_block


def test_ptx_uses_mma_ldmatrix_cp_async():
    from cupy.cuda import nvrtc

    c = REPRESENTATIVE[0]
    prog = nvrtc.createProgram(render(c), f"{c.name}.cu", [], [])
    try:
        opts = [o.replace("sm_", "compute_") if o.startswith("--gpu-architecture") else o
                for o in afc.nvrtc_options(c) if not o.startswith("--ptxas")]
        nvrtc.compileProgram(prog, opts)
        ptx = nvrtc.getPTX(prog)
    finally:
        nvrtc.destroyProgram(prog)
    ptx = ptx.decode() if isinstance(ptx, bytes) else ptx
    assert "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32" in ptx
    assert "ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16" in ptx
    assert "cp.async.cg.shared.global" in ptx
    assert "ex2.approx" in ptx


def test_sass_has_hmma_and_no_local_memory(tmp_path):
    c = REPRESENTATIVE[0]
    sass = read_sass(afc.compile_kernel(c).cubin, tmp_path)
    assert len(re.findall(r"\bHMMA\.16816\.F32", sass)) >= 64
    assert "LDSM" in sass and "LDGSTS" in sass
    assert not re.search(r"\b(LDL|STL)\b", sass), "local memory (spills) in the SASS"
