#!/bin/bash
# Twenty-sixth session (nvidia-h200): the session's final tree (product code as s25f's, the review's refactors and
# the test helper's causal parameter): GPU suite and verify.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
XDIST=15 TESTS_TIMEOUT=280 TESTS_K="not paged_space" VERIFY_TIMEOUT=40 SKIP_PIP=1 bash benchmarks/h200_final.sh tests verify \
  2>&1 | tail -8
mv $OUT/tests.log $OUT/tests_h200_${D}_s26f.log; mv $OUT/verify.log $OUT/verify_h200_${D}_s26f.log
