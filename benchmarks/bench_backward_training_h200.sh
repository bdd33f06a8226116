#!/bin/bash
# One device call (issue 16, helper K, after the tuning call): (1) the served backward (tuned entries of
# tuned_configs/sm_90.json) vs the heuristic default and SDPA's flash/cuDNN backward, bf16/fp16 x D 64/128 x
# N 4096/16384 x causal; (2) a training step end to end vs SDPA's default (bench_training.py --quick);
# (3) the GPU tests of the served configs: the training-curve test and the gradient checks.
export PYTHONUNBUFFERED=1
start=$(date +%s)
budget=${BUDGET:-106}
python benchmarks/bench_backward.py --precompile > "$OUT/precompile.txt" 2>&1
echo "precompile rc $? after $(( $(date +%s) - start )) s"
timeout $(( budget - 60 - ($(date +%s) - start) )) python benchmarks/bench_backward.py --dtypes bf16,fp16 \
    --head-dims 64,128 --seqs 4096,16384 --sdpa flash,cudnn --no-det --lse-from sdpa --rounds 3 \
    --json "$OUT/bwd_tuned.json" > "$OUT/bwd_tuned.txt" 2>&1
echo "bench_backward rc $? after $(( $(date +%s) - start )) s"; grep -v "^  " "$OUT/bwd_tuned.txt" | tail -n 19
timeout $(( budget - 30 - ($(date +%s) - start) )) python benchmarks/bench_training.py --quick \
    --json "$OUT/training.json" > "$OUT/training.txt" 2>&1
echo "bench_training rc $? after $(( $(date +%s) - start )) s"; grep -v "^  compiled" "$OUT/training.txt" | tail -n 14
timeout $(( budget - ($(date +%s) - start) )) python -m pytest -x -q -p no:cacheprovider tests/test_backward_gpu.py \
    -k "tiny_decoder or gradients_match_float64_autograd" > "$OUT/tests.txt" 2>&1
echo "tests rc $? after $(( $(date +%s) - start )) s"; tail -n 4 "$OUT/tests.txt"
