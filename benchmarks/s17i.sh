#!/bin/bash
# Seventeenth session, last call (nvidia-h200): the two GPU test files changed after s17h (test-only changes).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/autoflash-cache
python3 -m pytest -q -n 8 -p no:cacheprovider tests/test_api_gpu.py tests/test_decode_gpu.py 2>&1 | tail -4 \
    | tee $OUT/tests_rerun_h200_$(date +%Y-%m-%d)_s17i.log
