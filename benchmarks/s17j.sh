#!/bin/bash
# Seventeenth session (nvidia-h200): decode at padded head dims (phi-3's 96, phi-2's 80) beside SDPA and the copy.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=$PWD:$PWD/benchmarks:/tmp/site PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/autoflash-cache
D=$(date +%Y-%m-%d)
python3 benchmarks/bench_decode.py --rounds 3 --json $OUT/bench_decode_padded_dims_h200_${D}_s17j.json \
    --rows 'd96 32/32 b1 n4096,d96 32/32 b8 n8192,d96 32/32 b64 n2048,d96 32/8 b1 n32768,d80 32/32 b8 n8192,d128 32/32 b8 n8192' \
    2>&1 | tee $OUT/bench_decode_padded_dims_h200_${D}_s17j.log | tail -12
