#!/bin/bash
# (Kept as run. Since then WARP_COMBINE is LANES_COMBINE and PDL_TRIGGER is gone: "end" is built in; see NOTES. The
# switch settings are now spelled for tests/conftest.py's AUTOFLASH_TEST_SWITCHES, which replaced the
# benchmarks/decode_switches_plugin.py this call used.)
# Twelfth session's second and third calls (nvidia-h200-x2, carry .whl). GPU 0: the decode GPU tests with WARP_COMBINE and
# PDL_COMBINE on (AUTOFLASH_TEST_SWITCHES), then the four test files the first call's 330 s limit cut
# (switches off; SKIP_CUT=1 leaves them out). GPU 1: benchmarks/decode_combine_ab.py. Logs in $OUT.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=$PWD:$PWD/benchmarks:/tmp/site PYTHONUNBUFFERED=1
(
  python3 -c "
from autoflash.ops import decode_kernels as d; d.WARP_COMBINE = d.PDL_COMBINE = True
from autoflash.kernels.render import render
src = render(d.MMA.default('sm_90', {'dtype': 'bf16', 'head_dim': 128, 'm_tiles': 1}))
print('switches on render: griddepcontrol', 'griddepcontrol.wait' in src, 'warp combine', 'SPLITS_PER_LANE' in src)"
  CUDA_VISIBLE_DEVICES=0 AUTOFLASH_TEST_SWITCHES="autoflash.ops.decode_kernels.WARP_COMBINE=True autoflash.ops.decode_kernels.PDL_COMBINE=True" \
    timeout 240 python3 -m pytest -q -m gpu -n 12 -p no:cacheprovider -rf tests/test_decode_gpu.py tests/test_decode_variants_gpu.py \
    tests/test_serve_decode_gpu.py tests/test_decode_swizzle_gpu.py tests/test_paged_gpu.py tests/test_paged_lookup_gpu.py \
    > $OUT/decode_tests_switches_on.log 2>&1
  echo "switches-on decode tests: $(tail -1 $OUT/decode_tests_switches_on.log)"; grep -E "^(FAILED|ERROR)" $OUT/decode_tests_switches_on.log | head
  [ -n "${SKIP_CUT:-}" ] && exit 0
  CUDA_VISIBLE_DEVICES=0 timeout 200 python3 -m pytest -q -m gpu -n 15 -p no:cacheprovider -rf tests/test_kernels_gpu.py \
    tests/test_host_path_gpu.py tests/test_head_dim_v_gpu.py tests/test_forward_o_layout_gpu.py tests/test_wgmma_idle_rows_gpu.py \
    tests/test_decode_gpu.py > $OUT/tests_cut_files.log 2>&1
  echo "cut files (switches off): $(tail -1 $OUT/tests_cut_files.log)"; grep -E "^(FAILED|ERROR)" $OUT/tests_cut_files.log | head
) > $OUT/gpu0.txt 2>&1 &
CUDA_VISIBLE_DEVICES=1 timeout 420 python3 benchmarks/decode_combine_ab.py --rounds 5 2>&1 \
  | grep -v "UserWarning\|return F.scaled\|DeprecationWarning\|stream=_stream" > $OUT/decode_combine_ab.log
wait
cat $OUT/gpu0.txt $OUT/decode_combine_ab.log
