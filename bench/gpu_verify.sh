#!/usr/bin/env bash
# One device call: the GPU test module, then the CLI itself on a random-init Qwen2.5-1.5B-shaped model with
# each backend: train until SIGTERM stops it after step 2 (a finished run is never resumed), --eval-only on the
# saved adapter, --resume-from-checkpoint latest to step 3.
#   bash bench/gpu_verify.sh          (on the GPU host, with .whl and .device/tokenizer carried)
set -uo pipefail
source bench/gpu_setup.sh
if [ -z "${SKIP_TESTS:-}" ]; then
  python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py 2>&1 | tail -25 | tee "$OUT/gpu_tests.log"
fi

python3 bench/make_random_model.py --shape qwen2.5-1.5b --tokenizer .device/tokenizer --out /tmp/qwen15 2>&1 | tail -1
echo '{"load_in_4bit": false, "save_steps": 2}' > /tmp/bf16.json
echo '{"save_steps": 2}' > /tmp/save2.json
for backend in unsloth transformers transformers-bf16; do
  extra=(--backend "${backend%-bf16}")
  [ "$backend" = transformers-bf16 ] && extra+=(--config /tmp/bf16.json)
  [ "$backend" != transformers-bf16 ] && extra+=(--config /tmp/save2.json)
  out=/tmp/runs/$backend
  common=(--model /tmp/qwen15 --dataset arithmetic --output-dir "$out" --no-wandb
          --reward-function recorder.record_reward --generation-batch-size 8
          --batch-size 8 --num-generations 4 --gradient-accumulation-steps 1 --max-completion-length 64
          --lora-rank 16 --eval-samples 8 "${extra[@]}")
  {
    echo "=== $backend: train, SIGTERM in step 2 ($(date +%T))"
    PYTHONPATH="tests:$PYTHONPATH" GRPO_SIGTERM_AT_STEP=1 timeout 200 python3 train_grpo.py "${common[@]}" --max-steps 3 2>&1 | grep -E "INFO (train_grpo|models|grpo_trainer)|ERROR|Error" | tail -8
    echo "=== $backend: eval-only ($(date +%T))"
    PYTHONPATH="tests:$PYTHONPATH" timeout 150 python3 train_grpo.py "${common[@]}" --eval-only 2>&1 | grep -E "loaded adapter|evaluation of|reward |ERROR|Error" | tail -6
    echo "=== $backend: resume to step 3 ($(date +%T))"
    PYTHONPATH="tests:$PYTHONPATH" timeout 150 python3 train_grpo.py "${common[@]}" --max-steps 3 --resume-from-checkpoint latest 2>&1 | grep -E "steps:|ERROR|Error|Resum" | tail -4
    echo "($(date +%T))"; ls "$out"
  } 2>&1 | tee -a "$OUT/cli_runs.log"
done
