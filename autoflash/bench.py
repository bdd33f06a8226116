"""`autoflash bench`: the kernels attention() serves against PyTorch SDPA's backends, in one run.

Kernel-level timing, so host cost and launch gaps are out of the picture: every
function (autoflash.attention and each SDPA backend) is captured in a CUDA graph of
GRAPH_LAUNCHES calls; each round replays every graph in a rotated order and takes the
median of `reps` replays; a row reports the median over rounds and the spread
((max - min) / median over rounds) of each column. Before timing, autoflash's output
is checked against float64 attention on the first (batch, head).

Shapes: heads = 16 and batch = tokens // (16 * N), so every N fills the GPU alike.
TFLOP/s = 4 * B * H * N^2 * D / time, halved for causal. Needs torch and a GPU.
"""
from __future__ import annotations

import statistics

from autoflash.ops.reference import TOLERANCE
from autoflash.serve.api import attention

GRAPH_LAUNCHES = 5
HEADS = 16
BACKENDS = ("sdpa_flash", "sdpa_cudnn", "sdpa_efficient")
DEFAULT_GRID = {"dtypes": ("bf16", "fp16"), "head_dims": (64, 128, 256), "seq_lens": (1024, 4096, 16384),
                "causal": (False, True)}


def sdpa_backends() -> dict:
    """Our names for SDPA's backends -> torch's SDPBackend values."""
    from torch.nn.attention import SDPBackend

    return {"sdpa_flash": SDPBackend.FLASH_ATTENTION, "sdpa_cudnn": SDPBackend.CUDNN_ATTENTION,
            "sdpa_efficient": SDPBackend.EFFICIENT_ATTENTION, "sdpa_math": SDPBackend.MATH}


def sdpa_runner(backend: str, q, k, v, causal: bool):
    """A callable running torch SDPA with one backend (sdpa_flash, sdpa_cudnn, sdpa_efficient,
    sdpa_math) on these inputs (GQA when the head counts differ), or None when it refuses them."""
    import torch
    from torch.nn.attention import sdpa_kernel

    kind = sdpa_backends()[backend]
    gqa = q.shape[1] != k.shape[1]

    def run():
        with sdpa_kernel(kind):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=gqa)

    try:
        run()
        torch.cuda.synchronize()
    except RuntimeError:
        return None
    return run


def _graph(torch, fn):
    """fn captured GRAPH_LAUNCHES times in one CUDA graph (warmed up first on a side stream)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(GRAPH_LAUNCHES):
            fn()
    return graph


def _time_graphs(torch, graphs: dict, rounds: int, reps: int) -> dict[str, list[float]]:
    """Per name, the median ms of one call in each round; rounds rotate the replay order."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    names = list(graphs)
    per_round: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times = []
            for _ in range(reps):
                start.record()
                graphs[name].replay()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / GRAPH_LAUNCHES)
            per_round[name].append(statistics.median(times))
    return per_round


def _rel_error(torch, q, k, v, causal: bool, out) -> float:
    qs, ks, vs = (t[:1, :1].double() for t in (q, k, v))
    ref = torch.nn.functional.scaled_dot_product_attention(qs, ks, vs, is_causal=causal)
    return ((out[:1, :1].double() - ref).norm() / ref.norm()).item()


def bench_row(dtype: str, head_dim: int, seq_len: int, causal: bool, *, tokens: int, rounds: int,
              reps: int) -> dict:
    """One row: autoflash's served kernel and each SDPA backend on the same random inputs."""
    import torch

    torch_dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
    batch = max(1, tokens // (HEADS * seq_len))
    gen = torch.Generator(device="cuda").manual_seed(seq_len + head_dim)
    q, k, v = (torch.randn(batch, HEADS, seq_len, head_dim, device="cuda", generator=gen).to(torch_dtype)
               for _ in range(3))
    served = lambda: attention(q, k, v, causal=causal)  # noqa: E731
    rel = _rel_error(torch, q, k, v, causal, served())
    fns = {"autoflash": served}
    for backend in BACKENDS:
        fn = sdpa_runner(backend, q, k, v, causal)
        if fn is not None:
            fns[backend] = fn
    graphs = {name: _graph(torch, fn) for name, fn in fns.items()}
    per_round = _time_graphs(torch, graphs, rounds, reps)
    flops = 4.0 * batch * HEADS * seq_len * seq_len * head_dim / (2 if causal else 1)
    row = {"dtype": dtype, "head_dim": head_dim, "causal": causal, "seq_len": seq_len, "batch": batch,
           "heads": HEADS, "rel_err": rel, "correct": rel <= TOLERANCE[dtype]}
    for name in ("autoflash",) + BACKENDS:
        times = per_round.get(name)
        if not times:
            row[name], row[f"{name}_spread"] = float("nan"), float("nan")
            continue
        ms = statistics.median(times)
        row[name] = flops / (ms * 1e-3) / 1e12
        row[f"{name}_ms"] = ms
        row[f"{name}_spread"] = (max(times) - min(times)) / ms
    del graphs
    torch.cuda.empty_cache()
    return row


def run(dtypes, head_dims, seq_lens, causal, *, tokens: int = 64 * 4096, rounds: int = 5, reps: int = 10,
        progress=print) -> dict:
    import torch

    rows = []
    for dtype in dtypes:
        for d in head_dims:
            for c in causal:
                for n in seq_lens:
                    row = bench_row(dtype, d, n, c, tokens=tokens, rounds=rounds, reps=reps)
                    progress(format_row(row))
                    rows.append(row)
    return {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rounds": rounds, "rows": rows}


HEADER = ("| dtype | D | causal | N | autoflash | " + " | ".join(BACKENDS) +
          " | vs cuDNN | vs best | spread | check |")


def format_row(r: dict) -> str:
    vals = " | ".join(f"{r[b]:.0f}" for b in BACKENDS)
    best = max((r[b] for b in BACKENDS if r[b] == r[b]), default=float("nan"))
    spread = max((r[f"{n}_spread"] for n in ("autoflash", "sdpa_cudnn") if r[f"{n}_spread"] == r[f"{n}_spread"]),
                 default=float("nan"))
    return (f"| {r['dtype']} | {r['head_dim']} | {'yes' if r['causal'] else 'no'} | {r['seq_len']} | "
            f"{r['autoflash']:.0f} | {vals} | {r['autoflash'] / r['sdpa_cudnn']:.2f}x | "
            f"{r['autoflash'] / best:.2f}x | {spread:.1%} | {'ok' if r['correct'] else 'WRONG'} {r['rel_err']:.1e} |")


def format_table(result: dict) -> str:
    rows = result["rows"]
    ratios = sorted(r["autoflash"] / r["sdpa_cudnn"] for r in rows if r["sdpa_cudnn"] == r["sdpa_cudnn"])
    lines = [f"{result['device']}, torch {result['torch']}: TFLOP/s, CUDA-graph replay, median of "
             f"{result['rounds']} interleaved rounds (spread = (max-min)/median over rounds, worst of "
             "autoflash and cuDNN)", HEADER, "|---" * (HEADER.count("|") - 1) + "|"]
    lines += [format_row(r) for r in rows]
    if ratios:
        lines.append(f"vs cuDNN: median {statistics.median(ratios):.2f}x, range {ratios[0]:.2f}-{ratios[-1]:.2f}x, "
                     f"at or above 1.0x in {sum(x >= 1.0 for x in ratios)} of {len(ratios)} rows")
    return "\n".join(lines)
