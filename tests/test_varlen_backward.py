"""attention_varlen's backward on the CPU (issue 16 item 2): flash_bwd_mma's varlen mode renders
with the packed layout's extra arguments, compiles for sm_80 and sm_90 with NVRTC without register
spills (ptxas), the launch plan sizes and passes what the kernels declare, flash_bwd_wgmma refuses
the mode, and the checks that refuse bad input or unsupported gradients before any launch.
GPU numbers: tests/test_varlen_backward_gpu.py."""
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from autoflash.kernels.config import OpConfig
from autoflash.kernels.render import render
from autoflash.ops.backward import OPERATION, TEMPLATE
from autoflash.ops.backward_gpu import BackwardLaunch
from autoflash.ops.backward_kernels import BackwardProblem, check_inputs
from autoflash.ops.backward_wgmma import TEMPLATE as WGMMA
from autoflash.ops.forward_base import BOTTOM_RIGHT_PER_SEQUENCE
from autoflash.serve import varlen_grad
from autoflash.serve.api import Operand
from autoflash.serve.errors import InputError
from tests.test_backward import _compile_and_check, key

ROOT = Path(__file__).resolve().parent.parent
VARIANT_SETS = ({}, dict(window=True), dict(softcap=True), dict(sinks=True, alibi=True),
                dict(window=True, softcap=True, sinks=True, alibi=True))


def varlen_default(arch, **kw):
    return TEMPLATE.default(arch, {**key(**kw), "varlen": True})


def params(source: str, name: str) -> list[str]:
    signature = source[source.index(f"{name}(const "):]
    return [p.split()[-1] for p in signature[:signature.index(")")].split(",")]


def test_varlen_renders_the_packed_arguments_and_dense_is_unchanged():
    cfg = varlen_default("sm_90", causal=True)
    assert cfg.varlen and cfg.name.endswith("_varlen") and not cfg.problems()
    source = render(cfg)
    main, pre = params(source, cfg.name), params(source, cfg.name + "_pre")
    assert main[-2:] == ["cu_seqlens_q", "cu_seqlens_k"] and pre[-2:] == ["cu_seqlens_q", "heads_q"]
    assert "BOTTOM_RIGHT_PER_SEQUENCE" in source and "constexpr bool VARLEN = true" in source
    dense = render(cfg.replace(varlen=False))
    assert "constexpr bool VARLEN = false" in dense
    for name in (cfg.name, cfg.name + "_pre"):
        assert not {"cu_seqlens_q", "cu_seqlens_k"} & set(params(dense, name.replace("_varlen", "")))
    assert "seq_s[" not in dense  # the dense kernel reads its lengths from the arguments, as before


def test_flash_bwd_wgmma_refuses_varlen():
    cfg = WGMMA.default("sm_90a", key())
    assert not cfg.problems()
    assert any("no varlen backward" in e for e in cfg.replace(varlen=True).problems())


def test_varlen_is_not_a_key_field():
    """Varlen runs the key's dense entry in its varlen mode: not tuned separately, not in the key."""
    cfg = varlen_default("sm_90")
    assert "varlen" not in OPERATION.key_of(cfg) and OPERATION.key_of(cfg) == key()


@pytest.mark.parametrize("arch", ["sm_80", "sm_86", "sm_90"])
def test_every_varlen_key_has_a_default(arch):
    for d in (64, 128, 256):
        for causal, det in ((False, False), (True, False), (True, True)):
            for flags in VARIANT_SETS:
                if arch == "sm_86" and d == 256 and det:
                    continue  # no dense D 256 deterministic tile fits sm_86's shared memory either
                assert not varlen_default(arch, head_dim=d, causal=causal, deterministic=det, **flags).problems()


COMPILE_CASES = [(arch, dtype, d, causal, det, flags) for arch in ("sm_80", "sm_90") for d in (64, 128, 256)
                 for dtype, causal, det, flags in (("bf16", False, False, {}), ("fp16", True, False, {}),
                                                   ("bf16", True, True, {}),
                                                   ("bf16", True, False, VARIANT_SETS[-1]),
                                                   ("fp16", False, False, VARIANT_SETS[2]))]


@pytest.mark.parametrize("arch,dtype,head_dim,causal,det,flags", COMPILE_CASES)
def test_varlen_default_compiles_without_spills(arch, dtype, head_dim, causal, det, flags):
    _compile_and_check(varlen_default(arch, dtype=dtype, head_dim=head_dim, causal=causal, deterministic=det,
                                      **flags))


