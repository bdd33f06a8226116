#!/bin/bash
# Fourteenth session, fifth call (nvidia-h200, carry=[".whl"]): the decode probe on the D 128 one-split rows with long
# caches (issue 14; the D 64 rule's question at D 128, whose tuned entries hold 3 stages of 201 KB: one block an SM):
# the served config, an A/A copy, s2, w2s3 and bn16s3 (2 blocks an SM), 5 rounds. Log in $OUT.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
ROWS="d128 32/8 b64 n8192,d128 32/8 b64 n32768,d128 8/1 b256 n8192,d128 8/1 b256 n32768,d128 32/8 b256 n8192"
timeout 280 python3 benchmarks/decode_gap_probe.py --rounds 5 --rows "$ROWS" --variants default,s2,w2s3,bn16s3,default2 \
  --json $OUT/decode_probe.json > $OUT/decode_probe.log 2>&1
echo "probe rc $?"; tail -9 $OUT/decode_probe.log
