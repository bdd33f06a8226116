"""Paged KV caches for decode without a GPU: the `paged` config/key field, what the template
renders and its kernel signature against the plan's arguments, NVRTC compiles without spills,
the page helpers and reference, and the host checks of block tables and page sizes (with a CPU
PyTorch where one is installed). The GPU side is tests/test_paged_gpu.py."""
import re

import numpy as np
import pytest

from autoflash.kernels.config import ConfigError, OpConfig
from autoflash.ops.decode import CHECK_PAGES, DECODE, TIMED_PAGE, DecodeProblem
from autoflash.ops.decode_kernels import DecodeConfig
from autoflash.ops.decode_launch import (DecodePlan, from_pages, reference_decode, shuffled_pages, to_pages)
from fake_decode_kernel import FakeKernel, launch_args_by_name

KEY = {"dtype": "bf16", "head_dim": 128, "m_tiles": 1, "paged": True}


def paged_cfg(**changes):
    return DECODE.default("sm_90", KEY).replace(**changes)


def test_paged_is_a_key_field_and_a_name_part():
    assert "paged" in DECODE.key_fields and DECODE.key_defaults["paged"] == (False,)
    c = paged_cfg()
    assert c.paged and c.name.endswith("_paged") and DECODE.key_of(c)["paged"] is True
    assert not DECODE.default("sm_90", {**KEY, "paged": False}).name.endswith("_paged")
    assert "paged" in DECODE.describe_key(KEY) and "paged" not in DECODE.describe_key({**KEY, "paged": False})


def test_configs_written_before_paging_read_as_unpaged():
    old = {k: v for k, v in paged_cfg().to_dict().items() if k != "paged"}
    c = OpConfig.from_dict(old)
    assert isinstance(c, DecodeConfig) and c.paged is False


def test_paged_refuses_bulk_copy_with_the_reason():
    problems = paged_cfg(bulk_copy=True, l2_prefetch=0).problems()
    assert any("not bulk_copy" in p for p in problems), problems
    with pytest.raises(ConfigError):
        paged_cfg(paged="yes").validate()


def test_render_switches_the_loads_through_the_table():
    from autoflash.kernels.render import render

    paged, plain = render(paged_cfg()), render(paged_cfg(paged=False))
    assert "copy_page_batch(ring, table" in paged and "pages_of_tile(" in paged and "load_kv_paged(" in paged
    assert "copy_page_batch" not in plain and "(void)block_table;" in plain
    assert "(unsigned)p < (unsigned)num_pages ? p : 0" in paged  # the kernel's own guard
    assert "prefetch.global.L2" in paged and "prefetch.global.L2" not in plain  # the table slice, up front


@pytest.mark.parametrize("paged", [False, True])
def test_plan_passes_exactly_the_kernels_parameters(paged, monkeypatch):
    from autoflash.kernels.render import render
    from autoflash.ops import decode_kernels

    monkeypatch.setattr(decode_kernels, "PDL_COMBINE", False)  # the combine through CuPy: recorded

    cfg = paged_cfg(paged=paged)
    page = 16 if paged else 0
    p = DecodeProblem(2, 8, 2, 1, 64, 128, True, page_size=page, num_pages=9 if paged else 0)
    kernel = FakeKernel(cfg)
    plan = DecodePlan(kernel, p, tuple(range(1, 13)), 2, 0.1, 4 if paged else 0)
    plan(1, 2, 3, 4, 5, 6, 7, 8, None, 99)
    named = launch_args_by_name(render(cfg), cfg.name, kernel.function.calls[0])
    assert int(named["block_table"]) == 99 and int(named["page_size"]) == page
    assert int(named["num_pages"]) == p.num_pages and int(named["table_stride"]) == (4 if paged else 0)
    assert int(named["cache_len"]) == 64


def test_plan_refuses_a_kernel_of_the_other_kind():
    p = DecodeProblem(2, 8, 2, 1, 64, 128, True, page_size=16, num_pages=9)
    with pytest.raises(ValueError, match="not paged"):
        DecodePlan(FakeKernel(paged_cfg(paged=False)), p, tuple(range(12)), 1, 0.1, 4)


