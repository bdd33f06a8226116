#!/bin/bash
# (Kept as run. Since then WARP_COMBINE is LANES_COMBINE and PDL_TRIGGER is gone: "end" is built in; see NOTES. The
# switch setting is now spelled for tests/conftest.py's AUTOFLASH_TEST_SWITCHES, which replaced the
# benchmarks/decode_switches_plugin.py this call used.)
# Twelfth session's fifth call (nvidia-h200-x2, carry .whl). GPU 0: the decode GPU tests with PDL_TRIGGER=end, then
# the deterministic training-step test that timed out once in the fourth call's suite, four times alone. GPU 1:
# benchmarks/decode_combine_ab.py (old / lanes / pdl_start / pdl_end). Logs in $OUT.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=$PWD:$PWD/benchmarks:/tmp/site PYTHONUNBUFFERED=1
(
  CUDA_VISIBLE_DEVICES=0 AUTOFLASH_TEST_SWITCHES="autoflash.ops.decode_kernels.PDL_TRIGGER='end'" timeout 150 \
    python3 -m pytest -q -m gpu -n 12 -p no:cacheprovider -rf tests/test_decode_gpu.py tests/test_decode_variants_gpu.py \
    tests/test_serve_decode_gpu.py tests/test_decode_swizzle_gpu.py tests/test_paged_gpu.py tests/test_paged_lookup_gpu.py \
    > $OUT/decode_tests_trigger_end.log 2>&1
  echo "PDL_TRIGGER=end decode tests: $(tail -1 $OUT/decode_tests_trigger_end.log)"; grep -E "^(FAILED|ERROR)" $OUT/decode_tests_trigger_end.log | head
  for i in 1 2 3 4; do
    CUDA_VISIBLE_DEVICES=0 timeout 60 python3 -m pytest -q -m gpu -n 0 -p no:cacheprovider \
      "tests/test_forward_o_layout_gpu.py::test_training_step_equals_contiguous_o_bitwise" > $OUT/training_step_test_$i.log 2>&1
    echo "training-step test run $i: rc $? $(tail -1 $OUT/training_step_test_$i.log)"
  done
) > $OUT/gpu0.txt 2>&1 &
CUDA_VISIBLE_DEVICES=1 timeout 300 python3 benchmarks/decode_combine_ab.py --rounds 5 2>&1 \
  | grep -v "UserWarning\|return F.scaled\|DeprecationWarning" > $OUT/decode_combine_ab.log
wait
cat $OUT/gpu0.txt $OUT/decode_combine_ab.log
