#!/bin/bash
# The decode GPU tests (kernels, variants, serving, swizzle, paged, page lookup) into $OUT/decode_tests.log, with a
# one-line verdict; the run scripts of a session call this instead of repeating the list. TIMEOUT_S: 300 by default.
# Expects PYTHONPATH set up (the project, /tmp/site) and the GPU chosen by CUDA_VISIBLE_DEVICES.
timeout ${TIMEOUT_S:-300} python3 -m pytest -q -m gpu -n 12 -p no:cacheprovider -rf tests/test_decode_gpu.py \
  tests/test_decode_variants_gpu.py tests/test_serve_decode_gpu.py tests/test_decode_swizzle_gpu.py tests/test_paged_gpu.py \
  tests/test_paged_lookup_gpu.py > $OUT/decode_tests.log 2>&1
echo "decode GPU tests: rc $? $(tail -1 $OUT/decode_tests.log)"; grep -E "^(FAILED|ERROR)" $OUT/decode_tests.log | head
