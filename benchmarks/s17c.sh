#!/bin/bash
# Seventeenth session, third call (nvidia-h200): the seeded combination test (tests/test_combinations_gpu.py, 150 cases
# over attention / attention_with_kvcache / attention_varlen x every feature) and its refusal summary.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/autoflash-cache
D=$(date +%Y-%m-%d)
rm -f /tmp/combo.jsonl
AUTOFLASH_COMBO_LOG=/tmp/combo.jsonl timeout ${COMBO_TIMEOUT:-480} python3 -m pytest -q -n ${COMBO_WORKERS:-12} \
    -p no:cacheprovider tests/test_combinations_gpu.py ${COMBO_K:+-k "$COMBO_K"} 2>&1 | tail -60 \
    | tee $OUT/combinations_h200_${D}_s17c.log
python3 tests/combinations.py /tmp/combo.jsonl 2>&1 | tee $OUT/combinations_summary_h200_${D}_s17c.txt | tail -60
cp /tmp/combo.jsonl $OUT/combinations_h200_${D}_s17c.jsonl