def served_mma_entries():
    entries = json.loads((ROOT / "tuned_configs" / "sm_90.json").read_text())["entries"]
    return sorted({OpConfig.from_dict(e["config"]).replace(varlen=True) for e in entries
                   if e["config"]["template"] == "flash_bwd_mma"}, key=lambda c: c.name)


@pytest.mark.parametrize("cfg", served_mma_entries(), ids=lambda c: c.name)
def test_tuned_entries_in_varlen_mode_compile_without_spills_or_are_refused(cfg):
    """What _served_config would run for each tuned flash_bwd_mma entry: the entry in varlen mode, or
    (refused by the rules) the varlen default of its key."""
    if cfg.problems():
        cfg = TEMPLATE.default(cfg.arch, {**OPERATION.key_of(cfg), "varlen": True})
    _compile_and_check(cfg)


def fake_kernel(cfg):
    calls = []

    def fn(name):
        return lambda grid, block, args, **kw: calls.append((name, grid, args))

    return SimpleNamespace(config=cfg, function=fn("main"), function_named=fn, smem=0), calls


def varlen_problem(causal=True, offset=BOTTOM_RIGHT_PER_SEQUENCE):
    p = BackwardProblem(3, 4, 2, 1000, 1200, 128, causal, offset)
    p.total_q, p.total_k = 1500, 2000
    return p


