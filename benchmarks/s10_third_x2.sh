#!/usr/bin/env bash
# (A record: benchmarks/backward_strided_run.sh and its A/A were removed once the strided kernels became the only ones.)
# Tenth session's third call (nvidia-h200-x2, carry .whl). GPU 1: helper SC's strided producer fix + the strided _dq
# store (benchmarks/backward_strided_run.sh: GPU tests, the A/A on contiguous inputs, the decoder step off / phase 1 /
# phase 1+2, the step's profile). GPU 0: the forward's four rows below cuDNN in the ninth session's bench (D 64 N 1024,
# both dtypes, causal both; fp16 D 256 non-causal N 4096) re-tuned with more trials from their entries, then
# `autoflash bench` on those rows. Results in $OUT/s10c.tgz (sm_90.json included).
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
OUT_REAL=$OUT; export OUT=/tmp/s10c; mkdir -p $OUT/gpu1
( sleep 560; cp tuned_configs/sm_90.json $OUT/sm_90.json; tar czf $OUT_REAL/s10c_partial.tgz -C /tmp/s10c . ) &
watchdog=$!
( export CUDA_VISIBLE_DEVICES=0 PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afc0
  timeout 150 python3 -m autoflash.cli tune --dtype bf16,fp16 --head-dim 64 --causal both --seq-len 1024 --trials 24 \
      --timeout 30 --warm-start --out tuned_configs > $OUT/tune_d64_n1024.log 2>&1
  timeout 60 python3 -m autoflash.cli tune --dtype fp16 --head-dim 256 --causal no --seq-len 4096 --trials 16 \
      --timeout 40 --warm-start --out tuned_configs > $OUT/tune_d256_n4096.log 2>&1
  cp tuned_configs/sm_90.json $OUT/sm_90.json
  timeout 90 python3 -m autoflash.cli bench --head-dim 64 --seq-len 1024 --rounds 5 > $OUT/bench_d64_n1024.log 2>&1
  timeout 60 python3 -m autoflash.cli bench --head-dim 256 --seq-len 4096 --causal no --rounds 5 > $OUT/bench_d256_n4096.log 2>&1
) > $OUT/gpu0_summary.txt 2>&1 &
gpu0=$!
SKIP_PIP=1 CUDA_VISIBLE_DEVICES=1 OUT=$OUT/gpu1 bash benchmarks/backward_strided_run.sh > $OUT/gpu1_summary.txt 2>&1
wait $gpu0
kill $watchdog 2>/dev/null
tar czf $OUT_REAL/s10c.tgz -C /tmp/s10c .
cat $OUT/gpu1_summary.txt | grep -v "^| nvjet\|^| void" | head -60
grep -E "merged|^(bf16|fp16)|time: wall" $OUT/tune_*.log | tail -12; grep "|" $OUT/bench_*.log | tail -14
