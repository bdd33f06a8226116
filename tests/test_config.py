"""KernelConfig validation: untrusted configs are rejected with a reason, never rendered."""
import json

import pytest

from autoflash import ConfigError, KernelConfig
from autoflash.kernels.registry import templates_of
from conftest import fwd_key as K

GOOD = dict(template="flash_fwd_simt", arch="sm_90", dtype="fp32", head_dim=64, causal=False,
            block_m=64, block_n=64, warps=8, stages=1, thread_m=4)


def test_good_config_round_trips_through_json():
    cfg = KernelConfig.from_dict(GOOD)
    assert KernelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert cfg.name == "flash_fwd_simt_sm_90_fp32_d64_br64_bc64_w8_s1_tm4"


@pytest.mark.parametrize(
    "change,match",
    [
        ({"template": "flash_fwd_nope"}, "template"),
        ({"template": 'x"; system("rm -rf /")'}, "template"),
        ({"dtype": "fp64"}, "dtype"),
        ({"arch": "sm_90; asm"}, "arch"),
        ({"head_dim": 44}, "head_dim"),  # not a multiple of 8
        ({"head_dim": "64"}, "integer"),
        ({"head_dim": 64.0}, "integer"),
        ({"block_m": True}, "integer"),
        ({"causal": 1}, "causal"),
        ({"block_m": 1 << 40}, "block_m"),
        ({"block_m": -64}, "block_m"),
        ({"warps": 3}, "warps"),
        ({"thread_m": 0}, "thread_m"),
        ({"block_m": 128, "block_n": 128, "head_dim": 256, "warps": 16, "thread_m": 8}, "shared memory"),
        ({"block_m": 64, "warps": 16, "thread_m": 8}, "row group"),
    ],
)
def test_bad_values_are_rejected_with_reason(change, match):
    with pytest.raises(ConfigError, match=match):
        KernelConfig.from_dict({**GOOD, **change})


def test_unknown_and_missing_keys_are_rejected():
    with pytest.raises(ConfigError, match="unknown"):
        KernelConfig.from_dict({**GOOD, "extra_code": "asm volatile"})
    missing = dict(GOOD)
    del missing["block_n"]
    with pytest.raises(ConfigError, match="missing"):
        KernelConfig.from_dict(missing)
    with pytest.raises(ConfigError, match="object"):
        KernelConfig.from_dict(["not", "a", "dict"])


def test_smem_limit_depends_on_arch():
    # D=128 fp32 with 64x64 tiles fits the H100's 227 KB but not the 99 KB of sm_86/sm_89.
    cfg = KernelConfig(**{**GOOD, "head_dim": 128})
    assert not cfg.problems()
    for arch in ("sm_86", "sm_89"):
        assert any("shared memory" in p for p in cfg.replace(arch=arch).problems())


def test_every_default_is_valid():
    for variant in templates_of("forward").values():
        for arch in variant.archs:
            for dtype in variant.dtypes:
                for d in variant.head_dims:
                    for causal in (False, True):
                        cfg = variant.default(arch, K(dtype, d, causal))
                        assert cfg.problems() == [], cfg.name
