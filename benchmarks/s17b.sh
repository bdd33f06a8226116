#!/bin/bash
# Seventeenth session, second call (nvidia-h200): batch-1 MQA decode split into its parts against the read floor.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=$PWD:$PWD/benchmarks:/tmp/site PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/autoflash-cache
D=$(date +%Y-%m-%d)
python3 benchmarks/decode_mqa_probe.py --rounds 5 2>&1 | tee $OUT/decode_mqa_probe_h200_${D}_s17b.log
