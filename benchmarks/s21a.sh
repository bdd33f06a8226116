#!/bin/bash
# Twenty-first session (nvidia-h200), first call: the GPU tests refactored in s20 (grad_errors) and EARLY_QUERY's
# (the wgmma GPU files with the switch on); what a block costs besides its query tiles (bwd_unit_cost.py: served,
# EARLY_QUERY, an A/A copy, cuDNN); the bar's bf16 rows by graph replay with the served tile repeated as alt1 (A/A,
# graph_timing's order now rotated each round) and EARLY_QUERY as alt2.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
AUTOFLASH_TEST_WATCHDOG_S=120 timeout 150 python3 -m pytest -q -p no:cacheprovider -n 14 -rf tests/test_backward_gpu.py \
  2>&1 | tail -4 | tee $OUT/backward_tests_h200_${D}_s21a.log
AUTOFLASH_TEST_SWITCHES="autoflash.ops.backward_wgmma.EARLY_QUERY=True" AUTOFLASH_TEST_WATCHDOG_S=120 timeout 200 \
  python3 -m pytest -q -p no:cacheprovider -n 14 -rf tests/test_backward_wgmma_gpu.py \
  tests/test_backward_wgmma_heavy_first_gpu.py tests/test_backward_wgmma_one_consumer_gpu.py \
  tests/test_backward_wgmma_tail_split_gpu.py tests/test_backward_wgmma_dq_producer_gpu.py \
  tests/test_backward_wgmma_dq_tile_gpu.py 2>&1 | tail -6 | tee $OUT/early_query_tests_h200_${D}_s21a.log
timeout 150 python3 benchmarks/bwd_unit_cost.py --rounds 7 --alt 64x128x12x2:EARLY_QUERY,64x128x12x2 2>&1 \
  | grep -v -i "warn\|no tuned config\|return Impl" | tee $OUT/bwd_unit_cost_h200_${D}_s21a.log
timeout 200 python3 benchmarks/bench_backward_graph.py --rounds 11 --dtypes bf16 \
  --alt 64x128x12x2,64x128x12x2:EARLY_QUERY 2>&1 | grep -v -i "warn\|no tuned config\|return Impl" \
  | tee $OUT/bench_backward_graph_aa_h200_${D}_s21a.log
