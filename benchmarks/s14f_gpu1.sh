#!/bin/bash
# Fourteenth session's sixth call, GPU 1 (beside the GPU suite and verify on GPU 0: benchmarks/suite_beside_x2.sh): the
# decode GPU tests, then the whole decode table once, on the served long-cache rule (decode_kernels.LONG_CACHE_*:
# D 64 and D 128).
export PYTHONPATH=$PWD:$PWD/benchmarks:/tmp/site PYTHONUNBUFFERED=1
TIMEOUT_S=200 bash benchmarks/decode_gpu_tests.sh
timeout 220 python3 benchmarks/bench_decode.py --rounds 3 --json $OUT/bench_decode.json 2>&1 \
  | grep -v "UserWarning\|return F.scaled\|n/a (RuntimeError" > $OUT/bench_decode.log
echo "bench_decode: rc ${PIPESTATUS[0]}"; grep -A30 "^bars" $OUT/bench_decode.log
