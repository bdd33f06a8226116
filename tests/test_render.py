"""Rendering: every config of the search space renders; constants are specialised."""
import pytest

from autoflash import KernelConfig
from autoflash.kernels.render import render, templates_dir
from autoflash.kernels.registry import templates_of
from conftest import fwd_key as K


def all_valid_configs(variant):
    for arch in variant.archs:
        for dtype in variant.dtypes:
            for d in variant.head_dims:
                for causal in (False, True):
                    for cfg in variant.space(arch, K(dtype, d, causal)):
                        if not cfg.problems():
                            yield cfg


@pytest.mark.parametrize("name", sorted(templates_of("forward")))
def test_every_valid_config_renders(name):
    count = 0
    for cfg in all_valid_configs(templates_of("forward")[name]):
        src = render(cfg)
        assert f"{cfg.name}(" in src
        assert f"constexpr int HEAD_DIM = {cfg.head_dim};" in src
        count += 1
    assert count > 0


def test_constants_are_specialised():
    cfg = KernelConfig(template="flash_fwd_simt", arch="sm_80", dtype="bf16", head_dim=96, causal=True,
                       block_m=32, block_n=32, warps=4, thread_m=4)
    src = render(cfg)
    assert "typedef __nv_bfloat16 elem_t;" in src
    assert "constexpr bool CAUSAL = true;" in src
    assert "constexpr int BLOCK_M = 32;" in src
    assert "{{" not in src and "{%" not in src


def test_invalid_config_is_not_rendered():
    cfg = KernelConfig(template="flash_fwd_simt", arch="sm_80", dtype="bf16", head_dim=96, causal=True,
                       block_m=32, block_n=32, warps=3, thread_m=4)
    with pytest.raises(ValueError, match="warps"):
        render(cfg)


def test_templates_dir_exists():
    assert (templates_dir() / "common.cuh.j2").is_file()


def test_no_generic_lambdas_in_templates():
    """The H200 machine's NVRTC 13.0 rejects a lambda with an `auto` parameter in device code
    ("host functions are not allowed in JIT mode") where this machine's newer NVRTC accepts it:
    every flash_fwd_wgmma kernel once failed to build there. Keep lambdas' parameters typed."""
    import re

    generic = re.compile(r"\[[^\]\n]*\]\s*\([^)]*\bauto\b[^)]*\)")
    found = [f"{path.name}: {m.group(0)}" for path in sorted(templates_dir().glob("*.j2"))
             for m in generic.finditer(path.read_text())]
    assert not found, found
