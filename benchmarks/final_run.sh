#!/usr/bin/env bash
# One device call: tune the campaign of issue 3 (item 9), check every tuned entry, run the
# GPU tests, benchmark against SDPA. Everything lands under $OUT (logs, the tuned file, bench json).
# Usage on the GPU machine (carry .whl, made by ../shared/device/fetch-wheels.sh platformdirs tqdm):
#   bash benchmarks/final_run.sh [trials]
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1 PATH=/tmp/site/bin:$PATH
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
trials=${1:-24}
start=$(date +%s)
timeout 270 python3 -m autoflash.cli tune --arch sm_90 --trials "$trials" --timeout 20 --storage /tmp/tune.log \
    --workers 15 2>&1 | grep -v '^\s*$' | tail -40 | tee "$OUT/tune.txt"
echo "campaign wall time: $(( $(date +%s) - start )) s" | tee -a "$OUT/tune.txt"
cp tuned_configs/sm_90.json "$OUT/sm_90.json"
timeout 60 python3 -m autoflash.cli verify 2>&1 | tail -8 | tee "$OUT/verify.txt"
timeout 120 python3 benchmarks/bench_attention.py --out "$OUT/bench.json" 2>&1 | tail -28 > "$OUT/bench.txt"
timeout 120 python3 -m pytest -q tests/test_tuned_configs.py tests/test_kernels_gpu.py tests/test_robustness_gpu.py \
    tests/test_api_gpu.py tests/test_torch_sdpa.py 2>&1 | tail -6 | tee "$OUT/pytest.txt"
cat "$OUT/bench.txt"
