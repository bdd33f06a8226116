#!/bin/bash
# Twelfth session's seventh call (nvidia-h200, carry .whl): decode split counts with the new merge.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
timeout 200 python3 benchmarks/decode_split_count_probe.py --rounds 5 2>&1 \
  | grep -v "UserWarning\|return F.scaled" | tee $OUT/decode_split_count_probe.log
