#!/bin/bash
# One device call for flash_bwd_wgmma's UNIFORM_WG values 1 to 4 (helper BU2; issue 16): the device's NVRTC version
# and the served kernels (12 on the H200) compiled off and at every value (benchmarks/bwd_uniform_wg_pick.py:
# registers / spills / serialised, in parallel, into the compile cache), then for the clean values only the float64
# and off-vs-on bitwise GPU tests, and, only if they all pass, the A/B of the picked value (served vs it vs served A/A
# beside SDPA cuDNN, bf16/fp16 D 64/128 N 4096 causal and not, then bf16 D 128 N 16384) through benchmarks/ab_run.sh.
# Fits a 170 s call. Run from the repository root with $OUT set, carry=[".whl"]. Logs:
# $OUT/{pick,compile,tests,bench,bench16k}.log.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
{ [ -n "${SKIP_PIP:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl; } && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
timeout ${PICK_S:-25} python benchmarks/bwd_uniform_wg_pick.py > $OUT/pick.log 2>&1
grep -v "| 0 | 0 | False |" $OUT/pick.log  # the NVRTC version, the unclean rows, clean / pick
echo "$(grep -c "| 0 | 0 | False |" $OUT/pick.log) kernels clean (the whole table: pick.log)"
values=$(sed -n 's/^clean: //p' $OUT/pick.log) pick=$(sed -n 's/^pick: //p' $OUT/pick.log)
[ -n "$pick" ] || { echo "no clean UNIFORM_WG value: no tests, no timing"; exit 1; }
echo "GPU tests for UNIFORM_WG $values; A/B of UNIFORM_WG $pick"
export AUTOFLASH_UNIFORM_WG_VALUES=$values AUTOFLASH_UNIFORM_WG_VALUE=$pick SKIP_PIP=1
export COMPILE_S=${COMPILE_S:-30} TESTS_S=${TESTS_S:-60} BENCH_S=${BENCH_S:-55} BENCH16K_S=${BENCH16K_S:-20}
bash benchmarks/ab_run.sh benchmarks/bench_bwd_uniform_wg.py tests/test_backward_wgmma_uniform_wg_gpu.py