def test_varlen_launch_plan_sizes_the_packed_workspace_and_passes_the_pointers():
    cfg = varlen_default("sm_90", causal=True)
    kernel, calls = fake_kernel(cfg)
    plan = BackwardLaunch(kernel, varlen_problem(), 0.1)
    assert int(plan.n_vec8) == 1500 * 4 * 128 // 8  # the dQ accumulator is packed like dq
    assert plan.pre_grid[1] == 3 * 4 and plan.main_grid == (-(-1200 // cfg.block_n), 2, 3)
    assert int(plan.main_tail[-1]) == BOTTOM_RIGHT_PER_SEQUENCE
    assert plan.workspace_bytes >= 2 * 12 * 1024 * 4 + 1500 * 4 * 128 * 4
    with pytest.raises(ValueError, match="cu_seqlens_q and cu_seqlens_k"):
        plan(*range(1, 11), None)
    plan(*range(1, 11), None, cu_seqlens_q=111, cu_seqlens_k=222)
    args = {name: a for name, _, a in calls}
    source = render(cfg)
    assert [int(x) for x in args["_pre"][-2:]] == [111, 4]
    assert [int(x) for x in args["main"][-2:]] == [111, 222]
    assert len(args["main"]) == len(params(source, cfg.name)) and len(args["_pre"]) == len(
        params(source, cfg.name + "_pre"))


def test_dense_and_varlen_kernels_refuse_the_other_layout():
    with pytest.raises(ValueError, match="packed"):
        BackwardLaunch(fake_kernel(varlen_default("sm_90"))[0], BackwardProblem(1, 2, 2, 64, 64, 128, False), 0.1)
    with pytest.raises(ValueError, match="packed"):
        BackwardLaunch(fake_kernel(TEMPLATE.default("sm_90", key()))[0], varlen_problem(False, 0), 0.1)


class FakeTensor:
    """What serve/varlen_grad's checks read of a torch tensor, without torch."""
    __module__ = "torch"

    def __init__(self, shape, dtype="torch.bfloat16", contiguous=True, ptr=256):
        self.shape, self.dtype, self.device, self._c, self._p = tuple(shape), dtype, "cuda:0", contiguous, ptr

    def is_contiguous(self):
        return self._c

    def data_ptr(self):
        return self._p


def packed(tq=30, tk=40, hq=4, hkv=2, d=128, **change):
    t = dict(q=FakeTensor((tq, hq, d)), k=FakeTensor((tk, hkv, d)), v=FakeTensor((tk, hkv, d)),
             out=FakeTensor((tq, hq, d)), lse=FakeTensor((hq, tq), "torch.float32"), grad_out=FakeTensor((tq, hq, d)))
    t.update(change)
    return t


def test_packed_operands_checked_as_one_batch():
    specs = varlen_grad.check_packed(**packed())
    p = check_inputs(*specs, True)
    assert (p.batch, p.heads_q, p.heads_kv, p.seq_q, p.seq_k, p.head_dim) == (1, 4, 2, 30, 40, 128)


@pytest.mark.parametrize("change,fragment", [
    (dict(q=FakeTensor((30, 4, 128, 1))), "q must have 3 dimensions"),
    (dict(out=FakeTensor((29, 4, 128))), "out must have q's shape"),
    (dict(lse=FakeTensor((30, 4), "torch.float32")), r"lse must be float32 \(heads_q, total_q\)"),
    (dict(lse=FakeTensor((4, 30), "torch.bfloat16")), "lse must be float32"),
    (dict(q=FakeTensor((30, 4, 128), "torch.float32")), "no fp32 path"),
    (dict(q=FakeTensor((30, 4, 96)), out=FakeTensor((30, 4, 96)), grad_out=FakeTensor((30, 4, 96))),
     "differ in batch or head_dim"),
    (dict(k=FakeTensor((40, 3, 128)), v=FakeTensor((40, 3, 128))), "multiple of key/value heads"),
    (dict(grad_out=FakeTensor((30, 4, 128), contiguous=False)), "grad_out is not contiguous"),
    (dict(v=FakeTensor((40, 2, 128), ptr=258)), "16-byte aligned"),
])
def test_packed_operands_refused_before_launch(change, fragment):
    with pytest.raises(ValueError, match=fragment):
        check_inputs(*varlen_grad.check_packed(**packed(**change)), False)


Q = Operand("q", "torch", None, 0, (10, 4, 128), "bf16", 0, strides=(512, 128, 1))


@pytest.mark.parametrize("qo,v_dim,seqused,fragment", [
    (Q, 128, object(), "no backward with seqused_k"),
    (Q, 64, None, r"v's head dim \(64\) != q/k's \(128\)"),
    (Operand("q", "torch", None, 0, (10, 4, 128), "fp32", 0, strides=(512, 128, 1)), 128, None,
     r"attention_varlen\(\) has no backward for dtype fp32"),
    (Operand("q", "torch", None, 0, (10, 4, 100), "bf16", 0, strides=(400, 100, 1)), 100, None,
     "no backward for head_dim 100"),
])
def test_unsupported_gradients_refused_with_a_clear_message(monkeypatch, qo, v_dim, seqused, fragment):
    monkeypatch.setattr(varlen_grad, "device_arch", lambda device: ("sm_90", "NVIDIA H200"))
    k = SimpleNamespace(shape=(12, 2, qo.shape[-1]))
    with pytest.raises(InputError, match=fragment):
        varlen_grad.check_differentiable(qo, k, SimpleNamespace(shape=(12, 2, v_dim)), seqused)


def test_unsupported_arch_refused(monkeypatch):
    monkeypatch.setattr(varlen_grad, "device_arch", lambda device: ("sm_75", "Tesla T4"))
    with pytest.raises(InputError, match="no backward for arch sm_75"):
        varlen_grad.check_differentiable(Q, SimpleNamespace(shape=(12, 2, 128)), SimpleNamespace(shape=(12, 2, 128)),
                                         None)


@pytest.mark.parametrize("flags,expect_tile", [({}, (64, 128)), (dict(softcap=True), (64, 64))])
def test_served_varlen_config_is_the_dense_mma_entry_or_its_varlen_default(monkeypatch, flags, expect_tile):
    """On the H200 the dense key is served by flash_bwd_wgmma; varlen asks dispatch for the
    flash_bwd_mma entry and runs it in varlen mode, or the varlen default where the rules refuse it."""
    seen = {}
    dense = TEMPLATE.config("sm_90", key(**flags), block_m=64, block_n=128, warps=8, stages=2, warps_q=2)

    def explain(arch, device_name, op, k, seq_len, template=None):
        seen.update(op=op, template=template)
        return dense, "tuned"

    monkeypatch.setattr(varlen_grad, "device_arch", lambda device: ("sm_90", "NVIDIA H200"))
    monkeypatch.setattr(varlen_grad.dispatch, "explain", explain)
    cfg = varlen_grad._served_config(0, key(**flags), 1000)
    assert seen == dict(op="backward", template="flash_bwd_mma")
    assert cfg.template == "flash_bwd_mma" and cfg.varlen and (cfg.block_m, cfg.block_n) == expect_tile
    assert not cfg.problems()


def test_pinned_config_must_be_flash_bwd_mma_of_the_key():
    with pytest.raises(InputError, match="no varlen mode"):
        varlen_grad._pinned(WGMMA.default("sm_90a", key()), key())
    with pytest.raises(InputError, match="is for"):
        varlen_grad._pinned(TEMPLATE.default("sm_90", key(causal=True)), key())
    assert varlen_grad._pinned(TEMPLATE.default("sm_90", key()).to_dict(), key()).varlen


def test_attention_varlen_documents_its_gradients():
    from autoflash.serve.varlen import attention_varlen

    for text in ("Differentiable", "seqused_k", "deterministic"):
        assert text in attention_varlen.__doc__
