"""flash_bwd_wgmma's producer loading Q and dO by TMA (ops/backward_wgmma.TMA_LOADS), without a GPU: off (the
default) renders no TMA load and the launch plan passes no map; on, producer configs render the elected thread's
copies (tensor maps of q and dout, 1-D bulk copies of lse2 and delta, the full barrier counting one arrival, no
cp.async arrival and no proxy fence after the full wait) and compile clean (0 spills, no stack, no serialised wgmma,
UTMALDG in the SASS); configs without a producer ignore it. The launch plan appends the two maps, encoded with the
geometry the kernel reads (4-D (D, Nq, Hq, B), q's and dout's strides, 64 x block_m boxes, 128 B swizzle), and the
packed launches re-encode them when q or dout moves. GPU checks: tests/test_backward_wgmma_tma_loads_gpu.py."""
import ctypes

import numpy as np
import pytest

from autoflash.kernels import packed_sequence, tma
from autoflash.kernels.compile import compile_kernel
from autoflash.kernels.render import render
from autoflash.ops import backward_wgmma
from autoflash.ops.backward_gpu import POINTERS, BackwardLaunch
from autoflash.ops.backward_kernels import check_inputs
from autoflash.ops.forward_base import dense_strides

from sass import sass
from test_backward import specs
from test_backward_strided import BNHD, QKV, assert_args_match, signature, views
from test_backward_wgmma import _valid_configs, cfg

W = backward_wgmma.TEMPLATE
B, H, N, D = 2, 4, 40, 128
# the served producer tiles (bm64 bn128 w12 s2) and the other producer shapes the space holds
SERVED = [cfg(dt, d, c, bm=64, bn=128, warps=12, stages=2) for dt in ("bf16", "fp16") for d in (64, 128)
          for c in (False, True)]
MAP_ARGS = ["const __grid_constant__ TmaDesc tma_q", "const __grid_constant__ TmaDesc tma_do"]


@pytest.fixture
def on(monkeypatch):
    monkeypatch.setattr(backward_wgmma, "TMA_LOADS", True)


def producer_configs():
    """Every valid producer config (both dQ paths, stages 2 and 3, deterministic)."""
    configs = [c for _, c in _valid_configs("split") if W.producer(c)]
    return configs + [c.replace(dq_via_producer=m) for c in SERVED for m in (0, 1) if W.dq_mode(c) != m]


def test_off_by_default_and_renders_no_tma_load():
    assert backward_wgmma.TMA_LOADS is False
    for c in producer_configs():
        source = render(c)
        assert "tma_load_4d" not in source and "TMA_LOADS" not in source and "tma_q" not in source, c.name
        assert "cp_async_arrive(full_bar + 8 * stage);" in source, c.name


def test_on_producer_configs_load_by_tma(on):
    configs = producer_configs()
    assert len(configs) >= 20
    for c in configs:
        assert W.tma_loads(c)
        source = render(c)
        assert signature(source, c.name)[-2:] == MAP_ARGS, c.name
        assert "mbar_init(full_bar + 8 * s, 1);" in source and "cp_async_arrive(full_bar" not in source, c.name
        assert source.count("tma_load_4d(base + ") == 2 and source.count("bulk_load(base + ") == 2, c.name
        # the consumers' fence after the full wait is gone (the one left: the no-producer branch, never run)
        assert source.count("fence_async_smem();  // cp.async data (generic proxy) is read by wgmma") == 1, c.name
        assert "if (threadIdx.x % 128 == 0)" in source, c.name


def test_on_configs_without_a_producer_render_as_off(on):
    plain = [c for _, c in _valid_configs("split") if not W.producer(c)]
    assert plain
    rendered = {c.name: render(c) for c in plain}
    backward_wgmma.TMA_LOADS = False
    for c in plain:
        assert not W.tma_loads(c) and render(c) == rendered[c.name], c.name


@pytest.mark.parametrize("c", SERVED + [SERVED[1].replace(stages=3),
                                        SERVED[2].replace(dq_via_producer=0), cfg("bf16", 128, True, bm=64, bn=128,
                                                                                   warps=12, deterministic=True)],
                         ids=lambda c: c.name)
