#!/bin/bash
# Twenty-ninth session (nvidia-h200): the checks on the code as it landed (S_ROWS served at D 128 non-causal, the review commits):
# every GPU test outside the opt-in paged-space sweep, then autoflash verify.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d); T0=$(date +%s)
SKIP_PIP=1 XDIST=15 TESTS_TIMEOUT=400 TESTS_K="not paged_space" FINAL_DEADLINE=$((T0 + 570)) \
  bash benchmarks/h200_final.sh tests verify
for f in tests verify; do cp $OUT/$f.log $OUT/${f}_h200_${D}_s29a.log; done
