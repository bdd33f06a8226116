#!/bin/bash
# Fourteenth session, fourth call (nvidia-h200-x2, carry=[".whl"]): GPU 0 the decode probe on the D 64 one-split rows
# with long caches (issue 14: the light knobs s3 / s2 / w2s3 against the served config and an A/A copy of it, 5
# rounds); GPU 1 the backward's LSE_DELTA_VEC tests and A/B (benchmarks/bwd_lse_delta_run.sh). Logs under $OUT.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests SKIP_PIP=1 || exit 1
ROWS="d64 32/8 b64 n8192,d64 32/8 b64 n32768,d64 32/8 b256 n8192,d64 8/1 b256 n8192,d64 8/1 b256 n32768,d64 8/1 b256 n131072"
( CUDA_VISIBLE_DEVICES=0 timeout 280 python3 benchmarks/decode_gap_probe.py --rounds 5 --rows "$ROWS" \
    --variants default,s3,s2,w2s3,default2 --json $OUT/decode_probe.json > $OUT/decode_probe.log 2>&1 ) &
mkdir -p $OUT/bwd
( CUDA_VISIBLE_DEVICES=1 OUT=$OUT/bwd bash benchmarks/bwd_lse_delta_run.sh > $OUT/bwd/run.log 2>&1 ) &
wait
echo "== backward LSE_DELTA_VEC (GPU 1)"; tail -30 $OUT/bwd/run.log
echo "== decode probe (GPU 0)"; tail -20 $OUT/decode_probe.log
