#!/usr/bin/env bash
# The H200 session's closing checks, in one device call (carry .whl):
#   tests   every GPU test (pytest -m gpu)
#   verify  autoflash verify: every entry of tuned_configs/<arch>.json re-checked on this GPU
#   forward tune the forward campaign's 16-bit keys (bf16/fp16 x D 64/128/256 or $FORWARD_DIMS x causal, buckets
#           1k/4k/16k or $FORWARD_SEQS), warm-started from the entries already in tuned_configs/, into tuned_configs/
#   decode  tune the decode op's keys (bf16/fp16 x D 64/128, <= 16 packed rows) into tuned_configs/
#   bench_decode  benchmarks/bench_decode.py: the decode table against SDPA and the copy bandwidth
#   bench_kvcache  benchmarks/bench_kvcache.py: issue 15's three tables (varlen, paged decode, chunked prefill)
#   host    benchmarks/host_overhead.py: host microseconds per call, attention() and the drop-in vs SDPA
#   bench_varlen  benchmarks/bench_varlen.py: varlen and chunked prefill against the dense kernel and SDPA
#   bench   autoflash bench: the forward grid (bf16/fp16 x D 64/128/256 x causal x N 1k/4k/16k; $BENCH_ARGS) vs SDPA
#   bench_dims  autoflash bench at head dims 40/80/96/160 (bf16, N 4096, causal both) vs SDPA
#   paged_sweep  benchmarks/bench_decode.py --paged-sweep: paged decode configs on the page-16 rows
#   paged   tune the paged decode keys (bf16/fp16 x D 64/128, <= 16 packed rows, 16-key pages)
#   variants  tune bf16 D 128 ($VARIANT_DIMS, e.g. 64,128) window (causal), softcap (non-causal), sinks and ALiBi
#             (causal) keys at N 4k/16k, and bf16 D 80/96 (causal both) at N 1k/4k/16k (unless $VARIANT_SKIP_80_96)
#   window  re-tune bf16 D 128 ($VARIANT_DIMS) window (causal) keys at N 4k/16k, o_store in the space (SA's W0)
#   dv      tune bf16 Dqk 192 / Dv 128 (causal both, N 1k/4k/16k)
#   training  benchmarks/bench_training.py --quick: a decoder's training step, autoflash vs SDPA's default
#   bwd_tune  tune flash_bwd_wgmma's keys (bf16/fp16 x D 64/128 x causal both, N 4k/16k, not deterministic)
#   bench_backward  benchmarks/bench_backward.py: D 64/128 x N 4k/16k x bf16/fp16 x causal vs SDPA's backward
#   ncu_bwd  Nsight Compute over the served backward and cuDNN's (bf16 N 4096 non-causal, D $NCU_DIMS: 64 128)
#   ncu_bwd_source  warp-stall samples per SASS instruction of the served backward's main kernel (D $NCU_DIMS)
#   wgmma_det  flash_bwd_wgmma's deterministic tests alone, under a short timeout (a spin lock never run before)
#   tests_serve  the GPU tests of the serving, host-path, backward and Dqk != Dv files only
#   tests_files  the GPU tests of the files named in $TESTS_FILES only
#   bench_variants  benchmarks/bench_variants.py (no FlexAttention; $VARIANTS_ARGS, e.g. --graph): window/softcap/sinks/ALiBi
#                   per visible pair vs plain
# Usage on the GPU machine: bash benchmarks/h200_final.sh tests verify decode
# Logs and the updated tuned_configs/sm_90.json land in $OUT; a short summary of each part comes last.
set -uo pipefail
[ -n "${SKIP_PIP:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1 PATH=/tmp/site/bin:$PATH
export OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export AUTOFLASH_CACHE_DIR=/tmp/autoflash-cache
ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)  # Nsight Compute (the ncu_* parts)
summary=""
for part in "$@"; do
    t0=$(date +%s)
    if [ -n "${FINAL_DEADLINE:-}" ] && [ $(( FINAL_DEADLINE - t0 )) -lt 25 ]; then  # epoch seconds: parts past it are skipped
        summary+=$'\n'"===== $part: skipped (deadline)"; continue
    fi
    case $part in
        tests) AUTOFLASH_TEST_WATCHDOG_S=${TEST_WATCHDOG_S:-200} timeout ${TESTS_TIMEOUT:-400} python3 -m pytest -v -m gpu -n ${XDIST:-15} -p no:cacheprovider -rf --durations=30 -k "${TESTS_K:-}" tests/ > "$OUT/tests.log" 2>&1
               # -v: per-test lines survive a timeout; the counts below are read from them
               s=$(grep -E "^(FAILED|ERROR)|passed|failed" "$OUT/tests.log" | grep -v "^\[" | tail -30
                   echo "per-test lines: $(grep -c ' PASSED' "$OUT/tests.log") PASSED, $(grep -c ' FAILED' "$OUT/tests.log") FAILED, $(grep -c ' SKIPPED' "$OUT/tests.log") SKIPPED, $(grep -c ' ERROR' "$OUT/tests.log") ERROR") ;;
        verify) timeout ${VERIFY_TIMEOUT:-200} python3 -m autoflash.cli verify > "$OUT/verify.log" 2>&1
                s=$(tail -6 "$OUT/verify.log") ;;
        forward) timeout ${FORWARD_TIMEOUT:-330} python3 -m autoflash.cli tune --dtype bf16,fp16 --head-dim ${FORWARD_DIMS:-64,128,256} \
                     --causal both --seq-len ${FORWARD_SEQS:-1024,4096,16384} --trials ${FORWARD_TRIALS:-12} --timeout 12 \
                     --warm-start --out tuned_configs \
                     > "$OUT/forward_tune.log" 2>&1
                 cp tuned_configs/sm_90.json "$OUT/sm_90.json"
                 s=$(tail -20 "$OUT/forward_tune.log") ;;
        decode) timeout 150 python3 -m autoflash.cli tune --op decode --dtype bf16,fp16 --head-dim 64,128 \
                    --key m_tiles=1 --trials ${DECODE_TRIALS:-12} --timeout 25 --warm-start --out tuned_configs > "$OUT/decode_tune.log" 2>&1
                cp tuned_configs/sm_90.json "$OUT/sm_90.json"
                s=$(tail -14 "$OUT/decode_tune.log") ;;
        bench_decode) timeout 200 python3 benchmarks/bench_decode.py --rounds 3 > "$OUT/bench_decode.log" 2>&1
                      s=$(tail -25 "$OUT/bench_decode.log") ;;
        bench_kvcache) timeout ${KV_TIMEOUT:-120} python3 benchmarks/bench_kvcache.py --rounds 3 --json "$OUT/bench_kvcache.json" > "$OUT/bench_kvcache.log" 2>&1
                       s=$(tail -12 "$OUT/bench_kvcache.log") ;;
        host) timeout 60 python3 benchmarks/host_overhead.py --host-only --out "$OUT/host_overhead.json" > "$OUT/host_overhead.log" 2>&1
              s=$(tail -12 "$OUT/host_overhead.log") ;;
        bench_varlen) timeout 90 python3 benchmarks/bench_varlen.py --rounds 3 > "$OUT/bench_varlen.log" 2>&1
                      s=$(tail -22 "$OUT/bench_varlen.log") ;;
        paged) timeout ${PAGED_TIMEOUT:-150} python3 -m autoflash.cli tune --op decode --dtype bf16,fp16 --head-dim 64,128 \
                   --key m_tiles=1 --key paged=yes --trials ${PAGED_TRIALS:-16} --timeout ${PAGED_STUDY_TIMEOUT:-10} --out tuned_configs > "$OUT/paged_tune.log" 2>&1
               cp tuned_configs/sm_90.json "$OUT/sm_90.json"
               s=$(tail -16 "$OUT/paged_tune.log") ;;
        variants) { for v in "window=yes --causal yes" "softcap=yes --causal no" "sinks=yes --causal no" "alibi=yes --causal yes"; do
                        timeout 60 python3 -m autoflash.cli tune --dtype bf16 --head-dim ${VARIANT_DIMS:-128} \
                            --seq-len 4096,16384 --key $v --trials ${VARIANT_TRIALS:-16} --timeout 6 --out tuned_configs; done
                    [ -n "${VARIANT_SKIP_80_96:-}" ] || timeout 100 python3 -m autoflash.cli tune --dtype bf16 --head-dim 80,96 \
                        --causal both --trials 16 --timeout 6 --out tuned_configs; } > "$OUT/variants_tune.log" 2>&1
                  cp tuned_configs/sm_90.json "$OUT/sm_90.json"
                  s=$(grep -E "^(bf16|fp16)|merged|time: wall" "$OUT/variants_tune.log" | tail -40) ;;
        window) timeout ${WINDOW_TIMEOUT:-90} python3 -m autoflash.cli tune --dtype bf16 --head-dim ${VARIANT_DIMS:-128} \
                    --seq-len 4096,16384 --key window=yes --causal yes --trials ${VARIANT_TRIALS:-16} --timeout 8 \
                    --out tuned_configs > "$OUT/window_tune.log" 2>&1
                cp tuned_configs/sm_90.json "$OUT/sm_90.json"
                s=$(grep -E "^(bf16|fp16)|merged|time: wall" "$OUT/window_tune.log" | tail -12) ;;
        dv) timeout 100 python3 -m autoflash.cli tune --dtype bf16 --head-dim 192 --key head_dim_v=128 --causal both \
                --trials 16 --timeout 8 --out tuned_configs > "$OUT/dv_tune.log" 2>&1
            cp tuned_configs/sm_90.json "$OUT/sm_90.json"
            s=$(grep -E "^(bf16|fp16)|merged|time: wall" "$OUT/dv_tune.log" | tail -12) ;;
        training) timeout 120 python3 benchmarks/bench_training.py --quick --json "$OUT/training.json" > "$OUT/training.log" 2>&1
                  s=$(tail -12 "$OUT/training.log") ;;
        bench_backward) timeout 60 python3 benchmarks/bench_backward.py --precompile --head-dims 64,128 > "$OUT/bench_backward.log" 2>&1
                        timeout ${BACKWARD_TIMEOUT:-240} python3 benchmarks/bench_backward.py --head-dims 64,128 \
                            --seqs 4096,16384 --dtypes bf16,fp16 --rounds 3 >> "$OUT/bench_backward.log" 2>&1
                        s=$(tail -20 "$OUT/bench_backward.log") ;;
        bwd_tune) for dt in 64:524288 128:262144; do  # (head dim:tokens) the bar's size: 16k tokens x 2048 / D heads
                      timeout ${BWD_TUNE_TIMEOUT:-170} python3 -m autoflash.cli tune --op backward --template flash_bwd_wgmma \
                          --dtype bf16,fp16 --head-dim ${dt%:*} --causal both --seq-len 4096,16384 --key deterministic=no \
                          --trials 16 --timeout 30 --warm-start --tokens ${dt#*:} --out tuned_configs >> "$OUT/bwd_tune.log" 2>&1
                  done
                  cp tuned_configs/sm_90.json "$OUT/sm_90.json"
                  s=$(tail -22 "$OUT/bwd_tune.log") ;;
        ncu_bwd) gmma=sm__pipe_tensor_op_gmma_cycles_active  # asked for only where this ncu knows it
                 "$ncu" --query-metrics --chip gh100 2>/dev/null | grep -q "^$gmma " \
                     && metrics="--metrics $gmma.avg.pct_of_peak_sustained_active" || metrics=""
                 for d in ${NCU_DIMS:-64 128}; do  # our served backward and cuDNN's, bf16 N 4096 non-causal
                     timeout ${NCU_TIMEOUT:-120} "$ncu" --clock-control none --profile-from-start off \
                         --section SpeedOfLight --section WarpStateStats --section SchedulerStats \
                         --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
                         $metrics -f -o /tmp/ncu_bwd_d$d python3 benchmarks/bench_backward.py --profile --head-dims $d \
                         --seqs 4096 --sdpa cudnn > "$OUT/ncu_bwd_d$d.log" 2>&1
                     "$ncu" --import /tmp/ncu_bwd_d$d.ncu-rep --page raw --csv > /tmp/ncu_bwd_d$d.csv 2>> "$OUT/ncu_bwd_d$d.log"
                     python3 benchmarks/ncu_summary.py /tmp/ncu_bwd_d$d.csv > "$OUT/ncu_bwd_d$d.txt" 2>&1
                 done
                 s=$(grep -E "^===|gpu__time_duration|gmma|issue_active|warps_eligible|stalls" "$OUT"/ncu_bwd_d*.txt | head -40) ;;
        ncu_bwd_source) for d in ${NCU_DIMS:-64 128}; do  # warp-stall samples per SASS instruction of our main kernel
                            timeout ${NCU_TIMEOUT:-120} "$ncu" --clock-control none --profile-from-start off \
                                --kernel-name regex:"flash_bwd_wgmma_.*_wq1(_causal)?\$" --section SourceCounters \
                                --section WarpStateStats --import-source no -f -o /tmp/ncu_src_d$d \
                                python3 benchmarks/bench_backward.py --profile --head-dims $d --seqs 4096 --sdpa cudnn \
                                > "$OUT/ncu_src_d$d.log" 2>&1
                            "$ncu" --import /tmp/ncu_src_d$d.ncu-rep --page source --csv --print-source sass \
                                > /tmp/ncu_src_d$d.csv 2>> "$OUT/ncu_src_d$d.log"
                            gzip -c /tmp/ncu_src_d$d.csv > "$OUT/ncu_src_d$d.csv.gz"
                            python3 benchmarks/ncu_summary.py --source /tmp/ncu_src_d$d.csv > "$OUT/ncu_src_d$d.txt" 2>&1
                        done
                        s=$(head -c 6000 "$OUT"/ncu_src_d*.txt) ;;
        wgmma_det) timeout 90 python3 -m pytest -q -n 4 -p no:cacheprovider -rf tests/test_backward_wgmma_gpu.py \
                       -k deterministic > "$OUT/wgmma_det.log" 2>&1
                   s=$(tail -5 "$OUT/wgmma_det.log") ;;
        bench) timeout ${BENCH_TIMEOUT:-200} python3 -m autoflash.cli bench --rounds 5 --out "$OUT/bench.json" ${BENCH_ARGS:-} \
                   --plots "$OUT/plots" > "$OUT/bench.log" 2>&1
               s=$(tail -42 "$OUT/bench.log") ;;
        bench_dims) timeout 120 python3 -m autoflash.cli bench --dtype bf16 --head-dim 40,80,96,160 --seq-len 4096 \
                        --rounds 5 --out "$OUT/bench_dims.json" > "$OUT/bench_dims.log" 2>&1
                    s=$(tail -12 "$OUT/bench_dims.log") ;;
        paged_sweep) timeout 100 python3 benchmarks/bench_decode.py --paged-sweep > "$OUT/paged_sweep.log" 2>&1
                     s=$(tail -30 "$OUT/paged_sweep.log") ;;
        tests_serve) timeout ${TESTS_TIMEOUT:-180} python3 -m pytest -q -m gpu -n 15 -p no:cacheprovider -rf \
                         tests/test_host_path_gpu.py tests/test_api_gpu.py tests/test_paged_gpu.py \
                         tests/test_paged_prefill_gpu.py tests/test_serve_decode_gpu.py tests/test_backward_gpu.py \
                         tests/test_backward_wgmma_gpu.py tests/test_autograd_gpu.py tests/test_head_dim_v_gpu.py \
                         > "$OUT/tests_serve.log" 2>&1
                     s=$(grep -E "^(FAILED|ERROR)|passed|failed" "$OUT/tests_serve.log" | tail -25) ;;
        tests_files) timeout ${TESTS_TIMEOUT:-180} python3 -m pytest -q -m gpu -n ${XDIST:-15} -p no:cacheprovider -rf \
                         $TESTS_FILES > "$OUT/tests_files.log" 2>&1
                     s=$(grep -E "^(FAILED|ERROR)|passed|failed" "$OUT/tests_files.log" | tail -25) ;;
        bench_variants) timeout ${VARIANTS_TIMEOUT:-120} python3 benchmarks/bench_variants.py --no-flex --head-dims 128 64 \
                            --seqs 4096 --rounds 3 --reps 5 ${VARIANTS_ARGS:-} > "$OUT/bench_variants.log" 2>&1
                        s=$(tail -14 "$OUT/bench_variants.log") ;;
        *) s="unknown part $part" ;;
    esac
    summary+=$'\n'"===== $part ($(( $(date +%s) - t0 )) s)"$'\n'"$s"
    [ -n "${SUMMARY_FILE:-}" ] && echo "$summary" > "$SUMMARY_FILE"  # what finished, should the call be cut
done
echo "$summary"
