"""The per-call host path's caches, without a GPU: TMA descriptor cache keys and
eviction, the dispatch cache and when it is dropped, launch plans and argument
builders. GPU behaviour (results stay right across pointers and shapes) is
tests/test_host_path_gpu.py."""
import numpy as np
import pytest

from autoflash import store
from autoflash.kernels import loaded as launch, tma
from autoflash.ops.forward_launch import plan as make_plan
from autoflash.serve import dispatch
from autoflash import KernelConfig
from autoflash.kernels.loaded import LoadedKernel
from autoflash.ops.forward_base import Problem
from autoflash.kernels.registry import TEMPLATES
from autoflash.kernels.elements import LOG2E

from test_store import make_entry
from conftest import fwd_key as K


@pytest.fixture(autouse=True)
def no_context_binding(monkeypatch):
    """No CUDA driver here: a launch's context binding is a no-op (test_host_plans tests it alone)."""
    from autoflash.kernels import packed_sequence
    from autoflash.ops import forward_launch

    monkeypatch.setattr(launch, "ensure_context", lambda: None)
    monkeypatch.setattr(forward_launch, "ensure_context", lambda: None)
    monkeypatch.setattr(packed_sequence, "ensure_context", lambda: None)


# ------------------------------------------------------------ TMA descriptor cache
class FakeMap:
    """Stands in for an encoded TensorMap: remembers what it was encoded from."""

    def __init__(self, *geometry):
        self.geometry = geometry

    def kernel_arg(self):
        return ("arg", self.geometry)


@pytest.fixture
def encodes(monkeypatch):
    """Every (fake) cuTensorMapEncode call, with a fresh 4-entry descriptor cache."""
    made = []

    def fake_encode(*geometry):
        made.append(geometry)
        return FakeMap(*geometry)

    monkeypatch.setattr(tma, "attention_operand_map", fake_encode)
    monkeypatch.setattr(tma, "_QKV_CACHE", tma._MapCache(size=4))
    return made


QS, KS = (8 * 256 * 128, 256 * 128, 128), (4 * 512 * 128, 512 * 128, 128)  # contiguous (batch, head, token) strides
# dtype, B, Hq, Hkv, seq_q, seq_k, D, q/k/v strides, Br, Bc
GEOM = ("bf16", 1, 8, 4, 256, 512, 128, QS, KS, KS, 128, 128)


def test_same_pointers_and_geometry_reuse_the_descriptors(encodes):
    first = tma.qkv_map_args(0x1000, 0x2000, 0x3000, *GEOM)
    again = tma.qkv_map_args(0x1000, 0x2000, 0x3000, *GEOM)
    assert again is first and len(encodes) == 3
    assert [e[0] for e in encodes] == [0x1000, 0x2000, 0x3000]
    assert encodes[0][1:] == ("bf16", 1, 8, 256, 128, QS, 128) and encodes[1][1:] == ("bf16", 1, 4, 512, 128, KS, 128)


def test_same_pointer_new_shape_or_dtype_is_encoded_again(encodes):
    tma.qkv_map_args(0x1000, 0x2000, 0x3000, *GEOM)
    longer = GEOM[:4] + (300,) + GEOM[5:]  # freed and reused by a longer q
    args = tma.qkv_map_args(0x1000, 0x2000, 0x3000, *longer)
    assert args[0] == ("arg", (0x1000, "bf16", 1, 8, 300, 128, QS, 128))
    fp16 = ("fp16",) + GEOM[1:]
    args = tma.qkv_map_args(0x1000, 0x2000, 0x3000, *fp16)
    assert all(a[1][1] == "fp16" for a in args)
    other_tile = GEOM[:10] + (64, 128)
    tma.qkv_map_args(0x1000, 0x2000, 0x3000, *other_tile)
    transposed_q = GEOM[:7] + ((256 * 8 * 128, 128, 8 * 128),) + GEOM[8:]  # same shape, (B, N, H, D) memory
    args = tma.qkv_map_args(0x1000, 0x2000, 0x3000, *transposed_q)
    assert args[0][1][6] == (256 * 8 * 128, 128, 8 * 128)
    assert len(encodes) == 15  # three maps per distinct key, none served stale


def test_new_pointer_same_shape_is_encoded_for_that_pointer(encodes):
    tma.qkv_map_args(0x1000, 0x2000, 0x3000, *GEOM)
    args = tma.qkv_map_args(0x1000, 0x2000, 0x9000, *GEOM)  # a new v tensor
    assert args[2] == ("arg", (0x9000, "bf16", 1, 4, 512, 128, KS, 128))


def test_k_equal_v_shares_one_descriptor(encodes):
    args = tma.qkv_map_args(0x1000, 0x2000, 0x2000, *GEOM)
    assert len(encodes) == 2 and args[1] == args[2]


