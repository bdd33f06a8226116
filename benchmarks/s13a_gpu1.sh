#!/bin/bash
# Thirteenth session's first call, GPU 1 (beside the GPU suite on GPU 0, via suite_beside_x2.sh): the prepared
# fewer-bytes-in-flight variants on the one-split short-cache rows (decode_gap_probe.py), then the whole decode
# table on HEAD (the last full one, s12d, predates LANES_WARPS = 16, the split-count rule and the prebuilt PDL config).
export PYTHONPATH=$PWD:$PWD/benchmarks:/tmp/site PYTHONUNBUFFERED=1
t0=$(date +%s)
timeout 150 python3 benchmarks/decode_gap_probe.py --rounds 3 --variants default,s3,s2,w2s3,bn16s3 \
  --json $OUT/decode_gap_probe.json \
  --rows 'd64 32/8 b64 n1024,d64 8/1 b256 n1024,d128 8/1 b256 n1024,d128 32/8 b64 n1024,d64 32/8 b256 n1024,d128 32/8 b256 n1024' \
  2>&1 | grep -v "UserWarning\|return F.scaled" > $OUT/decode_gap_probe.log
echo "probe rc ${PIPESTATUS[0]} in $(( $(date +%s) - t0 )) s"; tail -n 14 $OUT/decode_gap_probe.log
t1=$(date +%s)
timeout 390 python3 benchmarks/bench_decode.py --rounds 3 --json $OUT/bench_decode.json 2>&1 \
  | grep -v "UserWarning\|return F.scaled\|n/a (RuntimeError" > $OUT/bench_decode.log
echo "bench_decode rc ${PIPESTATUS[0]} in $(( $(date +%s) - t1 )) s"; tail -n 40 $OUT/bench_decode.log
