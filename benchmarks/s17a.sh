#!/bin/bash
# Seventeenth session, first call (nvidia-h200): the read floor at the small decode rows' sizes (issue 14's
# "batch 1 with a 32k cache >= 0.6x copy"), then those rows' decode beside SDPA in the same run.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=$PWD:$PWD/benchmarks:/tmp/site PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/autoflash-cache
D=$(date +%Y-%m-%d)
python3 benchmarks/read_floor_probe.py --mb 2 4 8 16 32 64 128 512 --rounds 3 2>&1 | tee $OUT/read_floor_h200_${D}_s17a.log
python3 benchmarks/bench_decode.py --rounds 5 --json $OUT/bench_decode_mqa_b1_h200_${D}_s17a.json \
    --rows 'd128 8/1 b1 n8192,d128 8/1 b1 n32768,d128 8/1 b1 n131072,d64 8/1 b1 n8192,d64 8/1 b1 n32768,d64 8/1 b1 n131072,d128 32/8 b1 n32768' \
    2>&1 | tee $OUT/bench_decode_mqa_b1_h200_${D}_s17a.log | tail -12
