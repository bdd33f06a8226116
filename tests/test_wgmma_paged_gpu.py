"""flash_fwd_wgmma with paged K/V on an sm_90 GPU (issue 15's chunked prefill): attention_with_kvcache
with a block_table run on the wgmma paged kernel (kvcache.paged_config pinned to it here, whatever it
prefers) against float64 and against the contiguous cache: shuffled pages of 16/48/64 keys, mixed
cache_seqlens (0, partial pages, shorter than the chunk), GQA/MQA, bottom-right causal, LSE, and cache
slots past each sequence's length (and spare pages) holding NaN, which must not reach the output (rows past
the keys are zero-filled, never read). Other head dims, fp16 and the variants: test_paged_prefill_gpu.py,
whose served paged kernel on sm_90 is this one."""
import pytest

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch")

import autoflash  # noqa: E402
from autoflash.kernels.registry import TEMPLATES  # noqa: E402

from test_paged_gpu import paged_inputs  # noqa: E402  (the same paged test inputs)

WG = TEMPLATES["flash_fwd_wgmma"]


@pytest.fixture(autouse=True)
def wgmma_paged(monkeypatch):
    """kvcache.paged_config -> flash_fwd_wgmma's first paged default for the key."""
    from autoflash.kernels.device import device_arch
    from autoflash.serve import kvcache

    if device_arch(0)[0] not in ("sm_90", "sm_90a"):
        pytest.skip("flash_fwd_wgmma needs an sm_90 GPU")
    used = []

    def config(arch, dev, dtype, head_dim, causal, flags, seq_k):
        key = dict(dtype=dtype, head_dim=head_dim, causal=causal, **dict(flags))
        cfg = next(c for c in (WG.config("sm_90a", key, **kn).replace(paged=True) for kn in WG.default_tiles(key))
                   if not c.problems())
        used.append(cfg)
        return cfg

    monkeypatch.setattr(kvcache, "paged_config", config)
    yield used
    assert used and all(c.template == "flash_fwd_wgmma" and c.paged for c in used)


# The paged-prefill test, collected again here under the autouse fixture above, so it runs on the wgmma kernel's
# default tiles whatever kvcache prefers; check is the same float64 comparison.
from test_paged_prefill_gpu import check, test_paged_prefill_matches_float64_and_the_contiguous_cache  # noqa: E402,F401


# Other dtypes and head dims, and every variant, through the same call: tests/test_paged_prefill_gpu.py (on sm_90
# attention_with_kvcache's paged chunks run this kernel).


@pytest.mark.parametrize("page_size", [16, 64])
def test_slots_past_each_length_are_never_read(page_size):
    max_pages = 512 // page_size
    q, k, v, kp, vp, table = paged_inputs(3, 70, 2, 2, max_pages, page_size, 128, spare=2, seed=page_size)
    lengths = [500, 131, 7]
    unused = torch.ones(kp.shape[:2], dtype=torch.bool)  # (page, row) slots no sequence's keys occupy
    pages = table.cpu()
    for b, n in enumerate(lengths):
        keys = torch.arange(n)
        unused[pages[b, keys // page_size].long(), keys % page_size] = False
    unused = unused.cuda()
    kp[unused] = float("nan")
    vp[unused] = float("nan")
    seqlens = torch.tensor(lengths, dtype=torch.int32, device="cuda")
    o, lse = autoflash.attention_with_kvcache(q, kp, vp, seqlens, block_table=table, causal=True, return_lse=True)
    assert torch.isfinite(o).all()
    check(o, lse, q, k, v, lengths, True)
