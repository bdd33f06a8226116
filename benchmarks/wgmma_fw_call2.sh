#!/bin/bash
# Helper FW's second device call (issue 17 window): benchmarks/wgmma_window_probe.py at D 128 (br128 bc128 s2, the TMA
# store by the rule) and D 64 (br192 bc128 s2), each with two Qi slots as extra rows (WgmmaTemplate.q_buffers = 2,
# GPU-tested in call 1: tests/test_wgmma_q_buffers_gpu.py 7 passed). Run from the repository root, $OUT set,
# carry [".whl"].
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader
timeout 40 python benchmarks/wgmma_window_probe.py --precompile --switch q_buffers=2 > $OUT/compile128.log 2>&1 &
timeout 40 python benchmarks/wgmma_window_probe.py --precompile --switch q_buffers=2 --head-dim 64 --tiles 192x128s2 \
  > $OUT/compile64.log 2>&1 &
wait; tail -n 2 $OUT/compile128.log $OUT/compile64.log
timeout ${WIN_S:-35} python benchmarks/wgmma_window_probe.py --rounds 7 --switch q_buffers=2 2>&1 | tee $OUT/window128.log \
  | grep -v "^  \|UserWarning\|warn("
timeout ${WIN64_S:-30} python benchmarks/wgmma_window_probe.py --rounds 7 --switch q_buffers=2 --head-dim 64 \
  --tiles 192x128s2 2>&1 | tee $OUT/window64.log | grep -v "^  \|UserWarning\|warn("
# attention()'s host cost now that its D 128 tiny-problem config (served from the N 1024 entry, br128 bc128 s2) stores
# O by TMA: the packed launch re-encodes O's map whenever the output pointer is new
timeout ${HOST_S:-25} python benchmarks/host_overhead.py --host-only --label fw_tma_store --out $OUT/host.json 2>&1 \
  | tee $OUT/host.log | grep -v "^  \|UserWarning\|warn(" | tail -14
