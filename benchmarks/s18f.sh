#!/bin/bash
# Eighteenth session, sixth call (nvidia-h200): does the D 64 non-causal backward lose its last partial wave?
# (benchmarks/backward_waves_probe.py: the served kernel and cuDNN at 32/33/34/64/66 heads, batch 1, N 4096)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks AUTOFLASH_CACHE_DIR=/tmp/autoflash-cache PYTHONUNBUFFERED=1
timeout 200 python3 benchmarks/backward_waves_probe.py 2>&1 | tee $OUT/backward_waves_probe_h200_$(date +%Y-%m-%d)_s18f.log
