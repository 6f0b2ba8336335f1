#!/usr/bin/env bash
# Device calls for issue 16 (several GPUs): rows of docs/benchmarks.md's several-GPU table, run through the
# real CLI by bench/multi_gpu.py and spread over the machine's GPUs by bench/gpu_queue.py.
#   bash bench/gpu_multi.sh scaling [BUDGET_S]   1, 2 and 4 GPUs, Unsloth and transformers (DDP)
#   bash bench/gpu_multi.sh sharded [BUDGET_S]   FSDP2 (small shape, 70B shape, resume), static KV cache, rounds
#   bash bench/gpu_multi.sh rounds [BUDGET_S]    1, 2, 4 GPUs again over 6 timed rounds (after the KV-cache fix)
#   bash bench/gpu_multi.sh resume [BUDGET_S]    resume on 2 GPUs (Unsloth DDP), ZeRO-3 on 2 GPUs
#   bash bench/gpu_multi.sh compiled [BUDGET_S]  1 and 2 GPUs, transformers, with and without compile_generation
#   bash bench/gpu_multi.sh profiled [BUDGET_S]  1 and 2 GPUs, both backends, every rank's TRL timings recorded
#   bash bench/gpu_multi.sh alone [BUDGET_S]     transformers on 1 GPU and on 2, each row alone on the host, twice
#   bash bench/gpu_multi.sh unsloth [BUDGET_S]   Unsloth on 1 GPU and on 2, each alone, 10 rounds, its own logging on
# (on a 4-GPU host, with .whl, .whl-ds (bench/make_deepspeed_wheels.sh) and .device/tokenizer carried).
# Results: $OUT/multi.jsonl (one line per row), $OUT/queue.log, $OUT/logs.tgz (the CLI logs and run_state /
# metrics of every row).
set -uo pipefail
started=$SECONDS
source bench/gpu_setup.sh
stage=${1:-scaling}
budget=${2:-540}
qwen=/tmp/qwen15
[ -f $qwen/config.json ] || python3 bench/make_random_model.py --shape qwen2.5-1.5b --tokenizer .device/tokenizer --out $qwen 2>&1 | tail -1
# Per GPU in every row: 16 completions (2 prompts x G=8) per optimizer step, 4 steps per generation round
# (64 completions of 128 tokens generated at once), 12 steps = 3 rounds, the first one not timed.
echo '{"steps_per_generation": 4, "save_steps": 1000, "log_completions": false, "eval_samples": 0}' > /tmp/scale.json
flags="--dataset arithmetic --no-wandb --batch-size 16 --num-generations 8 --gradient-accumulation-steps 1 --max-completion-length 128 --lora-rank 16 --config /tmp/scale.json"
row="python3 bench/multi_gpu.py --model $qwen --out $OUT/multi.jsonl"
tab=$'\t'
# More timed rounds (28 steps = 7 rounds, 6 timed) for the ratios, with the KV-cache rule reading
# steps_per_generation (the scaling rows ran with the static cache; t1s in the sharded stage is t1k with it).
# t1o: t1k with one OpenMP thread, as the launchers set it for each of several processes: the DDP rows' generation
# rounds took 15.5 s against 12.2 s alone (fifth session), while their training steps took the same time.
rounds="t1k${tab}150${tab}$row --name t1k --gpus 1 -- --backend transformers --max-steps 28 $flags
t2k@2${tab}160${tab}$row --name t2k --gpus 2 --launch ddp --port 29511 -- --backend transformers --max-steps 28 $flags
t1o${tab}150${tab}OMP_NUM_THREADS=1 $row --name t1o --gpus 1 -- --backend transformers --max-steps 28 $flags
u1k${tab}190${tab}$row --name u1k --gpus 1 -- --backend unsloth --max-steps 28 $flags
t4k@4${tab}150${tab}$row --name t4k --gpus 4 --launch ddp --port 29512 -- --backend transformers --max-steps 28 $flags
u2k@2${tab}200${tab}$row --name u2k --gpus 2 --launch ddp --port 29513 -- --backend unsloth --max-steps 28 $flags"
if [ "$stage" = rounds ]; then
echo "$rounds" > /tmp/jobs.tsv
elif [ "$stage" = compiled ]; then
# The 1-GPU decoding of this shape is bound by the CPU launching kernels (about 94 ms per decode step for 64
# sequences of a 1.5B model), so two processes on one host may slow each other where the GPUs would not.
# Compiled decoding (CUDA graphs) takes the CPU out of the decode step: does 2 GPUs against 1 reach 1.8x with it?
# 24 steps = 6 rounds, 5 timed. Fits a 2-GPU host: c1 and t1k side by side (t1k starts once c1's compilation,
# which uses every core, is under way), then c2 and t2k alone.
echo '{"steps_per_generation": 4, "save_steps": 1000, "log_completions": false, "eval_samples": 0, "compile_generation": true}' > /tmp/compile.json
cat > /tmp/jobs.tsv <<JOBS
c1${tab}160${tab}$row --name c1 --gpus 1 -- --backend transformers --max-steps 24 ${flags/\/tmp\/scale.json//tmp/compile.json}
t1k${tab}150${tab}sleep 45; $row --name t1k --gpus 1 -- --backend transformers --max-steps 24 $flags
c2@2${tab}170${tab}$row --name c2 --gpus 2 --launch ddp --port 29514 -- --backend transformers --max-steps 24 ${flags/\/tmp\/scale.json//tmp/compile.json}
t2k@2${tab}150${tab}$row --name t2k --gpus 2 --launch ddp --port 29511 -- --backend transformers --max-steps 24 $flags
JOBS
elif [ "$stage" = profiled ]; then
# Where do the DDP rows lose their time? Generation rounds took 12.2-13.5 s on 2 GPUs against 10.7-12.1 s on one
# (compiled stage, sixth session), training steps 0.5 s against 0.4 s. Every rank writes TRL's own timings
# (generate, rewards, log-probabilities, loss); the 1-GPU rows run side by side, as the two ranks of a DDP row do.
cat > /tmp/jobs.tsv <<JOBS
t1k${tab}140${tab}$row --profile --name t1k --gpus 1 -- --backend transformers --max-steps 24 $flags
u1k${tab}170${tab}$row --profile --name u1k --gpus 1 -- --backend unsloth --max-steps 24 $flags
t2k@2${tab}150${tab}$row --profile --name t2k --gpus 2 --launch ddp --port 29511 -- --backend transformers --max-steps 24 $flags
u2k@2${tab}180${tab}$row --profile --name u2k --gpus 2 --launch ddp --port 29513 -- --backend unsloth --max-steps 24 $flags
JOBS
elif [ "$stage" = alone ]; then
# The 1-GPU rows above shared the host with another row, the DDP rows did not; the decoding of this shape is
# bound by the CPU launching kernels, so a neighbour slows it (profiled stage: generate 12.1 s per round on one
# GPU beside another row, 11.2-11.4 s on each DDP rank). Here every row holds the whole host (@2), alternating.
one="CUDA_VISIBLE_DEVICES=0 $row --profile --gpus 1 -- --backend transformers --max-steps 24 $flags"
two="$row --profile --gpus 2 --launch ddp --port 29511 -- --backend transformers --max-steps 24 $flags"
cat > /tmp/jobs.tsv <<JOBS
t1a@2${tab}130${tab}${one/--gpus/--name t1a --gpus}
t2a@2${tab}125${tab}${two/--gpus/--name t2a --gpus}
t1b@2${tab}130${tab}${one/--gpus/--name t1b --gpus}
t2b@2${tab}125${tab}${two/--gpus/--name t2b --gpus}
JOBS
elif [ "$stage" = unsloth ]; then
# Unsloth's 2-GPU ratio (1.28x, 1.60x) rests on 2-5 timed rounds with one-off slow rounds under DDP (sixth
# session: 19.1 s against 8-9 s). Ten rounds each, alone on the host; UNSLOTH_ENABLE_LOGGING=1 prints its
# re-verification of sequence packing / prefix grouping, the suspected one-off cost (rl_replacements.py).
uflags="--backend unsloth --max-steps 40 $flags"
cat > /tmp/jobs.tsv <<JOBS
u1l@2${tab}230${tab}UNSLOTH_ENABLE_LOGGING=1 CUDA_VISIBLE_DEVICES=0 $row --profile --name u1l --gpus 1 -- $uflags
u2l@2${tab}260${tab}UNSLOTH_ENABLE_LOGGING=1 $row --profile --name u2l --gpus 2 --launch ddp --port 29515 -- $uflags
JOBS
elif [ "$stage" = scaling ]; then
cat > /tmp/jobs.tsv <<JOBS
u1${tab}130${tab}$row --name u1 --gpus 1 -- --backend unsloth --max-steps 12 $flags
t1${tab}130${tab}$row --name t1 --gpus 1 -- --backend transformers --max-steps 12 $flags
u2@2${tab}130${tab}$row --name u2 --gpus 2 --launch ddp --port 29501 -- --backend unsloth --max-steps 12 $flags
t2@2${tab}130${tab}$row --name t2 --gpus 2 --launch ddp --port 29502 -- --backend transformers --max-steps 12 $flags
u4@4${tab}130${tab}$row --name u4 --gpus 4 --launch ddp --port 29503 -- --backend unsloth --max-steps 12 $flags
t4@4${tab}130${tab}$row --name t4 --gpus 4 --launch ddp --port 29504 -- --backend transformers --max-steps 12 $flags
JOBS
elif [ "$stage" = sharded ]; then
shm=$(df --output=avail -B1G /dev/shm | tail -1)
big=/tmp/llama70b; [ "${shm:-0}" -gt 160 ] && big=/dev/shm/llama70b
# The 70B shape is written while the small FSDP2 row runs (one tensor at a time through GPU 3's random generator).
(CUDA_VISIBLE_DEVICES=3 python3 bench/make_random_model.py --shape llama-3.1-70b --tokenizer .device/tokenizer --out $big > /tmp/make70b.log 2>&1; echo "exit $?" >> /tmp/make70b.log) &
echo '{"load_in_4bit": false, "steps_per_generation": 4, "save_steps": 1000, "log_completions": false, "eval_samples": 0}' > /tmp/bf16.json
echo '{"load_in_4bit": false, "steps_per_generation": 4, "save_steps": 4, "log_completions": false, "eval_samples": 0}' > /tmp/bf16resume.json
echo '{"steps_per_generation": 4, "save_steps": 1000, "log_completions": false, "eval_samples": 0, "cache_implementation": "static"}' > /tmp/static.json
echo '{"load_in_4bit": false, "max_seq_length": 256, "generation_batch_size": 16, "save_steps": 1000, "log_completions": false, "eval_samples": 0}' > /tmp/big.json
big_flags="--dataset arithmetic --no-wandb --batch-size 4 --num-generations 4 --gradient-accumulation-steps 1 --max-completion-length 32 --lora-rank 8 --max-steps 2 --config /tmp/big.json"
# FSDP2 after the fix of the optimizer's parameters (fourth session): the small shape to its checkpoint, the 70B
# shape (2 steps, checkpoint, memory per GPU), resume on 2 GPUs; then static against dynamic KV cache in one call
# (bnb 4-bit, 64 at once); then the rounds rows. Every FSDP2 row has a time limit that prints the stacks.
cat > /tmp/jobs.tsv <<JOBS
f4@4${tab}160${tab}$row --name f4 --gpus 4 --launch fsdp2 --port 29508 --time-limit 200 -- --backend transformers --max-steps 12 ${flags/\/tmp\/scale.json//tmp/bf16.json}
big4@4${tab}300${tab}while ! grep -q "^exit" /tmp/make70b.log; do sleep 5; done; cat /tmp/make70b.log; python3 bench/multi_gpu.py --model $big --out $OUT/multi.jsonl --name fsdp2_70b --gpus 4 --launch fsdp2 --port 29507 --time-limit 240 --completions-per-gpu-step 4 --steps-per-round 1 --completion-length 32 -- --backend transformers $big_flags
f2r@2${tab}200${tab}$row --name f2r --gpus 2 --launch fsdp2 --port 29509 --time-limit 150 --interrupt-at 4 -- --backend transformers --max-steps 8 ${flags/\/tmp\/scale.json//tmp/bf16resume.json} --reward-function recorder.record_reward
t1s${tab}150${tab}$row --name t1s --gpus 1 -- --backend transformers --max-steps 28 ${flags/\/tmp\/scale.json//tmp/static.json}
JOBS
echo "$rounds" >> /tmp/jobs.tsv
else
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl-ds/*.whl || exit 1
python3 -c "import deepspeed; print('deepspeed', deepspeed.__version__)" 2>&1 | tail -1 | tee -a "$OUT/gpu.txt"
echo '{"steps_per_generation": 4, "save_steps": 4, "log_completions": false, "eval_samples": 0}' > /tmp/resume.json
echo '{"load_in_4bit": false, "steps_per_generation": 4, "save_steps": 1000, "log_completions": false, "eval_samples": 0}' > /tmp/bf16.json
cat > /tmp/jobs.tsv <<JOBS
r2@2${tab}200${tab}$row --name r2 --gpus 2 --launch ddp --port 29505 --interrupt-at 8 -- --backend unsloth --max-steps 16 ${flags/\/tmp\/scale.json//tmp/resume.json} --reward-function recorder.record_reward
z2@2${tab}200${tab}$row --name z2 --gpus 2 --launch zero3 --port 29506 -- --backend transformers --max-steps 12 ${flags/\/tmp\/scale.json//tmp/bf16.json}
JOBS
fi
mkdir -p /tmp/logs
python3 bench/gpu_queue.py /tmp/jobs.tsv --deadline $((budget - (SECONDS - started) - 20)) --logs /tmp/logs
cp /tmp/logs/queue.log "$OUT/"
cp /tmp/runs/*.log /tmp/logs/ 2>/dev/null
for run in /tmp/runs/*/; do mkdir -p "/tmp/logs/$(basename $run)"; cp $run/run_state.json $run/metrics.jsonl $run/grpo_training.log $run/rank*.jsonl "/tmp/logs/$(basename $run)/" 2>/dev/null; done
tar -czf "$OUT/logs.tgz" -C /tmp logs
