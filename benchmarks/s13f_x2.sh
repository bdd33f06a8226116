#!/bin/bash
# Thirteenth session's last call (nvidia-h200-x2, carry .whl), on the session's last code. GPU 0: bench_backward (D 64/128
# x N 4k/16k x bf16/fp16 x causal vs SDPA's backends) and the training step. GPU 1: the GPU suite, autoflash verify,
# bench_kvcache and the paged decode choice (bench_kvcache's paged rows: served vs the other selections; the short-cache
# rule reaches paged caches through their contiguous twin). Logs in $OUT/gpu0, $OUT/gpu1.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
mkdir -p $OUT/gpu0 $OUT/gpu1
( CUDA_VISIBLE_DEVICES=0 OUT=$OUT/gpu0 SKIP_PIP=1 BACKWARD_TIMEOUT=300 bash benchmarks/h200_final.sh bench_backward training \
    > $OUT/gpu0/summary.txt 2>&1 ) &
( CUDA_VISIBLE_DEVICES=1 OUT=$OUT/gpu1 SKIP_PIP=1 XDIST=20 TESTS_TIMEOUT=300 TESTS_K="not paged_space" \
    bash benchmarks/h200_final.sh tests verify bench_kvcache > $OUT/gpu1/summary.txt 2>&1
  export PYTHONPATH=$PWD:$PWD/benchmarks:/tmp/site PYTHONUNBUFFERED=1
  CUDA_VISIBLE_DEVICES=1 timeout 90 python3 benchmarks/bench_decode.py --paged-choice 2>&1 \
    | grep -v "UserWarning\|return F.scaled" > $OUT/gpu1/paged_choice.log; echo "paged choice rc ${PIPESTATUS[0]}" >> $OUT/gpu1/summary.txt ) &
wait
tail -c 2500 $OUT/gpu1/summary.txt; tail -n 14 $OUT/gpu1/paged_choice.log; tail -c 4500 $OUT/gpu0/summary.txt
