"""What the forward kernel A/Bs share (wgmma_switch_ab.py, wgmma_idle_rows_ab.py): a row's random inputs (B*H*N =
64 x 4096, H = 16), its kernels timed beside SDPA's cuDNN by CUDA-graph replay in interleaved rounds
(graph_timing.py), and the table cells "TFLOP/s (x cuDNN, spread)"."""
from __future__ import annotations

TOKENS, HEADS = 64 * 4096, 16


def inputs(dtype: str, d: int, causal: bool, n: int):
    """q, k, v (B, H, N, D) from a generator seeded by the row, its Problem and the scale 1/sqrt(D)."""
    import torch

    from autoflash.ops.forward_base import Problem

    b = max(1, TOKENS // (n * HEADS))
    tdt = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    g = torch.Generator(device="cuda").manual_seed(n + d)
    q, k, v = (torch.randn(b, HEADS, n, d, device="cuda", generator=g).to(tdt) for _ in range(3))
    return q, k, v, Problem(b, HEADS, HEADS, n, n, d, causal), d ** -0.5


def time_beside_cudnn(kernels: dict, q, k, v, p, scale: float, rounds: int, calls: int):
    """kernels: label -> LoadedKernel, planned for p. Each label and "cudnn" as a graph of `calls` launches, replayed
    in `rounds` interleaved rounds; returns (graph_timing.measure's results, each label's output after one more
    launch). Causal rows count half the work."""
    import torch

    from common import sdpa_runner
    from graph_timing import Impl, measure
    from autoflash.ops.forward_launch import launch

    outs = {key: torch.empty_like(q) for key in kernels}

    def runner(key):
        ptrs = (q.data_ptr(), k.data_ptr(), v.data_ptr(), outs[key].data_ptr(), 0)
        return lambda: launch(kernels[key], *ptrs, p, scale, torch.cuda.current_stream().cuda_stream)

    work = 4.0 * p.batch * p.heads_q * p.seq_q * p.seq_k * p.head_dim / (2 if p.causal else 1)
    impls = [Impl(key, runner(key), calls=calls, work=work) for key in kernels]
    cudnn_run = sdpa_runner("sdpa_cudnn", q, k, v, p.causal)
    if cudnn_run is not None:
        impls.append(Impl("cudnn", cudnn_run, calls=calls, work=work))
    res = measure(impls, rounds)
    for key in kernels:
        runner(key)()
    torch.cuda.synchronize()
    return res, outs


def cells(res: dict, labels) -> list[str]:
    """ "TFLOP/s (x cuDNN, spread)" per label ("-" where it did not run)."""
    cudnn = res.get("cudnn", {}).get("rate")
    out = []
    for key in labels:
        r = res.get(key)
        vs = f"{r['rate'] / cudnn:.3f}x, " if r and cudnn else ""
        out.append(f"{r['rate'] / 1e12:.0f} ({vs}{r['spread']:.1%})" if r else "-")
    return out
