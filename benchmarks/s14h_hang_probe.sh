#!/bin/bash
# Fourteenth session, eighth call (nvidia-h200, carry .whl): does tests/test_forward_o_layout_gpu.py::
# test_training_step_equals_contiguous_o_bitwise stall under load (the sixth call's suite timed it out once)? Eight
# shells run it 6 times each at once on one GPU (48 runs, one compile cache), each run under a 90 s timeout; a run
# that times out is counted and its output kept. Logs in $OUT.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=$PWD:/tmp/site AUTOFLASH_CACHE_DIR=/tmp/afcache PYTHONUNBUFFERED=1
T=tests/test_forward_o_layout_gpu.py::test_training_step_equals_contiguous_o_bitwise
timeout 120 python3 -m pytest -q -p no:cacheprovider $T > $OUT/warm.log 2>&1; echo "warm-up: $(tail -1 $OUT/warm.log)"
for s in 1 2 3 4 5 6 7 8; do
  ( for i in 1 2 3 4 5 6; do
      timeout 90 python3 -m pytest -q -p no:cacheprovider $T > $OUT/run_${s}_$i.log 2>&1
      echo "shell $s run $i rc $?"
    done ) > $OUT/shell_$s.txt &
done
wait
cat $OUT/shell_*.txt | awk '{print $NF}' | sort | uniq -c | sed 's/^/rc count: /'
grep -l "rc 124" $OUT/shell_*.txt | head
for f in $OUT/run_*.log; do grep -q " passed" $f || { echo "== $f"; tail -5 $f; }; done | head -40
