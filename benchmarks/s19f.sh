#!/bin/bash
# Nineteenth session, sixth call (nvidia-h200): flash_bwd_mma at D 256 (0.76-0.83x FA2 in s19e) with warps_q 4,
# FlashAttention-2's D 256 warp layout: float64 checks of each layout, then CUDA-graph timing beside FA2, bf16 and fp16.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
timeout 280 python3 benchmarks/bench_backward_d256_layout.py --dtypes bf16,fp16 2>&1 | grep -v Warn \
  | tee $OUT/bwd_mma_d256_layout_h200_${D}_s19f.log
