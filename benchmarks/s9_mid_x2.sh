#!/usr/bin/env bash
# Ninth session's A/B call (nvidia-h200-x2, carry .whl). GPU 0: SOFTCAP_POLY's then UNIFORM_WG's tests + A/B (their
# *_run.sh via ab_run.sh; UNIFORM_WG also at bf16 D 128/256). GPU 1: the backward call plans' tests + host table (host_backward_run.sh), then
# bench_backward on bf16 D 64/128 N 4096 (causal both) with the plans off, then on. Everything lands in $OUT/s9mid.tgz.
set -uo pipefail
OUT_REAL=$OUT; D=/tmp/s9mid; mkdir -p $D/sx $D/uw $D/hb
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export SKIP_PIP=1
( export CUDA_VISIBLE_DEVICES=1
  OUT=$D/hb bash benchmarks/host_backward_run.sh > $D/hb_run.txt 2>&1
  export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks AUTOFLASH_CACHE_DIR=/tmp/afcache1
  for on in False True; do
    echo "== backward_plans.ENABLED = $on"
    timeout 120 python3 -c "
import runpy, sys
import autoflash.serve.backward_plans as plans
plans.ENABLED = $on
sys.argv = ['bench_backward.py', '--head-dims', '64,128', '--seqs', '4096', '--dtypes', 'bf16', '--rounds', '3', '--no-det']
runpy.run_path('benchmarks/bench_backward.py', run_name='__main__')"
  done > $D/bench_backward_plans.log 2>&1 ) &
CUDA_VISIBLE_DEVICES=0 OUT=$D/sx bash benchmarks/wgmma_softcap_poly_run.sh > $D/sx_run.txt 2>&1
CUDA_VISIBLE_DEVICES=0 OUT=$D/uw bash benchmarks/wgmma_uniform_wg_run.sh > $D/uw_run.txt 2>&1
grep -q "^|" $D/uw/bench.log && CUDA_VISIBLE_DEVICES=0 PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests \
  AUTOFLASH_CACHE_DIR=/tmp/afcache timeout 100 python3 benchmarks/wgmma_uniform_wg_ab.py --check --head-dims 128 256 \
  --dtypes bf16 >> $D/uw_run.txt 2>&1  # the switch changes every non-paged kernel: D 128 / 256 rows too
wait
tar czf $OUT_REAL/s9mid.tgz -C $D .
for f in sx_run uw_run hb_run; do echo "##### $f"; cut -c1-250 $D/$f.txt; done
grep -E "^==|^\|" $D/bench_backward_plans.log | cut -c1-250
