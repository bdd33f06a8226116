#!/bin/bash
# Seventeenth session, after the closing review (nvidia-h200): the routing change (decode's limits in one place,
# Dv != Dqk a routing rule) under the serve-path GPU tests, and the two decode probes after they share kernels_alone.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=$PWD:$PWD/benchmarks:/tmp/site PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/autoflash-cache
D=$(date +%Y-%m-%d)
python3 -m pytest -q -n 12 -p no:cacheprovider tests/test_head_dim_v_gpu.py tests/test_serve_decode_gpu.py \
    tests/test_api_gpu.py tests/test_decode_head_dims_gpu.py 2>&1 | tail -3 | tee $OUT/review_tests_h200_${D}_s17k.log
python3 benchmarks/decode_mqa_probe.py --rounds 1 --rows 'd128 8/1 b1 n8192' 2>&1 | grep -E 'served|split alone|read 64' \
    | tee $OUT/review_probes_h200_${D}_s17k.log
python3 benchmarks/decode_launch_gap_probe.py --rounds 1 --rows 'd128 8/1 b1 n8192' 2>&1 | tail -2 \
    | tee -a $OUT/review_probes_h200_${D}_s17k.log
