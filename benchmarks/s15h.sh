#!/bin/bash
# Fifteenth session: the flash_bwd_mma A/B one row per process (the sixth call's second row faulted only after a
# first row had run in the same process, in the old template's warm-up; each row alone ran clean), after
# compute-sanitizer memcheck of the new kernel at N 16384 (whole tiles) and N 2000 (a tail tile).
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
san=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null | head -1)
for n in 2000 16384; do
  timeout 120 "$san" --tool memcheck --print-limit 5 python3 benchmarks/s15_dbg.py $n > $OUT/memcheck_$n.log 2>&1
  echo "memcheck N $n rc $?: $(grep -E "ERROR SUMMARY|^done" $OUT/memcheck_$n.log | tr '\n' ' ')"
done
header=""
for d in 64 128; do for c in no yes; do for n in 4096 16384; do
  timeout 60 python3 benchmarks/bwd_mma_source_ab.py --old-templates benchmarks/ab_templates --rounds 7 --head-dims $d \
    --causal $c --seqs $n $header 2>&1 | grep -E "^row|^bf16|Error" | tee -a $OUT/bwd_mma_ab.log
  header=--no-header
done; done; done
