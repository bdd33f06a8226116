#!/bin/bash
# Thirteenth session's fourth call (nvidia-h200-x2, carry .whl). GPU 0: flash_bwd_wgmma DIVISION_FREE's float64 GPU
# tests, then (only if all pass) its A/B beside cuDNN (ab_run.sh). GPU 1: Nsight Compute of two one-split long-cache
# decode rows that stay 1-3 % under cuDNN (ours and cuDNN's kernel), then the split-factor decode variants on rows
# that split. Logs in $OUT/gpu0, $OUT/gpu1.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
mkdir -p $OUT/gpu0 $OUT/gpu1
( CUDA_VISIBLE_DEVICES=0 OUT=$OUT/gpu0 SKIP_PIP=1 COMPILE_S=60 TESTS_S=150 BENCH_S=200 BENCH16K_S=0 \
    bash benchmarks/ab_run.sh benchmarks/bench_backward_division_free.py tests/test_backward_wgmma_division_free_gpu.py \
    > $OUT/gpu0/summary.txt 2>&1 ) &
(
  export PYTHONPATH=$PWD:$PWD/benchmarks:/tmp/site PYTHONUNBUFFERED=1 CUDA_VISIBLE_DEVICES=1
  OUT=$OUT/gpu1 T_TESTS=1 T_NCU=120 T_AB=1 NCU_ROWS="d64 32/8 b64 n32768,d128 32/8 b64 n8192" NCU_VARIANTS=default \
    VARIANTS=default bash benchmarks/decode_gap_run.sh 2>&1 | grep -v "^A/B\|tests:"
  timeout 150 python3 benchmarks/decode_gap_probe.py --rounds 3 --variants default,x2,bn16s3x1,bn16s3x2 \
    --json $OUT/gpu1/decode_split_factor_probe.json \
    --rows 'd128 32/8 b1 n32768,d128 32/8 b1 n131072,d64 32/8 b1 n131072,d128 32/8 b8 n8192,d128 32/8 b8 n32768,d128 8/1 b64 n8192,d128 8/1 b64 n32768,d64 32/8 b8 n8192,d64 8/1 b64 n8192,d64 8/1 b8 n131072' \
    2>&1 | grep -v "UserWarning\|return F.scaled" > $OUT/gpu1/decode_split_factor_probe.log
  echo "split-factor probe rc ${PIPESTATUS[0]}"; grep -A12 "^row" $OUT/gpu1/decode_split_factor_probe.log
) > $OUT/gpu1/summary.txt 2>&1
wait
cat $OUT/gpu1/summary.txt $OUT/gpu0/summary.txt
