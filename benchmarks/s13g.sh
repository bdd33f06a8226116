#!/bin/bash
# Thirteenth session's seventh call (nvidia-h200, carry .whl): the decode GPU tests on the last serve/decode.py (the
# two off-grid adjustments merged into _for_grid after the sixth call).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
TIMEOUT_S=200 bash benchmarks/decode_gpu_tests.sh  # (the same test command, shared)