def test_on_compiles_clean_with_tma_copies(on, c, tmp_path):
    compiled = compile_kernel(c, use_cache=False)
    rep = compiled.report
    assert rep.spills == 0 and rep.stack_frame == 0 and not rep.wgmma_serialized, rep
    code = sass(compiled.cubin, tmp_path, c.name)
    assert code.count("UTMALDG") == 2 * (c.head_dim // 64), c.name  # Q's and dO's boxes, one per 64 columns
    assert "UBLKCP" in code and "LDGSTS" in code  # lse2 / delta by bulk copies; K, V still by cp.async


# ---------------------------------------------------------------- launch arguments
@pytest.fixture
def encoded(monkeypatch):
    """cuTensorMapEncodeTiled's stand-in: records each call and writes the pointer into the map's first 8 bytes."""
    calls = []

    def encode(address, data_type, rank, ptr, dims, strides, box, elem_strides, interleave, swizzle, l2, oob):
        calls.append(dict(ptr=ptr, dims=list(dims)[:rank], strides=list(strides)[:rank - 1], box=list(box)[:rank],
                          swizzle=swizzle, oob=oob, dtype=data_type))
        ctypes.c_uint64.from_address(address).value = ptr
        return 0

    monkeypatch.setattr(tma, "_encode_fn", lambda: encode)
    monkeypatch.setattr(tma, "_CACHE", tma._MapCache(size=8))
    return calls


def fake(c):
    from test_backward_host_plans import fake_kernel
    return fake_kernel(c)


def map_pointer(arg) -> int:
    return ctypes.c_uint64.from_address(arg.ptr).value


def test_off_launch_passes_no_map():
    plan = BackwardLaunch(fake(SERVED[0]), check_inputs(**specs(d=64), causal=False), 0.1)
    assert not plan.tma_loads
    main = plan.launches(tuple(np.uint64(0x1000 * i) for i in range(1, 19)))[1][4]
    assert_args_match(render(SERVED[0]), SERVED[0].name, main)


def test_on_launch_appends_q_and_dout_maps(on, encoded):
    pytest.importorskip("cupy")
    c = SERVED[1]  # bf16 D 64 causal
    p = check_inputs(**specs(b=B, hq=4, hkv=2, nq=33, nk=65, d=64), causal=True)
    plan = BackwardLaunch(fake(c), p, 0.1)
    ptrs = tuple(np.uint64(0x10000 * i) for i in range(1, 19))
    main = plan.launches(ptrs)[1][4]
    params = signature(render(c), c.name)
    assert len(main) == len(params) and params[-2:] == MAP_ARGS
    assert_args_match(render(c).replace("const __grid_constant__ TmaDesc", "TmaDesc*"), c.name,
                      main[:-2] + (np.uint64(0), np.uint64(0)))
    assert [map_pointer(a) for a in main[-2:]] == [int(ptrs[POINTERS.index("q")]), int(ptrs[POINTERS.index("dout")])]
    q, do = encoded
    for call in encoded:  # (D, Nq, Hq, B), contiguous strides in bytes, 64 columns x block_m tokens, bf16
        assert call["dims"] == [64, 33, 4, B] and call["strides"] == [64 * 2, 33 * 64 * 2, 4 * 33 * 64 * 2]
        assert call["box"] == [64, 64, 1, 1] and call["swizzle"] == 3 and call["oob"] == 0 and call["dtype"] == 9


def test_on_strided_maps_take_q_and_dout_strides(on, encoded):
    pytest.importorskip("cupy")
    c = SERVED[3]  # bf16 D 128 causal, views
    s, strides = views()
    p = check_inputs(**s, causal=True, strides=strides)
    p.strides = p.strides + ((N * H * D, D, H * D),) * 3
    plan = BackwardLaunch(fake(c), p, 0.1)
    main = plan.launches(tuple(np.uint64(0x10000 * i) for i in range(1, 19)))[1][4]
    assert len(main) == len(signature(render(c), c.name))
    q, do = encoded
    assert q["dims"] == do["dims"] == [D, N, H, B] and q["box"] == [64, 64, 1, 1]
    assert q["strides"] == [2 * x for x in (QKV[2], QKV[1], QKV[0])]  # token, head, batch
    assert do["strides"] == [2 * x for x in (BNHD[2], BNHD[1], BNHD[0])]


def test_on_packed_launch_reencodes_maps_when_q_or_dout_moves(on, encoded, monkeypatch):
    from cupy.cuda import driver as cuda_driver
    from test_backward_host_plans import Driver

    drv = Driver()
    monkeypatch.setattr(cuda_driver, "launchKernel", drv)
    monkeypatch.setattr(packed_sequence, "ensure_context", lambda: None)
    c = SERVED[2]  # bf16 D 128
    plan = BackwardLaunch(fake(c), check_inputs(**specs(d=128), causal=False), 0.1)
    packed = plan.packed()
    n_main = len(signature(render(c), c.name))
    main = packed.launches[1]

    def maps() -> list[int]:  # the pointers inside the struct arguments the driver reads
        return [ctypes.c_uint64.from_address(int(main.params[i])).value for i in (n_main - 2, n_main - 1)]

    def call(q, dout, k=0x3000000):
        ptrs = plan.pointers(q, k, k + 0x100000, 0x4000000, 0x5000000, dout, 0x6000000, 0x7000000, 0x8000000,
                             0x9000000)
        packed(ptrs, 0)
        return maps()

    assert call(0x1000000, 0x2000000) == [0x1000000, 0x2000000]
    assert len(encoded) == 2
    assert call(0x1000000, 0x2000000) == [0x1000000, 0x2000000] and len(encoded) == 2  # same pointers: no encode
    assert call(0x1100000, 0x2000000) == [0x1100000, 0x2000000]
    assert call(0x1100000, 0x2200000) == [0x1100000, 0x2200000]
    assert call(0x1000000, 0x2000000) == [0x1000000, 0x2000000] and len(encoded) == 4  # back: cached maps
    assert call(0x1000000, 0x2000000, k=0x3300000) == [0x1000000, 0x2000000]  # k moved: maps rebuilt, same bytes
    assert len(drv) == 3 * 6


def test_mma_backward_takes_no_map(on):
    from autoflash.ops.backward import TEMPLATE as MMA
    from test_backward_wgmma import key

    c = MMA.default("sm_90", key("bf16", 64, False))
    plan = BackwardLaunch(fake(c), check_inputs(**specs(d=64), causal=False), 0.1)
    assert not plan.tma_loads


def test_size_one_dims_encode_valid_strides(on, encoded):
    """seq_q 1, one head, one batch: contiguous strides, each a 16-byte multiple."""
    pytest.importorskip("cupy")
    c = SERVED[0]
    p = check_inputs(**specs(b=1, hq=1, hkv=1, nq=1, nk=1, d=64), causal=False)
    BackwardLaunch(fake(c), p, 0.1).launches(tuple(np.uint64(0x10000 * i) for i in range(1, 19)))
    assert all(s % 16 == 0 and s > 0 for call in encoded for s in call["strides"])
    assert encoded[0]["dims"] == [64, 1, 1, 1]
    assert dense_strides((1, 1, 1, 64))[:3] == (64, 64, 64)
