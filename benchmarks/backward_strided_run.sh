#!/bin/bash
# One device call for ops/backward_wgmma.STRIDED (helpers SI and SO, issue 16's training step; ~165 s): compile the
# A/A's kernels in the background, tests/test_backward_strided_gpu.py and tests/test_forward_o_layout_gpu.py (O laid
# out like q, phase 2), then, only if they all pass: the A/A of the stride arithmetic on contiguous inputs
# (benchmarks/bench_backward_strided.py, bf16 D 64/128 N 4096 causal both, beside SDPA cuDNN), the decoder step
# alternating STRIDED off / phase 1 (O contiguous) / phase 1+2 (O like q) (benchmarks/strided_model_ab.py), and the
# step's kernel profile with the switch on (profile_training_step.py --model: of the 20 elementwise copies a step,
# phase 1 leaves the 4 reshape copies of O, phase 2 none). Run from the repository root with $OUT set, carry=[".whl"].
# Logs: $OUT/*.log.
export COMPILE_S=40 TESTS_S=70 BENCH_S=25 BENCH16K_S=0 AB_ARGS="--dtypes bf16"
bash benchmarks/ab_run.sh benchmarks/bench_backward_strided.py tests/test_backward_strided_gpu.py \
  tests/test_forward_o_layout_gpu.py || exit 1
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests
timeout 40 python3 benchmarks/strided_model_ab.py 2>&1 | tee $OUT/model_ab.log | grep "^|\|model"
timeout 25 python3 -c "
import runpy, sys
import autoflash.ops.backward_wgmma as w
w.STRIDED = True
sys.argv = ['profile_training_step.py', '--model']
runpy.run_path('benchmarks/profile_training_step.py', run_name='__main__')" > $OUT/profile.log 2>&1
grep -A22 "^## model" $OUT/profile.log | cut -c1-140
