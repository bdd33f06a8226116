#!/bin/bash
# Thirteenth session's seventh call (nvidia-h200, carry .whl): the decode GPU tests on the last serve/decode.py (the
# two off-grid adjustments merged into _for_grid after the sixth call).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
timeout 200 python3 -m pytest -q -m gpu -n 12 -p no:cacheprovider -rf tests/test_decode_gpu.py \
  tests/test_decode_variants_gpu.py tests/test_serve_decode_gpu.py tests/test_decode_swizzle_gpu.py tests/test_paged_gpu.py \
  tests/test_paged_lookup_gpu.py > $OUT/decode_tests.log 2>&1
echo "decode GPU tests: rc $? $(tail -1 $OUT/decode_tests.log)"; grep -E "^(FAILED|ERROR)" $OUT/decode_tests.log | head