@pytest.mark.parametrize("arch, head_dim, m_tiles, knobs", [
    ("sm_80", 64, 1, {}), ("sm_80", 128, 2, {}), ("sm_90", 128, 1, {}), ("sm_90", 256, 1, {}),
    ("sm_90", 64, 1, dict(block_n=64, stages=2)), ("sm_90", 64, 1, dict(block_n=16, fused_combine=True,
                                                                          evict_first=True))])
def test_nvrtc_compiles_paged_kernels_without_spills(arch, head_dim, m_tiles, knobs):
    pytest.importorskip("cupy")
    from autoflash.kernels.compile import compile_kernel

    c = DECODE.default(arch, {**KEY, "head_dim": head_dim, "m_tiles": m_tiles}).replace(**knobs)
    log = compile_kernel(c, use_cache=False).log
    section = log.split(f"Compiling entry function '{c.name}'")[1].split("Compiling entry function")[0]
    assert re.search(r"0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads", section), section


def test_paged_problems_of_the_operation():
    bench = DecodeProblem(**DECODE.bench_problem(KEY, 8192, DECODE.default_tokens))
    assert bench.page_size == TIMED_PAGE and bench.seq_k % TIMED_PAGE == 0
    assert bench.num_pages > bench.batch * bench.max_pages  # one page no table names
    checks = [DecodeProblem(**x) for x in DECODE.check_problems(KEY)]
    assert [c.page_size for c in checks] == list(CHECK_PAGES[:len(checks)])
    assert all(c.seq_k % c.page_size == 0 for c in checks)
    assert all(DecodeProblem(**x).page_size == 0 for x in DECODE.check_problems({**KEY, "paged": False}))
    assert DECODE.entry_problem(DECODE.bench_problem(KEY, 1024, DECODE.default_tokens))["page_size"] == TIMED_PAGE


def test_pages_round_trip_and_the_reference_reads_through_them():
    rng = np.random.default_rng(0)
    b, max_pages, page, h, d = 3, 4, 16, 2, 8
    table = shuffled_pages(b, max_pages, b * max_pages + 5, seed=1)
    assert table.dtype == np.int32 and len(set(table.ravel())) == table.size and table.max() < b * max_pages + 5
    k = rng.standard_normal((b, max_pages * page, h, d))
    pages = to_pages(k, table, b * max_pages + 5)
    assert pages.shape == (b * max_pages + 5, page, h, d)
    assert np.array_equal(pages[table[1, 2]], k[1, 2 * page:3 * page])
    assert np.array_equal(from_pages(pages, table), k)
    q = rng.standard_normal((b, 2, 4, d))
    lengths = [0, 17, 64]
    direct = reference_decode(q, k, k, lengths, causal=True, scale=0.3)
    paged = reference_decode(q, from_pages(pages, table), from_pages(pages, table), lengths, causal=True, scale=0.3)
    assert all(np.array_equal(x, y) for x, y in zip(direct, paged))


# --------------------------------------------------------------- host checks (CPU PyTorch)
def _torch():
    return pytest.importorskip("torch")


def _problem(batch=2, max_pages=4, page=16, num_pages=10):
    return DecodeProblem(batch, 8, 2, 1, max_pages * page, 128, True, page_size=page, num_pages=num_pages)


@pytest.mark.parametrize("make, match", [
    (lambda t: [[0, 1]], "block_table is a list"),
    (lambda t: t.zeros((2, 4), dtype=t.int64), "dtype torch.int64"),
    (lambda t: t.zeros((3, 4), dtype=t.int32), r"shape \(3, 4\)"),
    (lambda t: t.zeros((2, 0), dtype=t.int32), "max_pages >= 1"),
    (lambda t: t.zeros((4, 2), dtype=t.int32).t(), "not contiguous"),
])
def test_bad_tables_are_refused(make, match):
    torch = _torch()
    from autoflash.serve.decode import _check_table

    with pytest.raises(ValueError, match=match):
        _check_table(make(torch), 2, 10, 16, torch.device("cpu"))


