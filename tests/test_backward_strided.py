"""flash_bwd_wgmma on strided inputs and outputs (issue 16's training step), without a GPU: its three kernels take
(batch, head, token) strides in every valid config (flash_bwd_mma's none), check_inputs without strides keeps the
contiguous checks, with strides it accepts views whose rows can be read in
place (q, k, v of a fused projection, a transposed grad_out) and refuses the rest clearly, the launch plan passes the
strides where each kernel declares them (CuPy's arguments and the packed launches agree), and the served tiles
compile clean (0 spills, no stack, no serialised wgmma). The GPU checks: tests/test_backward_strided_gpu.py."""
import re

import numpy as np
import pytest

from autoflash.kernels.render import render
from autoflash.ops import backward_wgmma
from autoflash.ops.backward_gpu import BackwardLaunch
from autoflash.ops.backward_kernels import check_inputs, row_strides
from autoflash.ops.forward_base import dense_strides

from test_backward import specs, spec
from test_backward_wgmma import _valid_configs, cfg, key

B, H, N, D = 2, 4, 40, 128
QKV = (N * 3 * H * D, D, 3 * H * D, 1)  # q, k or v of qkv.view(B, N, 3, H, D).unbind(2), then .transpose(1, 2)
BNHD = (N * H * D, D, H * D, 1)  # a (B, N, H, D) tensor transposed to (B, H, N, D), e.g. grad_out
# the served tiles (tuned_configs/sm_90.json: bm64 bn128 w12 s2) and the deterministic defaults
SERVED = [cfg(dt, d, c, bm=64, bn=128, warps=12, stages=2) for dt in ("bf16", "fp16") for d in (64, 128)
          for c in (False, True)]
DETERMINISTIC = [backward_wgmma.serving_config("sm_90a", key("bf16", d, c, deterministic=True)) for d in (64, 128)
                 for c in (False, True)]


def signature(source: str, name: str) -> list[str]:
    """The parameter declarations of kernel `name` in a rendered source."""
    at = source.index(f"{name}(const")
    return [re.sub(r"\s+", " ", p).strip() for p in source[at + len(name) + 1:source.index(")", at)].split(",")]


def test_flash_bwd_mma_takes_no_stride_argument():
    from autoflash.ops.backward import TEMPLATE as MMA

    for d in (64, 128, 256):
        c = MMA.default("sm_90", key("bf16", d, True))
        source = render(c)
        assert not backward_wgmma.takes_strides(c)
        assert signature(source, c.name)[-1] != "int dv_sn" and "dq_sb" not in source, c.name


def test_every_valid_config_takes_strides():
    configs = [c for _, c in _valid_configs("split")] + SERVED + DETERMINISTIC
    for c in configs:
        assert backward_wgmma.takes_strides(c)
        source = render(c)
        main = signature(source, c.name)
        if main[-1] == "int n_blocks":  # (PERSISTENT's block count, last)
            main = main[:-1]
        if main[-2:] == ["int full_blocks", "int parts"]:  # (TAIL_SPLIT's grid, after the strides)
            main = main[:-2]
        assert main[-18:] == [f"{t} {n}_{s}" for n in ("q", "k", "v", "do", "dk", "dv")
                              for t, s in (("long long", "sb"), ("long long", "sh"), ("int", "sn"))], c.name
        assert signature(source, c.name + "_dq")[2:] == ["int seq_q", "int heads_q", "float scale", "long long dq_sb",
                                                         "long long dq_sh", "int dq_sn"]
        pre = signature(source, c.name + "_pre")
        pre = pre[:-1] if pre[-1] == "int tail_words" else pre
        assert pre[-7:] == ["int heads_q", "long long o_sb", "long long o_sh",
                                                           "int o_sn", "long long do_sb", "long long do_sh", "int do_sn"]


