#!/bin/bash
# Twenty-third session, first call (nvidia-h200): (1) the GPU test files whose shared set-up moved after s22h
# (tests/switched_backward.float64_case), (2) the placement probe prepared in s22 (are the A/A gaps buffer placement
# or the clock?), (3) Nsight Compute of today's served D 64 backward beside cuDNN's (last profiled in s8), with
# per-instruction stall samples of our main kernel.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
AUTOFLASH_TEST_WATCHDOG_S=100 timeout 200 python3 -m pytest -q -p no:cacheprovider -n 14 -rf \
  tests/test_backward_wgmma_staged_store_gpu.py tests/test_backward_wgmma_tail_split_gpu.py \
  tests/test_backward_wgmma_persistent_gpu.py tests/test_backward_wgmma_one_consumer_gpu.py 2>&1 | tail -6 \
  | tee $OUT/switch_tests_h200_${D}_s23a.log
for row in bf16:128:4096:false bf16:64:4096:false; do
  timeout 120 python3 benchmarks/bwd_placement_probe.py --row $row --rounds 11 2>&1 \
    | grep -v -i "warn\|no tuned config\|return Impl" | tee -a $OUT/bwd_placement_h200_${D}_s23a.log
done
NCU_DIMS=64 NCU_TIMEOUT=150 SKIP_PIP=1 AUTOFLASH_CACHE_DIR=/tmp/afcache bash benchmarks/h200_final.sh ncu_bwd ncu_bwd_source \
  > $OUT/ncu_parts.log 2>&1
tail -60 $OUT/ncu_parts.log
for f in ncu_bwd_d64.txt ncu_src_d64.txt ncu_src_d64.csv.gz; do
  [ -f $OUT/$f ] && mv $OUT/$f $OUT/${f%%.*}_h200_${D}_s23a.${f#*.}
done
ls $OUT
