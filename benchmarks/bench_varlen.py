"""Varlen and chunked prefill (issue 15): now parts of benchmarks/bench_kvcache.py, the issue's one
benchmark (CUDA-graph kernel times, host cost apart). This runs those two parts only:

  python benchmarks/bench_varlen.py [--rounds 5] [--json FILE]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_kvcache  # noqa: E402

if __name__ == "__main__":
    sys.argv[1:1] = ["--parts", "varlen", "chunked"]
    bench_kvcache.main()
