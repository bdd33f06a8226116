"""A training step end to end: autoflash.attention (its forward + backward through
autograd) against PyTorch SDPA's default backend choice, in the same run (issue 16's last bar).

Two measurements, each as CUDA events around whole steps after warm-up, ROUNDS interleaved
rounds of REPS steps per implementation, median of all steps and the spread of round medians:
  attention  forward + backward of the attention op alone: q, k, v (B, H, N, D) requiring grad,
             out = attn(q, k, v), out.backward(dout); TFLOP/s with 3.5 x the forward's FLOPs
             (forward 1 + backward 2.5, FlashAttention's convention), halved for causal; SDPA with its
             flash and cuDNN backends forced beside its default (which one the default is)
  model      a whole step of a small causal decoder (bf16 weights, LAYERS pre-norm blocks of width
             2048, D 128, N 4096, B 2): forward, cross-entropy, backward, AdamW step. q, k, v are
             the (B, N, H, D) projections viewed as (B, H, N, D) (non-contiguous) for both
             implementations: each handles that layout its own way (autoflash reads the views in
             place, ops/backward_wgmma.STRIDED), as a model would call it.

    python benchmarks/bench_training.py [--json out.json] [--quick]
"""
import argparse
import copy
import json
import math
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

import autoflash

import common  # noqa: E402  (benchmarks/common.py: run as python benchmarks/bench_training.py)

ROUNDS, REPS, WARMUP = 5, 5, 2


def sdpa(q, k, v, causal):
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # PyTorch picks the backend


def ours(q, k, v, causal):
    return autoflash.attention(q, k, v, causal=causal)


IMPLS = {"autoflash": ours, "sdpa_default": sdpa}


