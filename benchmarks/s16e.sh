#!/bin/bash
# Sixteenth session, closing call (nvidia-h200): the GPU suite on the session's last code (after s16d: two lines
# wrapped, and TmaError's message for CUDA_ERROR_INVALID_CONTEXT) and autoflash verify.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
SKIP_PIP=1 XDIST=20 TESTS_TIMEOUT=400 TESTS_K="not paged_space" bash benchmarks/h200_final.sh tests verify