def test_least_recently_used_entry_is_evicted(encodes):
    for ptr in (0x1000, 0x2000, 0x3000, 0x4000):
        tma.qkv_map_args(ptr, ptr + 1, ptr + 2, *GEOM)
    tma.qkv_map_args(0x1000, 0x1001, 0x1002, *GEOM)  # touch the oldest: 0x2000 is now least recent
    tma.qkv_map_args(0x5000, 0x5001, 0x5002, *GEOM)  # fifth key: evicts 0x2000
    assert len(tma._QKV_CACHE.items) == 4
    n = len(encodes)
    tma.qkv_map_args(0x1000, 0x1001, 0x1002, *GEOM)
    assert len(encodes) == n  # still cached
    tma.qkv_map_args(0x2000, 0x2001, 0x2002, *GEOM)
    assert len(encodes) == n + 3  # was evicted: encoded again


def test_map_cache_builds_once_per_key_and_passes_args():
    cache = tma._MapCache(size=2)
    calls = []

    def make(*args):
        calls.append(args)
        return object()

    a = cache.get(("a",), make, 1, 2)
    assert cache.get(("a",), make, 1, 2) is a and calls == [(1, 2)]
    cache.get(("b",), make, 3)
    cache.get(("c",), make, 4)
    assert list(cache.items) == [("b",), ("c",)]
    cache.clear()
    assert not cache.items


def test_single_operand_cache_key_holds_pointer_and_shape(monkeypatch):
    monkeypatch.setattr(tma, "_CACHE", tma._MapCache(size=8))
    made = []
    monkeypatch.setattr(tma, "attention_operand_map", lambda *g: made.append(g) or FakeMap(*g))
    a = tma.cached_operand_map(0x1000, "bf16", 1, 8, 256, 128, QS, 128)
    assert tma.cached_operand_map(0x1000, "bf16", 1, 8, 256, 128, QS, 128) is a
    assert tma.cached_operand_map(0x1000, "bf16", 1, 8, 257, 128, QS, 128) is not a
    assert tma.cached_operand_map(0x1000, "bf16", 1, 8, 256, 128, (QS[0], 128, 1024), 128) is not a
    assert len(made) == 3


# ------------------------------------------------------------ dispatch cache
@pytest.fixture
def tuned_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "search_dirs", lambda: [tmp_path])
    reads = []
    real = store.entries_for_arch
    monkeypatch.setattr(store, "entries_for_arch", lambda arch: reads.append(arch) or real(arch))
    return tmp_path, reads


H100 = "NVIDIA H100 80GB HBM3"


def test_dispatch_answers_from_its_cache_until_a_file_changes(tuned_dir):
    folder, reads = tuned_dir
    store.write(folder / "sm_90.json", [make_entry(bucket=4096, block_n=32)])
    cfg, how = dispatch.explain("sm_90", H100, "forward", K("fp32", 64, False), 4096)
    assert cfg.block_n == 32 and how.startswith("tuned") and len(reads) == 1
    for _ in range(3):
        assert dispatch.explain("sm_90", H100, "forward", K("fp32", 64, False), 4096) == (cfg, how)
    assert len(reads) == 1  # no re-read, no re-validation
    dispatch.explain("sm_90", H100, "forward", K("fp32", 64, False), 2048)  # another length: its own look-up
    assert len(reads) == 2
    store.write(folder / "sm_90.json", [make_entry(bucket=4096, block_n=64, ms=0.75)])  # retuned
    assert dispatch.explain("sm_90", H100, "forward", K("fp32", 64, False), 4096)[0].block_n == 64
    (folder / "sm_90.json").unlink()
    cfg, how = dispatch.explain("sm_90", H100, "forward", K("fp32", 64, False), 4096)
    assert how == "heuristic default"


