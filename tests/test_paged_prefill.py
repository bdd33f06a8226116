"""Chunked prefill on a paged KV cache without a GPU (issue 15 item 3): flash_fwd_mma's `paged`
flag (a config field, not a problem key), what it renders, its kernel signature against the launch
arguments, NVRTC compiles for sm_80 and sm_90 without register spills, the config a paged call runs
(wgmma's paged loads on sm_90, test_wgmma_paged.py; never simt), and the block-table checks (decode's own) reached through
attention_with_kvcache. The GPU side is tests/test_paged_prefill_gpu.py."""
import itertools

import numpy as np
import pytest

from autoflash.kernels.registry import TEMPLATES
from autoflash.kernels.render import render
from autoflash.ops.forward_base import Problem
from conftest import fwd_key as K
from test_forward_signature import NUMPY, SHARED, VARIANT, kernel_params

MMA, SIMT, WGMMA = (TEMPLATES[n] for n in ("flash_fwd_mma", "flash_fwd_simt", "flash_fwd_wgmma"))
PAGED_TAIL = ["const int*", "long long", "int", "int"]  # block_table, table_stride, page_size, num_pages
ALL = dict(window=True, softcap=True, sinks=True, alibi=True)


def paged(arch="sm_90", dtype="bf16", d=128, causal=True, **changes):
    return MMA.default(arch, K(dtype, d, causal)).replace(**{"paged": True, **changes})


def test_paged_is_a_name_part_and_plain_names_stay():
    plain = MMA.default("sm_90", K("bf16", 128, True))
    assert not plain.paged and not plain.name.endswith("_paged")
    assert paged().name == plain.name + "_paged" and not paged().problems()
    assert "paged" not in TEMPLATES["flash_fwd_mma"].key_values  # not a problem-key field


@pytest.mark.parametrize("template, arch, dtype", [(SIMT, "sm_90", "fp16")], ids=["simt"])  # wgmma: test_wgmma_paged.py
def test_other_templates_refuse_paged_configs(template, arch, dtype):
    cfg = template.default(arch, K(dtype, 128, True)).replace(paged=True)
    assert any("does not read paged KV caches" in p for p in cfg.problems()), cfg.problems()


def test_render_reads_kv_through_the_table_only_when_paged():
    on, off = render(paged()), render(paged(paged=False))
    assert "constexpr bool PAGED = true;" in on and "constexpr bool PAGED = false;" in off
    assert "pages_s.row = block_table + batch * table_stride;" in on and "block_table" not in off.split('extern "C"')[1]
    assert "(unsigned)page < (unsigned)pt.num_pages ? page : 0" in on  # the kernel's guard against bad entries
    assert "sp.seq_k = min(max(sp.seq_k, 0), seq_k);" in on  # and against bad lengths


@pytest.mark.parametrize("causal", [False, True])
def test_paged_signature_is_the_contract_plus_four_and_matches_launch_args(causal):
    cfg = paged(causal=causal)
    params = kernel_params(render(cfg))
    assert params == SHARED + VARIANT + PAGED_TAIL
    assert kernel_params(render(cfg.replace(paged=False))) == SHARED + VARIANT  # unpaged: the contract's
    p = Problem(2, 8, 2, 300, 1024, 128, causal, seqused_k=112, block_table=4096, table_stride=16, page_size=64,
                num_pages=40)
    args = MMA.launch_args(cfg, p, 0.1)(16, 32, 48, 64, 0)
    assert len(args) == len(params)
    for a, t in zip(args, params):
        assert type(a) is NUMPY[t], (t, a)
    assert [int(a) for a in args[-4:]] == [4096, 16, 64, 40]
    assert len(MMA.launch_args(cfg.replace(paged=False), p, 0.1)(16, 32, 48, 64, 0)) == len(params) - 4


# The configs the paged path runs by default (serve/kvcache.paged_config: flash_fwd_mma's defaults, the first
# without a spill) for each head dim class, a padded head dim and all variants, on both archs' ptxas, and
# the pipelined loop: no spills (the plain configs run at 240-255 registers).
DEFAULTS = ([(arch, d, causal, {}) for arch, d, causal in itertools.product(("sm_80", "sm_90"), (64, 128, 256),
                                                                            (False, True))]
            + [("sm_90", 80, True, {}), ("sm_80", 192, False, {}), ("sm_90", 128, True, ALL), ("sm_80", 128, False, ALL),
               ("sm_80", 64, True, ALL), ("sm_90", 128, False, {"window": True, "sinks": True})])


