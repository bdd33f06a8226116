#!/bin/bash
# Twenty-third session, second call (nvidia-h200): (1) where a consumer warpgroup's query-tile time goes (the clock
# probe's new per-phase laps) on the bf16 D 64 / D 128 non-causal rows; (2) flash_bwd_mma's FRAGMENT_PIPELINE
# (ops/backward_kernels, the helper's prototype): its float64 GPU tests with it on, then an A/B against the
# unchanged template (two A/A copies) beside FA2, one row per process.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
timeout 150 python3 benchmarks/bwd_block_clocks.py --rows bf16:64:4096:false,bf16:64:16384:false,bf16:128:4096:false \
  2>&1 | grep -v -i "warn\|no tuned config\|return Impl" | tee $OUT/bwd_phase_clocks_h200_${D}_s23b.log
AUTOFLASH_TEST_SWITCHES="autoflash.ops.backward_kernels.FRAGMENT_PIPELINE=(64,128,256)" AUTOFLASH_TEST_WATCHDOG_S=100 \
  timeout 200 python3 -m pytest -q -p no:cacheprovider -n 14 -rf tests/test_backward_gpu.py \
  tests/test_backward_head_dims_gpu.py tests/test_varlen_backward_gpu.py 2>&1 | tail -6 \
  | tee $OUT/fragment_pipeline_tests_h200_${D}_s23b.log
mkdir -p /tmp/ab_off /tmp/ab_pipe && cp templates/flash_bwd_mma.cu.j2 /tmp/ab_off/
{ printf '{%% set fragment_pipeline = true -%%}\n'; cat templates/flash_bwd_mma.cu.j2; } > /tmp/ab_pipe/flash_bwd_mma.cu.j2
header=""
for d in 64 128; do for c in no yes; do
  timeout 70 python3 benchmarks/bwd_mma_source_ab.py --old-templates /tmp/ab_off --extra /tmp/ab_pipe --rounds 7 \
    --head-dims $d --causal $c --seqs 16384 $header 2>&1 | grep -E "^row|^bf16|Error" \
    | tee -a $OUT/bwd_mma_fragment_pipeline_ab_h200_${D}_s23b.log
  header=--no-header
done; done