# ---------------------------------------------------------------- input checks
def views(q=QKV, k=QKV, v=QKV, out=None, grad_out=BNHD, b=B, h=H, n=N, d=D):
    """specs() for (B, H, N, D) views with these strides (out contiguous, as the forward writes it)."""
    s = specs(b=b, hq=h, hkv=h, nq=n, nk=n, d=d, **{t: spec(t, (b, h, n, d), contiguous=False)
                                                   for t, st in (("q", q), ("k", k), ("v", v), ("grad_out", grad_out))
                                                   if st != dense_strides((b, h, n, d))})
    shape = (b, h, n, d)
    strides = tuple(st or dense_strides(shape) for st in (q, k, v, out, grad_out))
    return s, strides


def test_on_accepts_views_of_a_fused_projection_and_a_transposed_grad_out():
    s, strides = views()
    p = check_inputs(**s, causal=True, strides=strides)
    assert p.strides == ((N * 3 * H * D, D, 3 * H * D),) * 3 + ((H * N * D, N * D, D), (N * H * D, D, H * D))


def test_on_accepts_gqa_heads_of_one_fused_buffer():
    """(B, N, Hq + 2 Hkv, D) split into q (8 heads), k and v (2 each): token stride 12 D for all three."""
    hq, hkv, d = 8, 2, 64
    row = (hq + 2 * hkv) * d
    s = specs(b=B, hq=hq, hkv=hkv, nq=N, nk=N, d=d, q=spec("q", (B, hq, N, d), contiguous=False),
              k=spec("k", (B, hkv, N, d), contiguous=False), v=spec("v", (B, hkv, N, d), contiguous=False))
    strides = ((N * row, d, row, 1),) * 3 + (dense_strides((B, hq, N, d)),) * 2
    p = check_inputs(**s, causal=False, strides=strides)
    assert p.strides[:3] == ((N * row, d, row),) * 3


def test_on_contiguous_inputs_take_their_dense_strides():
    s = specs(d=64)
    strides = tuple(dense_strides(s[t].shape) for t in ("q", "k", "v", "out", "grad_out"))
    assert check_inputs(**s, causal=True, strides=strides).strides == tuple(x[:3] for x in strides)
    assert check_inputs(**s, causal=True).strides is None


@pytest.mark.parametrize("bad,message", [
    (dict(q=(N * 3 * H * D, D, 3 * H * D, 2)), "q's head dim is not contiguous"),
    (dict(k=(N * (3 * H * D + 4), D, 3 * H * D + 4, 1)), "k's rows are not 16-byte aligned"),
    (dict(grad_out=(N * H * D, D + 4, H * D, 1)), "grad_out's rows are not 16-byte aligned"),
    (dict(v=(N * 3 * H * D, D, 2**23, 1)), "v's token stride 8388608 is too large"),
])
def test_on_refuses_rows_it_cannot_read(bad, message):
    s, strides = views(**bad)
    with pytest.raises(ValueError, match=message):
        check_inputs(**s, causal=True, strides=strides)


def test_on_refuses_a_misaligned_pointer_and_a_strided_lse():
    s, strides = views()
    s["q"] = spec("q", (B, H, N, D), contiguous=False, aligned=False)
    with pytest.raises(ValueError, match="q's data pointer is not 16-byte aligned"):
        check_inputs(**s, causal=True, strides=strides)
    s, strides = views()
    s["lse"] = spec("lse", (B, H, N), "fp32", contiguous=False)
    with pytest.raises(ValueError, match="lse is not contiguous"):
        check_inputs(**s, causal=True, strides=strides)


def test_off_refuses_views_as_today():
    s, _ = views()
    with pytest.raises(ValueError, match="q is not contiguous; pass q.contiguous()"):
        check_inputs(**s, causal=True)


def test_size_one_dims_take_valid_strides():
    assert row_strides("q", (1, 1, 1, 64), (7, 5, 3, 1), 2) == (64, 64, 64)


# ---------------------------------------------------------------- launch arguments
def fake(c):
    from test_backward_host_plans import fake_kernel
    return fake_kernel(c)


ARG_TYPES = {"long long": np.int64, "int": np.int32, "float": np.float32, "size_t": np.uint64}


