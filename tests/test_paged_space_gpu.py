"""Every config of the paged decode space on a GPU, against float64: every code-distinct kernel (block_n,
warps, stages, l2_prefetch, evict_first, fused_combine) run at every num_splits value of the space, on
small problems with shuffled pages of 16 and 48 keys and per-sequence lengths 0, 1, partial pages and a
full table, so no paged config can fault or go wrong unseen (the H200 paged tune lost its D 64 configs
whose fused merge ran to CUDA_ERROR_ILLEGAL_ADDRESS).

A CUDA fault poisons the process: the first failure names the config and split count; later tests of
the same worker then fail too. The space is split into SHARDS tests per key so pytest-xdist spreads the
compiles (~1 s of NVRTC a kernel; on the H200 machine the 408 kernels of bf16 D 64 took 51 s with -n 16):
`pytest -n 16 tests/test_paged_space_gpu.py -k bf16-d64-mt1`. By default the bf16 m_tiles 1 keys of the
tuned head dims run (fp16 differs only in the mma type and the element conversions, no index or address);
AUTOFLASH_PAGED_SPACE=all runs every key (~10 min with -n 16)."""
import os

import pytest

pytestmark = pytest.mark.gpu
cupy = pytest.importorskip("cupy")

from autoflash.ops.decode_kernels import MMA  # noqa: E402
from autoflash.ops.decode_launch import DecodeProblem, run_checked  # noqa: E402

SHARDS = 16
SPLITS = MMA.knobs["num_splits"]  # 0 (the heuristic), 1 .. 256
KEYS = [(dtype, head_dim, m_tiles) for dtype in ("bf16", "fp16") for head_dim in (64, 128, 256)
        for m_tiles in (1, 2) if m_tiles * head_dim <= 256]
DEFAULT_KEYS = {("bf16", 64, 1), ("bf16", 128, 1)}
# (batch, KV heads, G, Nq, page size, pages a table row holds, lengths): per m_tiles, rows fitting one or
# two 16-row tiles; lengths 0 and 1, one short of a page, one past a page boundary, a full table.
PROBLEMS = {1: [(4, 2, 4, 1, 16, 9, (0, 1, 143, 17)), (3, 1, 8, 2, 48, 4, (192, 0, 49))],
            2: [(3, 2, 8, 3, 16, 7, (1, 112, 47)), (2, 1, 32, 1, 48, 3, (0, 97))]}


def paged_configs(arch: str, dtype: str, head_dim: int, m_tiles: int) -> list:
    """The code-distinct configs (num_splits 0) of the paged space that pass the template's rules."""
    key = {"dtype": dtype, "head_dim": head_dim, "m_tiles": m_tiles, "paged": True, "window": False,
           "softcap": False, "sinks": False, "alibi": False}
    configs = {c.replace(num_splits=0) for c in MMA.space(arch, key, None) if not c.problems()}
    return sorted(configs, key=lambda c: c.name)


@pytest.mark.parametrize("shard", range(SHARDS), ids=lambda s: f"shard{s}")
@pytest.mark.parametrize("dtype, head_dim, m_tiles", KEYS, ids=[f"{t}-d{d}-mt{m}" for t, d, m in KEYS])
def test_every_paged_config_and_split_count(dtype, head_dim, m_tiles, shard):
    from autoflash.kernels.compile import compile_kernel
    from autoflash.kernels.device import device_arch
    from autoflash.kernels.loaded import LoadedKernel

    if (dtype, head_dim, m_tiles) not in DEFAULT_KEYS and os.environ.get("AUTOFLASH_PAGED_SPACE") != "all":
        pytest.skip("AUTOFLASH_PAGED_SPACE=all runs this key (the default: bf16 m_tiles 1, D 64 and 128)")
    arch = device_arch(cupy.cuda.Device().id)[0]
    configs = paged_configs(arch, dtype, head_dim, m_tiles)[shard::SHARDS]
    problems = []
    for batch, heads_kv, group, seq_q, page, max_pages, lengths in PROBLEMS[m_tiles]:
        problems.append((DecodeProblem(batch=batch, heads_q=group * heads_kv, heads_kv=heads_kv, seq_q=seq_q,
                                       seq_k=max_pages * page, head_dim=head_dim, causal=True, page_size=page,
                                       num_pages=batch * max_pages + 2), lengths))
    for cfg in configs:
        kernel = LoadedKernel(compile_kernel(cfg))
        for splits in SPLITS:
            for i, (p, lengths) in enumerate(problems):
                where = f"{cfg.name} num_splits={splits or 'heuristic'} page {p.page_size} lengths {lengths}"
                try:
                    result = run_checked(kernel, p, seed=i, num_splits=splits or None, lengths=lengths)
                except Exception as exc:  # a fault: name the config that caused it
                    raise AssertionError(f"{where}: {type(exc).__name__}: {exc}") from exc
                assert result.passed, f"{where}: {result.describe()}"
