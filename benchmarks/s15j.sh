#!/bin/bash
# Fifteenth session: (1) the new host-path test (a plan first packed in a thread with no CUDA context) with the fix, and
# the same test with ensure_context stubbed out in forward_launch (the negative control: it must fail); (2) the
# training-step test that timed out in three full-suite runs, under load: 20 processes, each running it in a loop for
# ~150 s with a 60 s watchdog (-n 0: the first run's -n default started 8 xdist workers a process and every run
# timed out starting up); passes, failures and the watchdog's notes counted.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
T=tests/test_host_path_gpu.py::test_a_plan_first_packed_in_a_thread_without_a_context
if [ -z "${STRESS_ONLY:-}" ]; then
timeout 90 python3 -m pytest -q -p no:cacheprovider $T 2>&1 | tail -1
cat > /tmp/stub.py <<'PY'
import autoflash.ops.forward_launch as fl
fl.ensure_context = lambda: None
PY
timeout 90 python3 -c "import sys; sys.path.insert(0, '/tmp'); import stub, pytest; sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', '$T']))" 2>&1 | grep -E "passed|failed|Error" | tail -2
fi
timeout 60 python3 -m pytest -q -n 0 -p no:cacheprovider tests/test_forward_o_layout_gpu.py -k training_step 2>&1 | tail -1  # warm the cache
end=$((SECONDS + 130))
for w in $(seq 1 20); do
  ( n=0; while [ $SECONDS -lt $end ]; do
      AUTOFLASH_TEST_WATCHDOG_S=45 timeout 55 python3 -m pytest -q -n 0 -p no:cacheprovider -x \
        tests/test_forward_o_layout_gpu.py -k training_step > /tmp/stress_${w}_${n}.log 2>&1
      rc=$?; echo "$w $n rc $rc" >> $OUT/stress_rc.txt
      [ $rc -ne 0 ] && cp /tmp/stress_${w}_${n}.log $OUT/stress_fail_${w}_$n.log
      n=$((n + 1))
    done ) &
done
wait
echo "runs $(wc -l < $OUT/stress_rc.txt), failed $(grep -vc 'rc 0$' $OUT/stress_rc.txt)"
grep -h "watchdog:" $OUT/stress_fail_*.log 2>/dev/null | sort | uniq -c | head
