#!/usr/bin/env bash
# One device call: the GRPO step benchmark on a random-init model of SHAPE (default llama-3.1-8b), rows
# (a) Unsloth 4-bit, (b) transformers + bitsandbytes 4-bit, (c) plain TRL bf16 + PEFT, each in its own process.
#   bash bench/gpu_bench.sh [SHAPE] [ROWS...]
set -uo pipefail
source bench/gpu_setup.sh
shape=${1:-llama-3.1-8b}; shift || true
rows=("${@:-unsloth transformers_4bit trl_bf16}")
python3 bench/make_random_model.py --shape "$shape" --tokenizer .device/tokenizer --out "/tmp/$shape" 2>&1 | tail -1
for row in ${rows[@]}; do
  timeout "${ROW_TIMEOUT:-300}" python3 bench/bench_gpu.py --model-dir "/tmp/$shape" --row "$row" \
    --steps "${STEPS:-3}" --out "$OUT/bench_$shape.jsonl" > "$OUT/bench_${shape}_$row.log" 2>&1
  tail -1 "$OUT/bench_${shape}_$row.log"
done