def test_a_table_on_another_device_is_refused():
    torch = _torch()
    from autoflash.serve.decode import _check_table

    with pytest.raises(ValueError, match="the kernel reads it there"):
        _check_table(torch.zeros((2, 4), dtype=torch.int32), 2, 10, 16, torch.device("meta"))


@pytest.mark.parametrize("page_size", [1, 8, 24, 100])
def test_page_sizes_not_multiples_of_16_are_refused(page_size):
    torch = _torch()
    from autoflash.serve.decode import _check_table

    with pytest.raises(ValueError, match="multiples of 16"):
        _check_table(torch.zeros((2, 4), dtype=torch.int32), 2, 10, page_size, torch.device("cpu"))


@pytest.mark.parametrize("page_size", [16, 48, 64, 256, 1024])
def test_page_sizes_multiples_of_16_are_taken(page_size):
    torch = _torch()
    from autoflash.serve.decode import _check_table

    _check_table(torch.zeros((2, 4), dtype=torch.int32), 2, 10, page_size, torch.device("cpu"))


def test_entries_in_use_must_name_a_page():
    torch = _torch()
    from autoflash.serve.decode import _check_table_entries

    p = _problem()
    table = torch.tensor([[3, 7, -1, 99], [0, 9, 9, 2]], dtype=torch.int32)  # -1, 99 past sequence 0's pages
    _check_table_entries(table, torch.tensor([32, 64], dtype=torch.int32), p)  # seq 0 uses 2 pages: fine
    _check_table_entries(table, torch.tensor([0, 1], dtype=torch.int32), p)
    with pytest.raises(ValueError, match=r"block_table\[0, 2\] = -1 .*first 3 entries"):
        _check_table_entries(table, torch.tensor([33, 64], dtype=torch.int32), p)
    with pytest.raises(ValueError, match=r"block_table\[0, 2\] = -1"):
        _check_table_entries(table, None, p)  # no cache_seqlens: every sequence full
    with pytest.raises(ValueError, match=r"block_table\[1, 0\] = 10 is not a page of the cache \(0..9\)"):
        _check_table_entries(torch.tensor([[1, 2, 3, 4], [10, 0, 0, 0]], dtype=torch.int32),
                             torch.tensor([64, 1], dtype=torch.int32), p)


def test_paged_problems_take_the_tuned_contiguous_knobs_unless_a_paged_entry_exists(monkeypatch):
    from autoflash.serve import decode as serve_decode

    unpaged = DECODE.default("sm_90", {**KEY, "paged": False}).replace(block_n=16, stages=5, bulk_copy=True,
                                                                        l2_prefetch=0)
    monkeypatch.setattr(serve_decode.store, "entries_for_arch", lambda arch: [])
    serve_decode._paged_config.cache_clear()
    key = tuple({**KEY, "paged": False}.items())
    twin = serve_decode._paged_config("sm_90", "H200", key, 4096, 64, unpaged)
    assert twin == unpaged.replace(paged=True, bulk_copy=False, l2_prefetch=128) and not twin.problems()
    tuned = paged_cfg(block_n=64, stages=2, head_dim=64)
    entry = {"config": tuned.to_dict(), "problem": {"batch": 8, "heads_kv": 8, "group": 4, "seq_q": 1, "seq_k": 4096}}
    monkeypatch.setattr(serve_decode.store, "lookup", lambda *a: (entry, "tuned"))
    serve_decode._paged_config.cache_clear()
    assert serve_decode._paged_config("sm_90", "H200", key, 4096, 64, unpaged) == tuned  # timed on this grid
    assert serve_decode._paged_config("sm_90", "H200", key, 4096, 8, unpaged) == twin  # another grid: the twin
    serve_decode._paged_config.cache_clear()
