#!/bin/bash
# Sixteenth session, second call (nvidia-h200): the window test rewritten without a clock (its two windows), then
# test_threads_share_a_plan under load (8 processes, each running it in a loop for 90 s, -n 0) to try to reproduce
# the CUDA_ERROR_INVALID_CONTEXT it gave once in twelve suite runs (s15i).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/autoflash-cache
python3 -m pytest -q -n 0 -p no:cacheprovider tests/test_backward_variants_gpu.py -k window_skips 2>&1 | tail -15 \
    | tee $OUT/window_count_test.txt
python3 -m pytest -q -n 0 -p no:cacheprovider tests/test_host_path_gpu.py -k threads_share 2>&1 | tail -2  # compile once
end=$(( $(date +%s) + 90 ))
for w in $(seq 8); do
    ( n=0; f=0; while [ $(date +%s) -lt $end ]; do
          python3 -m pytest -q -n 0 -p no:cacheprovider tests/test_host_path_gpu.py -k threads_share > /tmp/t$w.log 2>&1 \
              || { f=$((f + 1)); cp /tmp/t$w.log $OUT/threads_fail_${w}_$n.log; }
          n=$((n + 1)); done; echo "worker $w: $n runs, $f failed" ) &
done
wait
