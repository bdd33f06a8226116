#!/bin/bash
# Sixteenth session's first call, GPU 1 (beside the GPU suite and verify on GPU 0: benchmarks/suite_beside_x2.sh): the
# suite's hang reproduced in one process (benchmarks/stale_kernel_repro.py) with the launch as before the fix, then with
# the fix; the heavy-first GPU tests (the new stale-kernel test among them).
export PYTHONPATH=$PWD:$PWD/benchmarks:/tmp/site PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/autoflash-cache-gpu1
for mode in now rendered now rendered; do
    timeout 60 python3 benchmarks/stale_kernel_repro.py --launch $mode > /tmp/repro.txt 2>&1
    rc=$?
    tail -3 /tmp/repro.txt
    echo "launch=$mode exit $rc  (124: killed by the 60 s timeout)"
done | tee $OUT/stale_kernel_repro.txt
AUTOFLASH_TEST_WATCHDOG_S=60 timeout 200 python3 -m pytest -q -n 0 -p no:cacheprovider \
    tests/test_backward_wgmma_heavy_first_gpu.py tests/test_forward_o_layout_gpu.py 2>&1 | tail -5 | tee $OUT/heavy_first_tests.txt
