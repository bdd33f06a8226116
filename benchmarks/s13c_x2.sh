#!/bin/bash
# Thirteenth session's third call (nvidia-h200-x2, carry .whl), on the served short-cache rule (a block an SM at
# least, <= 4096 keys). GPU 0: the decode GPU tests. GPU 1: the whole decode table twice (with the same-size read
# column). Logs in $OUT.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=$PWD:$PWD/benchmarks:/tmp/site PYTHONUNBUFFERED=1
(
  CUDA_VISIBLE_DEVICES=0 TIMEOUT_S=300 bash benchmarks/decode_gpu_tests.sh  # (the same test command, shared)
) > $OUT/gpu0.txt 2>&1 &
for i in 1 2; do
  CUDA_VISIBLE_DEVICES=1 timeout 200 python3 benchmarks/bench_decode.py --rounds 3 --json $OUT/bench_decode_$i.json 2>&1 \
    | grep -v "UserWarning\|return F.scaled\|n/a (RuntimeError" > $OUT/bench_decode_$i.log
  echo "bench_decode run $i: rc ${PIPESTATUS[0]}"
done
wait
cat $OUT/gpu0.txt
for i in 1 2; do grep -A30 "^bars" $OUT/bench_decode_$i.log; done
awk '/^row/{n++} n==2' $OUT/bench_decode_2.log | head -60