def sdpa_backend(name):
    """SDPA with one backend forced: the attention rows time these beside the default, so the table shows
    which backend the default picked (PyTorch does not say)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backend = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION}[name]

    def attn(q, k, v, causal):
        with sdpa_kernel(backend):
            return sdpa(q, k, v, causal)
    return attn


FORCED = {f"sdpa_{n}": sdpa_backend(n) for n in ("flash", "cudnn")}


def time_interleaved(fns: dict, rounds: int, reps: int) -> dict:
    """name -> (median ms of all calls, spread of the round medians as a fraction)."""
    return common.time_interleaved(fns, rounds, reps, WARMUP)


def _compile(cfg):
    from autoflash.kernels.compile import compile_kernel

    return cfg.name, compile_kernel(cfg).report.registers


def precompile(keys, seq_lens) -> None:
    """The forward and backward configs served for these (dtype, head_dim, causal) keys, compiled into
    the disk cache in parallel processes: a fresh GPU machine does not wait on NVRTC one kernel at a time
    inside the timed warm-up. Other configs (routing may pick e.g. decode) compile on first use."""
    from concurrent.futures import ProcessPoolExecutor

    from autoflash.kernels.device import device_arch
    from autoflash.serve.api import choose_config
    from autoflash.serve.autograd import _served_config as served_backward

    arch, name = device_arch(torch.cuda.current_device())
    configs = []
    for dtype, d, causal in keys:
        for n in seq_lens:
            configs.append(choose_config(arch, name, dtype, d, causal, n))
            key = dict(dtype=dtype, head_dim=d, causal=causal, deterministic=False)
            configs.append(served_backward(torch.cuda.current_device(), key, n))  # wgmma where it serves the key
    with ProcessPoolExecutor() as pool:
        for cfg_name, regs in pool.map(_compile, list(dict.fromkeys(configs))):
            print(f"  compiled {cfg_name}: {regs} registers", flush=True)


def attention_rows(dtypes, head_dims, seqs, rounds, reps) -> list:
    rows = []
    for dtype in dtypes:
        for d in head_dims:
            for n in seqs:
                for causal in (False, True):
                    b, h = max(1, 16384 // n), 2048 // d
                    g = torch.Generator(device="cuda").manual_seed(0)
                    q, k, v, dout = (torch.randn(b, h, n, d, device="cuda", dtype=dtype, generator=g) for _ in range(4))
                    q, k, v = (x.requires_grad_() for x in (q, k, v))

                    def step(attn=None):
                        out = attn(q, k, v, causal)
                        out.backward(dout)
                        q.grad = k.grad = v.grad = None

                    fns = {name: (lambda a=attn: step(a)) for name, attn in IMPLS.items()}
                    for name, attn in FORCED.items():
                        try:
                            step(attn)
                            fns[name] = lambda a=attn: step(a)
                        except RuntimeError as exc:  # a backend that refuses these inputs: n/a in the table
                            print(f"  {name}: not available ({str(exc).splitlines()[0][:80]})")
                    timed = time_interleaved(fns, rounds, reps)
                    flops = 3.5 * 4.0 * b * h * n * n * d / (2 if causal else 1)
                    row = dict(kind="attention", dtype=str(dtype).split(".")[-1], head_dim=d, seq=n, causal=causal,
                               batch=b, heads=h, ms={k_: t[0] for k_, t in timed.items()},
                               spread={k_: t[1] for k_, t in timed.items()},
                               tflops={k_: flops / (t[0] * 1e-3) / 1e12 for k_, t in timed.items()})
                    rows.append(row)
                    print(f"  attention {row['dtype']} d{d} n{n} causal={causal}: "
                          + ", ".join(f"{k_} {row['tflops'][k_]:.0f} TFLOP/s" for k_ in fns), flush=True)
    return rows


class Block(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x, attn):
        b, n, w = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, n, 3, self.heads, w // self.heads).unbind(2)
        y = attn(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), True)  # (B, H, N, D) views
        x = x + self.proj(y.transpose(1, 2).reshape(b, n, w))
        return x + self.mlp(self.ln2(x))


class Decoder(nn.Module):
    def __init__(self, vocab, width, heads, layers):
        super().__init__()
        self.emb = nn.Embedding(vocab, width)
        self.blocks = nn.ModuleList([Block(width, heads) for _ in range(layers)])
        self.head = nn.Linear(width, vocab)

    def forward(self, tokens, attn):
        x = self.emb(tokens)
        for blk in self.blocks:
            x = blk(x, attn)
        return self.head(x)


def model_rows(layers, seq, batch, rounds, reps) -> list:
    vocab, width, heads = 8192, 2048, 16
    torch.manual_seed(0)
    base = Decoder(vocab, width, heads, layers).cuda().to(torch.bfloat16)
    g = torch.Generator(device="cuda").manual_seed(1)
    tokens = torch.randint(0, vocab, (batch, seq + 1), device="cuda", generator=g)
    models = {name: copy.deepcopy(base) for name in IMPLS}
    opts = {name: torch.optim.AdamW(m.parameters(), lr=1e-4) for name, m in models.items()}
    losses = {name: [] for name in IMPLS}

    def step(name):
        logits = models[name](tokens[:, :-1], IMPLS[name])
        loss = F.cross_entropy(logits.float().reshape(-1, vocab), tokens[:, 1:].reshape(-1))
        opts[name].zero_grad(set_to_none=True)
        loss.backward()
        opts[name].step()
        losses[name].append(loss.detach())

    timed = time_interleaved({name: (lambda n=name: step(n)) for name in IMPLS}, rounds, reps)
    first = {name: float(v[0]) for name, v in losses.items()}
    row = dict(kind="model", dtype="bfloat16", layers=layers, width=width, heads=heads, head_dim=width // heads,
               seq=seq, batch=batch, causal=True, ms={k_: t[0] for k_, t in timed.items()},
               spread={k_: t[1] for k_, t in timed.items()}, first_loss=first)
    print(f"  model {layers} layers N {seq} B {batch}: " + ", ".join(f"{k_} {row['ms'][k_]:.2f} ms/step"
          for k_ in IMPLS) + f"; first losses {first}", flush=True)
    assert all(math.isfinite(x) for x in first.values())
    return [row]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the rows here")
    parser.add_argument("--quick", action="store_true", help="bf16 only, N 4096, 3 rounds (a short device call)")
    parser.add_argument("--layers", type=int, default=4)
    args = parser.parse_args()
    rounds = 3 if args.quick else ROUNDS
    dtypes = (torch.bfloat16,) if args.quick else (torch.bfloat16, torch.float16)
    seqs = (4096,) if args.quick else (4096, 16384)
    print(f"# {torch.cuda.get_device_name()} torch {torch.__version__}; autoflash {autoflash.__version__}")
    names = {torch.bfloat16: "bf16", torch.float16: "fp16"}
    precompile([(names[t], d, c) for t in dtypes for d in (64, 128) for c in (False, True)], seqs)
    rows = attention_rows(dtypes, (64, 128), seqs, rounds, REPS)
    rows += model_rows(args.layers, 4096, 2, rounds, REPS)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    print("\n| what | dtype | D | N | causal | autoflash | SDPA default | ratio | SDPA flash | SDPA cuDNN "
          "| spread (ours) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["kind"] == "attention":
            t = r["tflops"]
            a, s = t["autoflash"], t["sdpa_default"]
            cells = [f"{a:.0f} TFLOP/s", f"{s:.0f} TFLOP/s", f"{a / s:.2f}x"]
            cells += [f"{t[n]:.0f} TFLOP/s" if n in t else "n/a" for n in FORCED]
            what = "attention fwd+bwd"
        else:
            a, s = r["ms"]["autoflash"], r["ms"]["sdpa_default"]
            cells = [f"{a:.2f} ms", f"{s:.2f} ms", f"{s / a:.2f}x", "-", "-"]
            what = f"model step ({r['layers']} layers, B {r['batch']})"
        print(f"| {what} | {r['dtype']} | {r['head_dim']} | {r['seq']} | {r['causal']} | " + " | ".join(cells)
              + f" | {100 * r['spread']['autoflash']:.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
