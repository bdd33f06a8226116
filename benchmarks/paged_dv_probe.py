"""Helper M's GPU probe (2026-11-29, README's paged-prefill and Dqk != Dv rows): chunked prefill on a paged cache vs the contiguous cache
and SDPA (explicit bottom-right mask), CUDA events, median of 30 after warm-up."""
import statistics
import torch, torch.nn.functional as F
import autoflash
from autoflash.ops.decode_launch import shuffled_pages
from autoflash.serve import kvcache

def med_ms(fn, n=30):
    for _ in range(3): fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(n):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); fn(); b.record(); b.synchronize(); ts.append(a.elapsed_time(b))
    return statistics.median(ts), min(ts), max(ts)

B, NQ, HQ, HKV, D, L = 8, 512, 32, 8, 128, 4096
rows = []
t = torch.bfloat16
q = torch.randn(B, NQ, HQ, D, device="cuda", dtype=t)
k = torch.randn(B, L, HKV, D, device="cuda", dtype=t); v = torch.randn_like(k)
seqlens = torch.full((B,), L, dtype=torch.int32, device="cuda")
flops = 4 * B * HQ * D * sum(L - NQ + i + 1 for i in range(NQ))  # visible pairs, bottom-right causal
res = {}
res["autoflash contiguous"] = med_ms(lambda: autoflash.attention_with_kvcache(q, k, v, seqlens, causal=True))
for ps in (16, 64):
    mp = L // ps; npg = B * mp
    table = torch.from_numpy(shuffled_pages(B, mp, npg, 0)).cuda()
    kp = torch.empty(npg, ps, HKV, D, device="cuda", dtype=t); vp = torch.empty_like(kp)
    kp[table.reshape(-1).long()] = k.reshape(B * mp, ps, HKV, D); vp[table.reshape(-1).long()] = v.reshape(B * mp, ps, HKV, D)
    o = autoflash.attention_with_kvcache(q, kp, vp, seqlens, block_table=table, causal=True)
    oc = autoflash.attention_with_kvcache(q, k, v, seqlens, causal=True)
    print(f"page {ps}: max |paged - contiguous| = {(o.float() - oc.float()).abs().max().item():.3g}", flush=True)
    res[f"autoflash paged {ps}"] = med_ms(lambda: autoflash.attention_with_kvcache(q, kp, vp, seqlens, block_table=table, causal=True))
from autoflash.kernels.device import device_arch
arch, dev = device_arch(0)
print("paged config:", kvcache.paged_config(arch, dev, "bf16", D, True, tuple((f, False) for f in ("window", "softcap", "sinks", "alibi")), L).name, flush=True)
pcfg = kvcache.paged_config(arch, dev, "bf16", D, True, tuple((f, False) for f in ("window", "softcap", "sinks", "alibi")), L)
res["autoflash mma unpaged (same config)"] = med_ms(lambda: autoflash.attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), causal=True, causal_alignment="bottom_right", config=pcfg.replace(paged=False)))
qs, ks, vs = q.transpose(1, 2), k.transpose(1, 2).repeat_interleave(HQ // HKV, 1), v.transpose(1, 2).repeat_interleave(HQ // HKV, 1)
mask = torch.ones(NQ, L, dtype=torch.bool, device="cuda").tril(L - NQ)
from torch.nn.attention import sdpa_kernel, SDPBackend
for name, be in (("sdpa efficient", SDPBackend.EFFICIENT_ATTENTION), ("sdpa cudnn", SDPBackend.CUDNN_ATTENTION)):
    try:
        with sdpa_kernel([be]):
            res[name] = med_ms(lambda: F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask))
    except Exception as e:
        print(name, "failed:", str(e)[:100])
print(f"chunked prefill bf16 B={B} Nq={NQ} cache={L} Hq={HQ} Hkv={HKV} D={D}, causal bottom-right (SDPA: K/V repeated to Hq, bool mask)")
print("| kernel | median ms (min-max) | TFLOP/s (visible pairs) |\n|---|---|---|")
for n, (m, lo, hi) in res.items():
    print(f"| {n} | {m:.3f} ({lo:.3f}-{hi:.3f}) | {flops / m / 1e9:.0f} |")

# Dqk 192 / Dv 128 (MLA prefill shape), bf16, B=4 H=16 N=4096, causal
B2, H2, N2 = 4, 16, 4096
q2 = torch.randn(B2, H2, N2, 192, device="cuda", dtype=t); k2 = torch.randn_like(q2); v2 = torch.randn(B2, H2, N2, 128, device="cuda", dtype=t)
fl2 = 2 * B2 * H2 * N2 * N2 * (192 + 128) / 2
r2 = {}
for causal in (False, True):
    r2[f"autoflash {'causal' if causal else 'full'}"] = med_ms(lambda: autoflash.attention(q2, k2, v2, causal=causal))
    for name, be in (("sdpa efficient", SDPBackend.EFFICIENT_ATTENTION), ("sdpa cudnn", SDPBackend.CUDNN_ATTENTION), ("sdpa flash", SDPBackend.FLASH_ATTENTION)):
        try:
            with sdpa_kernel([be]):
                r2[f"{name} {'causal' if causal else 'full'}"] = med_ms(lambda: F.scaled_dot_product_attention(q2, k2, v2, is_causal=causal))
        except Exception as e:
            print(name, "failed:", str(e)[:80])
from autoflash.serve import api
print("Dv config:", api.choose_config(arch, dev, "bf16", 192, True, N2, {"head_dim_v": 128}).name)
print(f"forward Dqk 192 / Dv 128 bf16 B={B2} H={H2} N={N2} (causal: half the FLOPs)")
print("| kernel | median ms (min-max) | TFLOP/s |\n|---|---|---|")
for n, (m, lo, hi) in r2.items():
    print(f"| {n} | {m:.3f} ({lo:.3f}-{hi:.3f}) | {(fl2 if 'causal' in n else 2 * fl2) / m / 1e9:.0f} |")
