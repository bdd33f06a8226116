#!/bin/bash
# Seventeenth session, closing call (nvidia-h200): the GPU suite (with the combination test and the new serve-path
# tests) and autoflash verify on the session's last code; then rename the logs with the session's tag.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
SKIP_PIP=1 XDIST=20 TESTS_TIMEOUT=400 TESTS_K="not paged_space" bash benchmarks/h200_final.sh tests verify
D=$(date +%Y-%m-%d)
mv $OUT/tests.log $OUT/tests_h200_${D}_s17h.log; mv $OUT/verify.log $OUT/verify_h200_${D}_s17h.log
