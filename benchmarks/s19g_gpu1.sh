#!/bin/bash
# Nineteenth session's last call, GPU 1 (beside the GPU suite and verify on GPU 0: benchmarks/suite_beside_x2.sh):
# issue 16's backward table on the session's last code (flash_bwd_mma: P^T stored early at D 64, warps_q 4 at D 256),
# then the D 256 rows (served: flash_bwd_mma) beside SDPA's backends.
export PYTHONPATH=$PWD:$PWD/benchmarks:$PWD/tests:/tmp/site PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/autoflash-cache
SKIP_PIP=1 BACKWARD_TIMEOUT=300 bash benchmarks/h200_final.sh bench_backward
timeout 150 python3 benchmarks/bench_backward.py --head-dims 256 --seqs 4096,16384 --dtypes bf16 --rounds 3 \
  > $OUT/bench_backward_d256.log 2>&1; tail -8 $OUT/bench_backward_d256.log
