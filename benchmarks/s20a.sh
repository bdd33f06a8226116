#!/bin/bash
# Twentieth session's first call (nvidia-h200): ONE_CONSUMER (prepared in s19, never run) checked on the GPU
# (float64, the served tile, GQA, both alignments, a split tail) with the TAIL_SPLIT and wgmma backward GPU tests
# (ops/backward_gpu's wave count changed after the last GPU run), then timed by graph replay as column alt
# (producer + one consumer, bm64 bn64 w8 s2, two CTAs an SM) beside the served tile and cuDNN, bf16 and fp16 D 64.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
timeout 240 python3 -m pytest -q -x -p no:cacheprovider -n 12 tests/test_backward_wgmma_one_consumer_gpu.py \
  tests/test_backward_wgmma_tail_split_gpu.py tests/test_backward_wgmma_gpu.py 2>&1 | tail -15 \
  | tee $OUT/one_consumer_tests_h200_${D}_s20a.log
timeout 240 python3 benchmarks/bench_backward_graph.py --dtypes bf16,fp16 --head-dims 64 --one-consumer \
  --alt 64x64x8x2 2>&1 | grep -v -i "warn\|no tuned config\|return Impl" \
  | tee $OUT/bench_backward_graph_one_consumer_h200_${D}_s20a.log
