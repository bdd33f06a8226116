#!/bin/bash
# Twenty-eighth session (nvidia-h200): flash_bwd_mma under a register cap (ops/backward_kernels.MAXNREG: __maxnreg__
# 224 / 240 instead of __launch_bounds__(256, 1), 0 B spilled at D 64 and, at 240, D 128), as alt columns beside an
# A/A copy of the mma column; bf16, graph replay, both build orders.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
for order in shuffled served-last; do
  timeout 200 python3 benchmarks/bench_backward_graph.py --rounds 9 --dtypes bf16 --build-order $order \
    --alt mma:MMA.MAXNREG=224,mma:MMA.MAXNREG=240,mma 2>&1 | grep -v -i "warn\|no.tuned.config\|return.Impl" \
    | tee -a $OUT/bench_backward_graph_mma_maxnreg_h200_${D}_s28b.log
done
