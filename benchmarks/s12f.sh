#!/bin/bash
# Twelfth session's sixth call (nvidia-h200, carry .whl): bench_decode on the 36 rows that split (the served combine:
# _combine_lanes up to 64 splits, PDL with the trigger after the key loop). Logs in $OUT.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
timeout 400 python3 benchmarks/bench_decode.py --rounds 3 --json $OUT/bench_decode.json \
  --rows 'd128 32/8 b1 n1024,d128 32/8 b1 n8192,d128 32/8 b1 n32768,d128 32/8 b1 n131072,d128 32/8 b8 n8192,d128 32/8 b8 n32768,d128 32/8 b8 n131072,d128 8/1 b1 n1024,d128 8/1 b1 n8192,d128 8/1 b1 n32768,d128 8/1 b1 n131072,d128 8/1 b8 n1024,d128 8/1 b8 n8192,d128 8/1 b8 n32768,d128 8/1 b8 n131072,d128 8/1 b64 n8192,d128 8/1 b64 n32768,d128 8/1 b64 n131072,d64 32/8 b1 n1024,d64 32/8 b1 n8192,d64 32/8 b1 n32768,d64 32/8 b1 n131072,d64 32/8 b8 n8192,d64 32/8 b8 n32768,d64 32/8 b8 n131072,d64 8/1 b1 n1024,d64 8/1 b1 n8192,d64 8/1 b1 n32768,d64 8/1 b1 n131072,d64 8/1 b8 n1024,d64 8/1 b8 n8192,d64 8/1 b8 n32768,d64 8/1 b8 n131072,d64 8/1 b64 n8192,d64 8/1 b64 n32768,d64 8/1 b64 n131072' 2>&1 | grep -v "UserWarning\|return F.scaled\|n/a (RuntimeError" > $OUT/bench_decode.log
tail -45 $OUT/bench_decode.log
