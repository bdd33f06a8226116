#!/bin/bash
# Nineteenth session (nvidia-h200): the kernels each backward runs and their times (benchmarks/backward_kernels_probe.py:
# torch.profiler), SDPA's cuDNN backward beside ours, bf16 D 64 and 128, N 4096, non-causal.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
timeout 150 python3 benchmarks/backward_kernels_probe.py 2>&1 | grep -v -i "warn\|no tuned config\|return Impl" \
  | tee $OUT/backward_kernels_probe_h200_${D}_s19k.log
