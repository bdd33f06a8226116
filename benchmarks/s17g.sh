#!/bin/bash
# Seventeenth session, seventh call (nvidia-h200): Dv != Dqk through attention_varlen and attention_with_kvcache,
# the GPU tests of the serve paths it touches, then the combination test (both seeds) on that code.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/autoflash-cache
D=$(date +%Y-%m-%d)
python3 -m pytest -q -n 14 -p no:cacheprovider tests/test_head_dim_v_gpu.py tests/test_varlen_gpu.py \
    tests/test_serve_decode_gpu.py tests/test_paged_prefill_gpu.py tests/test_varlen_backward_gpu.py 2>&1 \
    | tail -15 | tee $OUT/dv_serve_tests_h200_${D}_s17g.log
bash benchmarks/s17d.sh
for f in $OUT/combinations*_s17d*; do mv "$f" "${f/_s17d/_s17g}"; done
