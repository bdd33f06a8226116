#!/bin/bash
# Seventeenth session, sixth call (nvidia-h200): flash_fwd_simt at every multiple-of-8 head dim (fp32 and fp16 vs
# float64), then the combination test (both seeds) on that code.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/autoflash-cache
D=$(date +%Y-%m-%d)
python3 -m pytest -q -n 14 -p no:cacheprovider tests/test_simt_head_dims_gpu.py tests/test_head_dim_v_gpu.py 2>&1 \
    | tail -15 | tee $OUT/simt_head_dims_tests_h200_${D}_s17f.log
bash benchmarks/s17d.sh
for f in $OUT/combinations*_s17d*; do mv "$f" "${f/_s17d/_s17f}"; done
