#!/bin/bash
# Fifteenth session, fifth call (nvidia-h200, carry=[".whl"]): flash_bwd_mma's dQ reductions from one base address
# (no per-row address or test on whole tiles) and its (head, tile) counters instead of a division: the float64 GPU
# tests of flash_bwd_mma, then the A/B against the previous template (benchmarks/ab_templates/, HEAD before the change)
# with an A/A copy, beside FA2's backward, bf16 D 64/128 x causal x N 4096/16384, 7 rounds of graph replay.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
timeout 200 python3 -m pytest -q -n 8 -p no:cacheprovider -rf tests/test_backward_gpu.py tests/test_backward_variants_gpu.py \
  tests/test_varlen_backward_gpu.py tests/test_backward_head_dim_v_gpu.py > $OUT/bwd_mma_tests.log 2>&1
echo "tests rc $?"; grep -E "FAILED|ERROR|passed|failed" $OUT/bwd_mma_tests.log | tail -6
timeout 300 python3 benchmarks/bwd_mma_source_ab.py --old-templates benchmarks/ab_templates --rounds 7 \
  > $OUT/bwd_mma_ab.log 2>&1
echo "ab rc $?"; cat $OUT/bwd_mma_ab.log | grep -v Warn
