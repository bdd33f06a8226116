#!/bin/bash
# Seventeenth session, fifth call (nvidia-h200): attention_with_kvcache serves the head dims decode lacks through the
# forward (routing.kvcache_route): the kvcache GPU tests, then the combination test (both seeds) on that code.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/autoflash-cache
D=$(date +%Y-%m-%d)
python3 -m pytest -q -n 12 -p no:cacheprovider tests/test_serve_decode_gpu.py tests/test_paged_gpu.py \
    tests/test_paged_prefill_gpu.py tests/test_decode_variants_gpu.py 2>&1 | tail -15 | tee $OUT/kvcache_tests_h200_${D}_s17e.log
bash benchmarks/s17d.sh
for f in $OUT/combinations*_s17d*; do mv "$f" "${f/_s17d/_s17e}"; done
