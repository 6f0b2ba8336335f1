#!/usr/bin/env bash
# One device call for issue 15 (rollout throughput) on the Llama-3.1-8B shape: every row of
# docs/benchmarks.md's rollout table, spread over the machine's GPUs by bench/gpu_queue.py (one row per GPU
# at a time, highest priority first, rows that no longer fit the budget skipped).
#   bash bench/gpu_rollout.sh [BUDGET_S] [sweep|levers|compile|profile|fold|attention|decode|host|stop|baselines]  (on the GPU host, with .whl and .device/tokenizer)
# sweep: baselines, our backends at the automatic generation batch, the Unsloth sweep (first device call);
# levers: steady state of Unsloth at 128, Unsloth bf16, compiled static-cache decoding, bnb with the dynamic
# cache (second device call); compile: compiled decoding over 4 rounds of varying prompt lengths; profile: one
# generation round of each decoding path under torch.profiler (where a decode step's time goes, profile-*.txt).
# Results: $OUT/rollout.jsonl (one line per point), $OUT/queue.log, $OUT/logs.tgz (one log per row),
# $OUT/profile-*.txt (profiled points).
set -uo pipefail
started=$SECONDS
source bench/gpu_setup.sh
budget=${1:-540}
model=/tmp/llama-3.1-8b
[ -f $model/config.json ] || python3 bench/make_random_model.py --shape llama-3.1-8b --tokenizer .device/tokenizer --out $model 2>&1 | tail -1
bench="python3 bench/bench_gpu.py --model-dir $model --out $OUT/rollout.jsonl --steps 6"
tab=$'\t'
if [ "${2:-sweep}" = compile ]; then
# Whether compiled static-cache decoding keeps its lead over several rounds whose prompt lengths vary
# (--prompt-padding: 0..30 filler sentences per prompt), against the same rows uncompiled and Unsloth; and
# whether compilation works on bitsandbytes 4-bit weights (same prompts as the earlier rows).
cat > /tmp/jobs.tsv <<JOBS
compile_varying${tab}330${tab}$bench --row transformers_bf16 --label transformers_bf16_compile_varying --points 128:compile --steps 32 --prompt-padding 30
bf16_varying${tab}250${tab}$bench --row transformers_bf16 --label transformers_bf16_varying --points 128 --steps 32 --prompt-padding 30
unsloth_varying${tab}250${tab}$bench --row unsloth --label unsloth_varying --points 128 --steps 32 --prompt-padding 30
transformers_4bit_compile${tab}250${tab}$bench --row transformers_4bit --label transformers_4bit_compile --points 128:compile --steps 16
JOBS
elif [ "${2:-sweep}" = fold ]; then
# The LM head folded into one GEMM (models.fold_rows_into_one_matrix) against Unsloth's own call, side by side.
cat > /tmp/jobs.tsv <<JOBS
unsloth_folded${tab}300${tab}$bench --row unsloth --label unsloth_folded --points 128 --steps 8
unsloth_unfolded${tab}300${tab}$bench --row unsloth --label unsloth_unfolded --points 128:unfolded --steps 8
JOBS
elif [ "${2:-sweep}" = attention ]; then
# Decode attention as rows of each KV head (unsloth_decode.groups_as_rows) against Unsloth's math fallback; the
# operations alone and the GPU check of the fix (the eighth session's first call).
cat > /tmp/jobs.tsv <<JOBS
unsloth_rows${tab}300${tab}$bench --row unsloth --label unsloth_rows --points 128 --steps 24
unsloth_gqamath${tab}300${tab}$bench --row unsloth --label unsloth_gqamath --points 128:gqamath --steps 24
ops${tab}150${tab}python3 bench/decode_ops.py --out $OUT/decode_ops.jsonl --batches 16,128 && PYTHONPATH=.:\$PYTHONPATH python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py -k decode_attention
JOBS
elif [ "${2:-sweep}" = decode ]; then
# Each of unsloth_decode's three fixes switched off alone, and all three (Unsloth as it ships), against the
# default; then a profile of the default and the generation batch sweep of the default.
cat > /tmp/jobs.tsv <<JOBS
unsloth_default${tab}300${tab}$bench --row unsloth --label unsloth_default --points 128 --steps 24
unsloth_shipped${tab}300${tab}$bench --row unsloth --label unsloth_shipped --points 128:unfolded:qkvstrided:gqamath --steps 16
unsloth_gqamath${tab}300${tab}$bench --row unsloth --label unsloth_gqamath --points 128:gqamath --steps 24
unsloth_qkvstrided${tab}300${tab}$bench --row unsloth --label unsloth_qkvstrided --points 128:qkvstrided --steps 24
unsloth_profile${tab}200${tab}$bench --row unsloth --label unsloth_profile --points 128:profile --steps 8
unsloth_256${tab}250${tab}$bench --row unsloth --label unsloth_sweep --points 256 --steps 32
unsloth_64${tab}200${tab}$bench --row unsloth --label unsloth_sweep --points 64 --steps 16
JOBS
elif [ "${2:-sweep}" = host ]; then
# The decode attention straight to the memory-efficient kernel (the step's bias made once) against the eighth
# session's SDPA front-end call; where the host spends a decode step (cProfile); the operation alone and its
# GPU check (the ninth session).
cat > /tmp/jobs.tsv <<JOBS
unsloth_default${tab}330${tab}$bench --row unsloth --label unsloth_default --points 128 --steps 24
unsloth_sdpaattn${tab}330${tab}$bench --row unsloth --label unsloth_sdpaattn --points 128:sdpaattn --steps 24
unsloth_cprofile${tab}250${tab}$bench --row unsloth --label unsloth_cprofile --points 128:cprofile --steps 8
unsloth_256${tab}250${tab}$bench --row unsloth --label unsloth_sweep --points 256 --steps 32
unsloth_64${tab}200${tab}$bench --row unsloth --label unsloth_sweep --points 64 --steps 16
ops${tab}150${tab}python3 bench/decode_ops.py --out $OUT/decode_ops.jsonl --batches 128 && PYTHONPATH=.:\$PYTHONPATH python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py -k decode_attention
JOBS
elif [ "${2:-sweep}" = stop ]; then
# transformers' stop check deferred by a step on CUDA (models.defer_stop_check_on_cuda) against its waiting loop,
# side by side; its GPU check (the same tokens) with the decode attention's.
cat > /tmp/jobs.tsv <<JOBS
unsloth_default${tab}200${tab}$bench --row unsloth --label unsloth_default --points 128 --steps 24
unsloth_syncstop${tab}200${tab}$bench --row unsloth --label unsloth_syncstop --points 128:syncstop --steps 24
unsloth_64${tab}200${tab}$bench --row unsloth --label unsloth_sweep --points 64 --steps 16
tests${tab}150${tab}PYTHONPATH=.:\$PYTHONPATH python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py -k "stop_check or decode_attention"
JOBS
elif [ "${2:-sweep}" = baselines ]; then
# The baselines again on the H200 (the first ones were H100s), so that the default's ratios are on one device,
# beside Unsloth bf16 and compiled transformers bf16 with today's code.
cat > /tmp/jobs.tsv <<JOBS
trl_default${tab}330${tab}$bench --row trl_bf16 --label trl_bf16 --points default
trl_128${tab}300${tab}$bench --row trl_bf16 --label trl_bf16_tuned --points 128 --steps 16
unsloth_bf16${tab}300${tab}$bench --row unsloth_bf16 --points 128 --steps 24
transformers_bf16_compile${tab}300${tab}$bench --row transformers_bf16 --label transformers_bf16_compile --points 128:compile --steps 16
JOBS
elif [ "${2:-sweep}" = profile ]; then
cat > /tmp/jobs.tsv <<JOBS
unsloth_128${tab}330${tab}$bench --row unsloth --label unsloth_profile --points 128:profile --steps 8
unsloth_bf16_128${tab}300${tab}$bench --row unsloth_bf16 --label unsloth_bf16_profile --points 128:profile --steps 8
trl_bf16_128${tab}300${tab}$bench --row trl_bf16 --label trl_bf16_profile --points 128:profile --steps 8
unsloth_16${tab}250${tab}$bench --row unsloth --label unsloth_profile --points 16:profile --steps 1
JOBS
elif [ "${2:-sweep}" = levers ]; then
cat > /tmp/jobs.tsv <<JOBS
unsloth_steady${tab}300${tab}$bench --row unsloth --label unsloth_steady --points 128 --steps 24
unsloth_bf16${tab}230${tab}$bench --row unsloth_bf16 --points 128 --steps 16
transformers_bf16_compile${tab}250${tab}$bench --row transformers_bf16 --label transformers_bf16_compile --points 128:compile --steps 8
transformers_4bit_dynamic${tab}170${tab}$bench --row transformers_4bit --label transformers_4bit_dynamic --points 128 --steps 8 --trl-json '{"cache_implementation": null}'
unsloth_64${tab}200${tab}$bench --row unsloth --label unsloth_64 --points 64 --steps 16
JOBS
else
cat > /tmp/jobs.tsv <<JOBS
trl${tab}330${tab}$bench --row trl_bf16 --label trl_bf16 --points default,128
unsloth_main${tab}330${tab}$bench --row unsloth --points auto,256:w0,auto:w0:nographs
unsloth_small${tab}300${tab}$bench --row unsloth --label unsloth_sweep --points 16,32:w0,64:w0,16:w0:nographs
transformers_4bit${tab}170${tab}$bench --row transformers_4bit --points auto
transformers_bf16${tab}150${tab}$bench --row transformers_bf16 --points auto
unsloth_bf16${tab}170${tab}$bench --row unsloth_bf16 --points auto
transformers_bf16_compile${tab}200${tab}$bench --row transformers_bf16 --label transformers_bf16_compile --points auto:compile
JOBS
fi
# ONLY="row|row": run just those rows of the stage (e.g. the ones an earlier call lost)
[ -n "${ONLY:-}" ] && { grep -E "^(${ONLY})${tab}" /tmp/jobs.tsv > /tmp/only.tsv; mv /tmp/only.tsv /tmp/jobs.tsv; }
rm -rf /tmp/logs && mkdir -p /tmp/logs
rm -rf /tmp/grpo-bench  # a warm host keeps the last call's run folders, which the package rightly refuses to reuse
python3 bench/gpu_queue.py /tmp/jobs.tsv --deadline $((budget - (SECONDS - started) - 15)) --logs /tmp/logs
cp /tmp/logs/queue.log "$OUT/"
tar -czf "$OUT/logs.tgz" -C /tmp logs
