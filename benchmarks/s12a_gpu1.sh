#!/bin/bash
# Twelfth session's first call, GPU 1 part (run by benchmarks/suite_beside_x2.sh with $OUT set): where the small
# decode rows' time goes (split kernel, combine kernel, fused twin, cuDNN; benchmarks/decode_launch_gap_probe.py).
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
timeout 300 python3 benchmarks/decode_launch_gap_probe.py --rounds 5 2>&1 | grep -v "UserWarning\|return F.scaled" \
  | tee $OUT/decode_launch_gap_probe.log
