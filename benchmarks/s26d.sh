#!/bin/bash
# Twenty-sixth session (nvidia-h200): flash_bwd_mma STMATRIX_STORE (P^T, dS^T to shared memory by stmatrix on sm_90).
# The mma backward's GPU tests with it on, then the A/B both ways: the served mma tile with it on against copies
# with it off and on (A/A), 16 rows; then, in a process whose default is off, copies with it on and off (bf16).
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
timeout 240 python3 -m pytest -q -p no:cacheprovider -n 8 tests/test_backward_mma_stmatrix_gpu.py \
  tests/test_backward_mma_stmatrix.py tests/test_backward_gpu.py tests/test_backward_variants_gpu.py \
  tests/test_varlen_backward_gpu.py tests/test_backward_head_dim_v_gpu.py tests/test_backward_mma_order_gpu.py \
  > $OUT/stmatrix_tests_h200_${D}_s26d.log 2>&1
tail -3 $OUT/stmatrix_tests_h200_${D}_s26d.log
G="grep -v -i warn\|no.tuned.config\|return.Impl"
timeout 200 python3 benchmarks/bench_backward_graph.py --rounds 9 --alt mma:-MMA.STMATRIX_STORE,mma \
  2>&1 | $G | tee $OUT/bench_backward_graph_stmatrix_h200_${D}_s26d.log
timeout 150 python3 -c "
import runpy, sys
import autoflash.ops.backward_kernels as m
m.STMATRIX_STORE = False  # the other way round: the mma column without, the copies with and without
sys.argv = ['bench_backward_graph.py', '--rounds', '9', '--dtypes', 'bf16', '--alt', 'mma:MMA.STMATRIX_STORE,mma']
runpy.run_path('benchmarks/bench_backward_graph.py', run_name='__main__')
" 2>&1 | $G | tee $OUT/bench_backward_graph_stmatrix_reverse_h200_${D}_s26d.log
