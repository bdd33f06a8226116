#!/bin/bash
# Twelfth session's eighth call (nvidia-h200, carry .whl): the decode GPU tests on the session's last decode code (the
# split-count rule after s12g), then bench_decode on the rows whose count it changed and a neighbour it keeps.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
TIMEOUT_S=150 bash benchmarks/decode_gpu_tests.sh  # (the same test command, shared)
timeout 150 python3 benchmarks/bench_decode.py --rounds 5 --json $OUT/bench_decode.json \
  --rows 'd128 8/1 b1 n32768,d64 8/1 b1 n32768,d128 8/1 b1 n131072,d64 8/1 b1 n131072' 2>&1 \
  | grep -v "UserWarning\|return F.scaled\|n/a (RuntimeError" > $OUT/bench_decode.log
tail -12 $OUT/bench_decode.log
