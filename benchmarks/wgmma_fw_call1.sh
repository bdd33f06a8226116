#!/bin/bash
# Helper FW's first device call (issue 18 item 2 / issue 17 window): the TMA O store as KernelConfig.o_store on
# the GPU (tests/test_wgmma_schedule_ostore_gpu.py: float64 checks incl. D 96/104, paged, attention() and the
# drop-in called again into new outputs), then the window probe (benchmarks/wgmma_window_probe.py, D 128 N 4096)
# with two Qi slots as an extra row set (WgmmaTemplate.q_buffers = 2: tests/test_wgmma_q_buffers_gpu.py first), and
# the store A/B at D 96 N 1024 (the rule's lower edge). Run from the repository root, $OUT set, carry [".whl"].
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader
( timeout 40 python benchmarks/wgmma_window_probe.py --precompile --switch q_buffers=2 > $OUT/compile_window.log 2>&1
  timeout 20 python benchmarks/wgmma_ostore_ab.py --precompile --head-dims 96 --dtypes bf16 > $OUT/compile_ab.log 2>&1 ) &
timeout ${TESTS_S:-50} python -m pytest -q -n 8 -p no:cacheprovider --tb=short -rfs \
  tests/test_wgmma_schedule_ostore_gpu.py tests/test_wgmma_q_buffers_gpu.py 2>&1 | grep -v Warning | tee $OUT/tests.log | tail -12
wait; tail -n 3 $OUT/compile_window.log $OUT/compile_ab.log
timeout ${WIN_S:-30} python benchmarks/wgmma_window_probe.py --rounds 5 --switch q_buffers=2 2>&1 | tee $OUT/window.log | grep -v "^  \|UserWarning"
timeout ${AB_S:-18} python benchmarks/wgmma_ostore_ab.py --head-dims 96 --dtypes bf16 --rounds 5 --check 2>&1 \
  | tee $OUT/ab96.log | grep "^|\|NVIDIA"