def assert_args_match(source: str, name: str, args: tuple):
    """Each argument has the type of the kernel parameter it lands in (pointers: 64-bit)."""
    params = signature(source, name)
    assert len(params) == len(args), name
    for param, arg in zip(params, args):
        kind = param.rsplit(" ", 1)[0]
        if "*" in param:
            assert isinstance(arg, (np.uint64, int)), (name, param, arg)
        else:
            assert type(arg) is ARG_TYPES[kind], (name, param, type(arg))


def test_launch_plan_passes_the_strides_where_the_kernels_declare_them():
    c = SERVED[3]  # bf16 D 128 causal
    s, strides = views()
    p = check_inputs(**s, causal=True, strides=strides)
    grads = ((N * H * D, D, H * D),) * 3  # torch.empty_like of the qkv views
    p.strides = p.strides + grads
    plan = BackwardLaunch(fake(c), p, 0.1)
    source = render(c)
    ptrs = tuple(np.uint64(0x1000 * i) for i in range(1, 19))
    (pre, pre_grid, _, _, pre_args), (main, _, _, _, main_args), (conv, conv_grid, _, _, conv_args) = \
        plan.launches(ptrs)
    for name, args in ((c.name + "_pre", pre_args), (c.name, main_args), (c.name + "_dq", conv_args)):
        assert_args_match(source, name, args)
    assert [int(x) for x in main_args[-18:]] == [x for st in (strides[0], strides[1], strides[2], strides[4],
                                                               *grads[1:]) for x in st[:3]]
    assert [int(x) for x in pre_args[-7:]] == [H, *dense_strides((B, H, N, D))[:3], *BNHD[:3]]
    assert [int(x) for x in conv_args[-3:]] == list(grads[0]) and int(conv_args[2]) == N
    assert conv_grid == (-(-N // (256 // (D // 8))), B * H, 1)


def test_contiguous_problem_passes_contiguous_strides():
    c = SERVED[0]
    p = check_inputs(**specs(b=B, hq=4, hkv=2, nq=33, nk=65, d=64), causal=False)
    plan = BackwardLaunch(fake(c), p, 0.1)
    main_args = plan.launches(tuple(np.uint64(0) for _ in range(18)))[1][4]
    q, kv = dense_strides((B, 4, 33, 64))[:3], dense_strides((B, 2, 65, 64))[:3]
    assert [int(x) for x in main_args[-18:]] == [*q, *kv, *kv, *q, *kv, *kv]


def test_packed_launches_are_cupys(monkeypatch):
    """The strided plan's packed argument slots hold the bytes CuPy's launcher gets."""
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from cupy.cuda import driver as cuda_driver

    from autoflash.kernels import packed_sequence
    from test_backward_host_plans import Driver, slot

    drv = Driver()
    monkeypatch.setattr(cuda_driver, "launchKernel", drv)
    monkeypatch.setattr(packed_sequence, "ensure_context", lambda: None)
    s, strides = views()
    p = check_inputs(**s, causal=True, strides=strides)
    p.strides = p.strides + ((N * H * D, D, H * D),) * 3
    plan = BackwardLaunch(fake(SERVED[3]), p, 0.1)
    packed = plan.packed()
    ptrs = [(1 << 32) + 0x1000 * i for i in range(1, 11)]
    plan(*ptrs, "stream")
    packed(plan.pointers(*ptrs), 0x77)
    for n, f in enumerate((plan.pre, plan.main, plan.conv)):
        ((_, _, args, _, _),) = f.calls
        assert len(args) == len(packed.launches[n].values)
        for i, a in enumerate(args):
            raw = np.asarray(a).tobytes()
            assert slot(packed, n, i)[:len(raw)] == raw, (f.name, i)


# ---------------------------------------------------------------- compile gate
@pytest.mark.parametrize("c", SERVED + DETERMINISTIC, ids=lambda c: c.name)
def test_served_tiles_compile_clean(c):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels.compile import compile_kernel

    report = compile_kernel(c).report
    assert report.spills == 0 and report.stack_frame == 0 and not report.wgmma_serialized, report

