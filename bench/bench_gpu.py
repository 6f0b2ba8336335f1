"""GRPO step benchmark on one GPU: our Unsloth backend, our transformers + bitsandbytes backend, and plain TRL.

    python bench/bench_gpu.py --model-dir /tmp/llama8b --row unsloth --out results.jsonl

Rows (one per process, because Unsloth patches transformers and TRL when imported):

* ``unsloth``: this project's GRPOTrainer, Unsloth backend, 4-bit LoRA;
* ``transformers_4bit``: this project's GRPOTrainer, transformers + bitsandbytes 4-bit + PEFT LoRA;
* ``trl_bf16``: plain ``trl.GRPOTrainer`` on the bf16 model with a PEFT ``LoraConfig``, as TRL's docs show.

Every row uses the same prompts (built-in arithmetic) and settings: G completions per prompt of
``--completion-length`` tokens, the same batch and LoRA rank, a cheap length reward.  Reported: seconds per
optimizer step, completion tokens per second, the share of the step spent in ``generate``, milliseconds per
decoded token, and peak GPU memory (allocated, from the start of model loading).  The first ``--warmup``
steps are not timed.  Extra trl.GRPOConfig fields (e.g. ``cache_implementation``) come in with ``--trl-json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class GenerateTimer:
    """Wraps ``model.generate`` on an instance and sums its wall time (CUDA-synchronised)."""

    def __init__(self, model):
        import torch

        self.seconds = 0.0
        inner = model.generate

        def timed(*args, **kwargs):
            torch.cuda.synchronize()
            started = time.perf_counter()
            out = inner(*args, **kwargs)
            torch.cuda.synchronize()
            self.seconds += time.perf_counter() - started
            return out

        model.generate = timed


def step_timer_callback(records: list[dict], gen_timer_ref: dict):
    import torch
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            torch.cuda.synchronize()
            self.started = time.perf_counter()
            self.gen_before = gen_timer_ref["timer"].seconds if gen_timer_ref.get("timer") else 0.0

        def on_step_end(self, args, state, control, **kwargs):
            torch.cuda.synchronize()
            gen = gen_timer_ref["timer"].seconds - self.gen_before if gen_timer_ref.get("timer") else float("nan")
            records.append({"step": state.global_step, "seconds": time.perf_counter() - self.started, "gen": gen})

    return StepTimer()


def length_reward(completions, **kwargs):
    return [min(len(c[0]["content"] if isinstance(c, list) else c), 200) / 200 for c in completions]


def dataset(rows: int):
    from datasets import Dataset

    from data_loader import make_arithmetic_rows

    return Dataset.from_list(make_arithmetic_rows(rows, seed=0))


def run_ours(args, backend: str, records, timer_ref):
    from config import GRPOConfig
    from grpo_trainer import GRPOTrainer

    config = GRPOConfig(
        model_name=str(args.model_dir),
        backend=backend,
        load_in_4bit=True,
        max_seq_length=args.completion_length + 256,
        per_device_train_batch_size=args.batch,
        gradient_accumulation_steps=1,
        group_size=args.generations,
        max_completion_length=args.completion_length,
        lora_rank=args.lora_rank,
        learning_rate=1e-5,
        max_steps=args.warmup + args.steps,
        save_steps=10_000,
        output_dir=str(args.work_dir / backend),
        use_wandb=False,
        report_to=[],
        trl_args={"log_completions": False, **args.trl_extra},
    )
    trainer = GRPOTrainer(config, reward_functions=[length_reward], reward_weights=[1.0])
    trainer.load_model()
    timer_ref["timer"] = GenerateTimer(trainer.model)
    trainer.train(dataset(256), callbacks=[step_timer_callback(records, timer_ref)])
    return trainer.trl_trainer


def run_plain_trl(args, records, timer_ref):
    import torch
    from peft import LoraConfig
    from trl import GRPOConfig, GRPOTrainer

    training_args = GRPOConfig(
        output_dir=str(args.work_dir / "trl"),
        per_device_train_batch_size=args.batch,
        gradient_accumulation_steps=1,
        num_generations=args.generations,
        max_completion_length=args.completion_length,
        learning_rate=1e-5,
        max_steps=args.warmup + args.steps,
        bf16=True,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        model_init_kwargs={"dtype": torch.bfloat16},
        **args.trl_extra,
    )
    trainer = GRPOTrainer(
        model=str(args.model_dir),
        reward_funcs=length_reward,
        args=training_args,
        train_dataset=dataset(256),
        peft_config=LoraConfig(
            r=args.lora_rank, lora_alpha=2 * args.lora_rank, target_modules=LORA_TARGETS, task_type="CAUSAL_LM"
        ),
        callbacks=[step_timer_callback(records, timer_ref)],
    )
    timer_ref["timer"] = GenerateTimer(trainer.model)
    trainer.train()
    return trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--row", choices=["unsloth", "transformers_4bit", "trl_bf16"], required=True)
    parser.add_argument("--label", help="name of the row in the results (default: --row)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch", type=int, default=16, help="completions per step (prompts x G)")
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--completion-length", type=int, default=256)
    parser.add_argument("--lora-rank", type=int, default=16)
    parser.add_argument("--trl-json", default="{}", help="extra trl.GRPOConfig fields as JSON")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/grpo-bench"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.trl_extra = json.loads(args.trl_json)
    os.environ.setdefault("WANDB_MODE", "disabled")

    if args.row == "unsloth":
        import unsloth  # noqa: F401  (before TRL and transformers, as in the CLI)
    import torch

    torch.cuda.reset_peak_memory_stats()
    records: list[dict] = []
    timer_ref: dict = {}
    started = time.perf_counter()
    if args.row == "trl_bf16":
        trainer = run_plain_trl(args, records, timer_ref)
    else:
        trainer = run_ours(args, "unsloth" if args.row == "unsloth" else "transformers", records, timer_ref)
    timed = [r for r in records if r["step"] > args.warmup]
    lengths = [e["completions/mean_length"] for e in trainer.state.log_history if "completions/mean_length" in e]
    step_s = sum(r["seconds"] for r in timed) / len(timed)
    gen_s = sum(r["gen"] for r in timed) / len(timed)
    mean_length = sum(lengths[args.warmup :]) / max(1, len(lengths[args.warmup :]))
    result = {
        "row": args.label or args.row,
        "model": args.model_dir.name,
        "gpu": torch.cuda.get_device_name(),
        "settings": {
            "G": args.generations,
            "batch": args.batch,
            "completion_length": args.completion_length,
            "lora_rank": args.lora_rank,
            "timed_steps": len(timed),
            **args.trl_extra,
        },
        "step_s": round(step_s, 2),
        "completion_tokens_per_s": round(args.batch * mean_length / step_s, 1),
        "mean_completion_length": round(mean_length, 1),
        "generation_share": round(gen_s / step_s, 3),
        "ms_per_decode_step": round(1000 * gen_s / max(mean_length, 1), 2),
        "peak_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2),
        "total_s": round(time.perf_counter() - started, 1),
        "steps": records,
    }
    with args.out.open("a") as handle:
        handle.write(json.dumps(result) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "steps"}))


if __name__ == "__main__":
    main()