@pytest.fixture
def untuned(monkeypatch):
    """paged_config as on a GPU with no tuned mma entry (the sm_90 tuned entries are wgmma)."""
    from autoflash.serve import api, kvcache

    monkeypatch.setattr(api, "choose_config", lambda arch, dev, dtype, d, causal, n, flags:
                        WGMMA.default("sm_90a", {**K(dtype, d, causal), **flags}))
    kvcache.paged_config.cache_clear()
    yield kvcache.paged_config
    kvcache.paged_config.cache_clear()


def _flags(flags):
    return tuple((f, bool(flags.get(f))) for f in ("window", "softcap", "sinks", "alibi"))


@pytest.mark.parametrize("case", DEFAULTS, ids=lambda c: f"{c[0]}-d{c[1]}-{'causal' if c[2] else 'full'}-"
                         f"{'+'.join(c[3]) or 'plain'}")
def test_paged_configs_compile_without_spills(case, untuned):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels import compile as afc

    arch, d, causal, flags = case
    cfg = untuned(arch, "x", "bf16", d, causal, _flags(flags), 4096)
    template = "flash_fwd_wgmma" if arch == "sm_90" else "flash_fwd_mma"  # sm_90: wgmma's paged loads first
    assert cfg.paged and cfg.template == template and not cfg.problems(), cfg.problems()
    assert all(getattr(cfg, f) == bool(flags.get(f)) for f in ALL)
    report = afc.compile_kernel(cfg).report
    assert report.spills == 0 and report.stack_frame == 0, (cfg.name, report)


@pytest.mark.parametrize("arch, causal", list(itertools.product(("sm_80", "sm_90"), (False, True))))
def test_the_pipelined_loop_compiles_paged_without_spills(arch, causal):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels import compile as afc

    cfg = paged(arch, "fp16", 128, causal, block_m=128, block_n=32, warps=4, stages=3)
    report = afc.compile_kernel(cfg).report
    assert report.spills == 0 and report.stack_frame == 0, (cfg.name, report)


def test_paged_config_runs_the_key_s_own_wgmma_or_mma_config_never_simt(monkeypatch):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.serve import api, kvcache

    wgmma = WGMMA.default("sm_90a", K("bf16", 128, True))
    tuned_mma = MMA.config("sm_90", K("bf16", 128, True), block_m=64, block_n=64, warps=4, stages=2)
    simt = SIMT.default("sm_90", K("fp16", 128, True))
    for chosen, expect in ((wgmma, wgmma.replace(paged=True)), (tuned_mma, tuned_mma.replace(paged=True)),
                           (simt, WGMMA.default("sm_90a", K("bf16", 128, True)).replace(paged=True))):
        kvcache.paged_config.cache_clear()
        monkeypatch.setattr(api, "choose_config", lambda *a, chosen=chosen, **k: chosen)
        cfg = kvcache.paged_config("sm_90", "NVIDIA H200", "bf16", 128, True, _flags({}), 4096)
        assert cfg == expect and cfg.paged and cfg.template != "flash_fwd_simt"
    kvcache.paged_config.cache_clear()
    mma = kvcache.paged_config("sm_80", "NVIDIA A100", "bf16", 128, True, _flags({}), 4096)
    assert mma.template == "flash_fwd_mma" and mma.paged  # no wgmma before sm_90
    kvcache.paged_config.cache_clear()


def _torch():
    return pytest.importorskip("torch")


def test_bad_page_sizes_and_tables_are_refused_before_anything_runs():
    """The table's own checks (serve/decode._check_table) come first on the paged prefill path,
    so a CPU PyTorch shows them (entry values are checked on the GPU test)."""
    torch = _torch()
    import autoflash

    q = torch.zeros(2, 40, 4, 64, dtype=torch.bfloat16)
    pages = torch.zeros(10, 24, 2, 64, dtype=torch.bfloat16)
    table = torch.zeros(2, 3, dtype=torch.int32)
    with pytest.raises(ValueError, match="page_size 24"):
        autoflash.attention_with_kvcache(q, pages, pages, block_table=table)
    pages = torch.zeros(10, 16, 2, 64, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="int32"):
        autoflash.attention_with_kvcache(q, pages, pages, block_table=table.long())
    with pytest.raises(ValueError, match="shape"):
        autoflash.attention_with_kvcache(q, pages, pages, block_table=table[:1])


def test_the_reference_of_a_paged_cache_is_the_contiguous_one():
    """What the GPU test compares against: pages laid out by a shuffled table read back through it."""
    from autoflash.ops.decode_launch import from_pages, shuffled_pages, to_pages

    x = np.random.default_rng(0).standard_normal((3, 48 * 4, 2, 8))
    table = shuffled_pages(3, 4, 15, seed=1)
    pages = to_pages(x, table, 15)
    assert pages.shape == (15, 48, 2, 8) and np.array_equal(from_pages(pages, table), x)