def test_dispatch_cache_follows_the_search_folders(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    store.write(a / "sm_90.json", [make_entry(bucket=4096, block_n=32)])
    store.write(b / "sm_90.json", [make_entry(bucket=4096, block_n=64)])
    monkeypatch.setattr(store, "search_dirs", lambda: [a])
    assert dispatch.select("sm_90", H100, "forward", K("fp32", 64, False), 4096).block_n == 32
    monkeypatch.setattr(store, "search_dirs", lambda: [b])
    assert dispatch.select("sm_90", H100, "forward", K("fp32", 64, False), 4096).block_n == 64


def test_dispatch_does_not_cache_a_damaged_file(tuned_dir):
    folder, _ = tuned_dir
    (folder / "sm_90.json").write_text("{not json")
    for _ in range(2):
        with pytest.raises(store.StoreError):
            dispatch.select("sm_90", H100, "forward", K("fp32", 64, False), 4096)


# ------------------------------------------------------------ launch plans and arguments
def test_shared_signature_arguments_are_built_once_per_plan():
    cfg = TEMPLATES["flash_fwd_simt"].default("sm_90", K("fp32", 64, False))
    p = Problem(2, 8, 2, 100, 50, 64, False)
    build = TEMPLATES["flash_fwd_simt"].launch_args(cfg, p, 0.125)
    args = build(16, 32, 48, 64, 0)
    variant = [np.uint64] * 3 + [np.int32] * 2 + [np.float32] + [np.uint64] * 2 + [np.int32]
    assert [type(a) for a in args] == ([np.uint64] * 5 + [np.int32] * 4 + [np.float32, np.int32] + [np.int64] * 12
                                       + variant)
    assert [int(a) for a in args[:9]] == [16, 32, 48, 64, 0, 8, 2, 100, 50]
    assert args[9] == np.float32(0.125 * LOG2E) and int(args[10]) == 0  # causal_offset: top-left
    q, kv = [8 * 100 * 64, 100 * 64, 64], [2 * 50 * 64, 50 * 64, 64]  # contiguous (batch, head, token)
    assert [int(a) for a in args[11:23]] == q + kv + kv + q
    assert [float(a) for a in args[23:]] == [0, 0, 0, -1, -1, 0.0, 0, 0, 0]  # dense, no variant
    strided = Problem(2, 8, 2, 100, 50, 64, True, causal_offset=-50,
                      strides=((1, 2, 3), (4, 5, 6), (7, 8, 9), (10, 11, 12)))
    args = TEMPLATES["flash_fwd_simt"].launch_args(cfg, strided, 0.125)(16, 32, 48, 64, 0)
    assert int(args[10]) == -50 and [int(a) for a in args[11:23]] == list(range(1, 13))


def test_wgmma_arguments_order(encodes):
    wg = TEMPLATES["flash_fwd_wgmma"]
    cfg = wg.default("sm_90a", K("bf16", 128, False))
    p = Problem(2, 4, 2, 256, 512, 128, False)
    args = wg.launch_args(cfg, p, 0.1)(0x1000, 0x2000, 0x3000, 0x4000, 0)
    assert [int(a) for a in args[:9]] == [0x1000, 0x2000, 0x3000, 0x4000, 0, 4, 2, 256, 512]
    assert len(args) == 36 and int(args[10]) == 0  # shared tail (scale, causal_offset, 12 strides), maps, batch, variant tail
    qs, ks = (4 * 256 * 128, 256 * 128, 128), (2 * 512 * 128, 512 * 128, 128)
    assert args[23] == ("arg", (0x1000, "bf16", 2, 4, 256, 128, qs, cfg.block_m))
    assert args[24] == ("arg", (0x2000, "bf16", 2, 2, 512, 128, ks, cfg.block_n))
    assert args[25][1][0] == 0x3000 and int(args[26]) == 2 and type(args[26]) is np.int32
    assert wg.launch_args(cfg, p, 0.1)(0x1000, 0x2000, 0x3000, 0x4000, 0)[23] is args[23]  # cached


class FakeFunction:
    def __init__(self):
        self.calls = []

    def __call__(self, grid, block, args, shared_mem=0, stream=None):
        self.calls.append((grid, block, args, shared_mem, stream))


def fake_kernel(cfg: KernelConfig) -> LoadedKernel:
    """A LoadedKernel without a GPU: what plan() reads, with a recording function."""
    kernel = LoadedKernel.__new__(LoadedKernel)
    kernel.config, kernel.template = cfg, TEMPLATES[cfg.template]
    kernel.smem, kernel.function, kernel._plans = 1234, FakeFunction(), {}
    return kernel


def test_plans_are_cached_per_shape_and_scale():
    kernel = fake_kernel(TEMPLATES["flash_fwd_simt"].default("sm_90", K("fp32", 64, True)))
    p = Problem(2, 8, 2, 100, 50, 64, True)
    plan = make_plan(kernel, p, 0.125)
    assert make_plan(kernel, Problem(2, 8, 2, 100, 50, 64, True), 0.125) is plan
    assert make_plan(kernel, p, 0.5) is not plan
    assert make_plan(kernel, Problem(2, 8, 2, 300, 50, 64, True), 0.125).grid != plan.grid
    assert make_plan(kernel, Problem(2, 8, 2, 100, 50, 64, True, causal_offset=-50), 0.125) is not plan
    transposed = ((100 * 8 * 64, 64, 8 * 64), (50 * 2 * 64, 64, 2 * 64), (50 * 2 * 64, 64, 2 * 64),
                  (8 * 100 * 64, 100 * 64, 64))
    assert make_plan(kernel, Problem(2, 8, 2, 100, 50, 64, True, strides=transposed), 0.125) is not plan
    plan(16, 32, 48, 64, 0, "stream")
    grid, block, args, smem, stream = kernel.function.calls[-1]
    assert grid == kernel.template.grid(kernel.config, p) and block == (kernel.config.threads, 1, 1) and smem == 1234 and stream == "stream"
    assert int(args[3]) == 64 and int(args[7]) == 100


def test_plan_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(LoadedKernel, "MAX_PLANS", 3)
    kernel = fake_kernel(TEMPLATES["flash_fwd_simt"].default("sm_90", K("fp32", 64, False)))
    for n in range(1, 8):
        make_plan(kernel, Problem(1, 1, 1, n, n, 64, False), 0.125)
        assert len(kernel._plans) <= 3


def test_plan_refuses_a_problem_the_kernel_was_not_built_for():
    kernel = fake_kernel(TEMPLATES["flash_fwd_simt"].default("sm_90", K("fp32", 64, False)))
    with pytest.raises(launch.LaunchError, match="cannot run head_dim=128"):
        make_plan(kernel, Problem(1, 1, 1, 8, 8, 128, False), 0.1)
    with pytest.raises(launch.LaunchError, match="causal=True"):
        make_plan(kernel, Problem(1, 1, 1, 8, 8, 64, True), 0.1)


def test_stream_handles_are_made_once_per_pointer():
    pytest.importorskip("cupy")
    a = launch.stream_handle(0x7000)
    assert launch.stream_handle(0x7000) is a and a.ptr == 0x7000
    assert launch.stream_handle(0x7100).ptr == 0x7100


def test_an_encode_without_a_context_names_the_thread_and_its_context(monkeypatch):
    """CUDA_ERROR_INVALID_CONTEXT (201) says what the thread had current (the suite saw it once in a worker thread)."""
    import types

    monkeypatch.setattr(tma, "_encode_fn", lambda: (lambda *a: 201))
    monkeypatch.setattr(tma.ctypes, "CDLL", lambda name: types.SimpleNamespace(cuCtxGetCurrent=lambda ref: 0))
    with pytest.raises(tma.TmaError, match=r"201 \(CUDA_ERROR_INVALID_CONTEXT: thread 'MainThread' has no context "
                                           r"current, cuCtxGetCurrent returned 0\)"):
        tma.encode_tiled(0x100000, "bf16", (128, 64, 1, 1), (256, 16384, 16384), (64, 64, 1, 1))
    monkeypatch.setattr(tma, "_encode_fn", lambda: (lambda *a: 1))  # other codes: the number alone, as before
    with pytest.raises(tma.TmaError, match=r"CUresult 1 \(dims"):
        tma.encode_tiled(0x100000, "bf16", (128, 64, 1, 1), (256, 16384, 16384), (64, 64, 1, 1))


def test_encode_passes_each_pointer_with_the_shared_geometry(monkeypatch):
    calls = []
    monkeypatch.setattr(tma, "_encode_fn", lambda: (lambda *a: calls.append(a) or 0))
    contiguous = (64 * 4096 * 128, 4096 * 128, 128)
    tma.attention_operand_map(0x100000, "bf16", 1, 64, 4096, 128, contiguous, 128)
    tma.attention_operand_map(0x200000, "bf16", 1, 64, 4096, 128, contiguous, 128)
    # a (B=2, N=100, H=8, D=64) tensor seen as (B, H, N, D): token stride H*D, head stride D
    tma.attention_operand_map(0x300000, "fp16", 2, 8, 100, 64, (100 * 8 * 64, 64, 8 * 64), 64)
    (a, b, c) = calls
    assert (a[3], b[3], c[3]) == (0x100000, 0x200000, 0x300000) and a[1] == 9 and c[1] == 6
    assert list(a[4]) == [128, 4096, 64, 1] and list(a[5]) == [256, 4096 * 256, 64 * 4096 * 256]
    assert list(a[6]) == [64, 128, 1, 1]
    assert list(c[4]) == [64, 100, 8, 2] and list(c[5]) == [8 * 128, 128, 100 * 8 * 128] and list(c[6]) == [64, 64, 1, 1]
    assert list(a[7]) == [1, 1, 1, 1] and a[8:] == (0, 3, 3, 0)  # no interleave, 128 B swizzle, L2 256 B, zero fill
    with pytest.raises(tma.TmaError, match="16-byte aligned"):  # geometry cached, pointer still checked
        tma.attention_operand_map(0x100008, "bf16", 1, 64, 4096, 128, contiguous, 128)
    with pytest.raises(tma.TmaError, match="multiples of 16 bytes"):
        tma.attention_operand_map(0x100000, "bf16", 1, 64, 4096, 128, (contiguous[0], 4096 * 128, 132), 128)
