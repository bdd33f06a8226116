#!/bin/bash
# Twelfth session's fourth call, GPU 1 part (run by benchmarks/suite_beside_x2.sh with $OUT set): the decode table
# with the served combine (_combine_lanes up to 64 splits, PDL on sm_90).
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
timeout 480 python3 benchmarks/bench_decode.py --rounds 3 --json $OUT/bench_decode.json 2>&1 \
  | grep -v "UserWarning\|return F.scaled\|n/a (RuntimeError" > $OUT/bench_decode.log
tail -75 $OUT/bench_decode.log
