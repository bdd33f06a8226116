#!/bin/bash
# Thirteenth session's second call, GPU 1 (beside the GPU suite on GPU 0): the short-cache knobs (bn16s3) and two
# other light variants against the tuned knobs on one-split rows with longer caches (2k-32k: where should
# SHORT_CACHE_KEYS end?), then the whole decode table with SHORT_CACHE_KEYS = 1024 served.
export PYTHONPATH=$PWD:$PWD/benchmarks:/tmp/site PYTHONUNBUFFERED=1
t0=$(date +%s)
timeout 200 python3 benchmarks/decode_gap_probe.py --rounds 3 --variants default,bn16s3,s2,w2s3 \
  --json $OUT/decode_gap_probe.json \
  --rows 'd64 32/8 b64 n2048,d64 32/8 b64 n4096,d128 32/8 b64 n2048,d128 32/8 b64 n4096,d64 8/1 b256 n4096,d128 8/1 b256 n4096,d128 32/8 b64 n8192,d128 32/8 b64 n32768,d128 32/8 b256 n8192,d128 8/1 b256 n8192,d128 8/1 b256 n32768,d64 32/8 b64 n8192,d64 32/8 b64 n32768,d64 32/8 b256 n8192,d64 8/1 b256 n8192,d64 8/1 b256 n32768' \
  2>&1 | grep -v "UserWarning\|return F.scaled" > $OUT/decode_gap_probe.log
echo "probe rc ${PIPESTATUS[0]} in $(( $(date +%s) - t0 )) s"; grep -A20 "^row" $OUT/decode_gap_probe.log
t1=$(date +%s)
timeout 300 python3 benchmarks/bench_decode.py --rounds 3 --json $OUT/bench_decode.json 2>&1 \
  | grep -v "UserWarning\|return F.scaled\|n/a (RuntimeError" > $OUT/bench_decode.log
echo "bench_decode rc ${PIPESTATUS[0]} in $(( $(date +%s) - t1 )) s"; grep -B2 -A25 "^bars" $OUT/bench_decode.log | tail -28
grep " n1024" $OUT/bench_decode.log | tail -16
