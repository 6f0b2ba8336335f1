#!/usr/bin/env python
"""Train a reward model with TRL's ``RewardTrainer`` on chosen/rejected pairs, for use as a GRPO reward.

    python train_reward_model.py --model smollm2-135m --custom-data pairs.jsonl --output-dir runs/rm
    python train_grpo.py ... --reward-model runs/rm          # or reward_model.get_reward_model_reward("runs/rm")

The data come from the same sources and loader as ``train_grpo.py`` (prompt messages with ``chosen`` and
``rejected`` answers); with the same dataset, ``seed`` and ``eval_samples`` the rows held out here are the
prompts ``train_grpo.py`` holds out, so a GRPO evaluation never scores prompts the reward model trained on.
The model is the base model as a one-label sequence classifier with a LoRA adapter whose ``score`` head is
trained and saved with it (``modules_to_save``): fp32 on CPU, bf16 or 4-bit (bitsandbytes, ``load_in_4bit``)
on CUDA.  Unsloth trains the GRPO policy only; reward models use transformers + PEFT on every machine.
The run folder holds the adapter, the tokenizer, ``reward_model.json`` (base model and held-out pairwise
accuracy), ``run_config.json``, ``metrics.jsonl``, the log and the plot, like a GRPO run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl import RewardConfig

from config import DEFAULT_LORA_TARGETS, EMBEDDED_MODEL, VALID_KEYS, ConfigError, check_values, read_json_object
from config_base import REWARD_MODEL_TASK

logger = logging.getLogger("train_reward_model")

RUN_CONFIG_FILE = "run_config.json"


@dataclass
class RewardModelConfig(RewardConfig):
    """``trl.RewardConfig`` plus the model, LoRA and data settings of this project (names as in GRPOConfig)."""

    ADAPTER_TASK = REWARD_MODEL_TASK  # the PEFT task of its adapters (a class constant, not a setting)

    model_name: str = field(default="llama-3.1-8b", metadata={"help": "Short name, hub id or local folder."})
    load_in_4bit: bool = field(default=True, metadata={"help": "4-bit (bitsandbytes) base weights on CUDA."})
    lora_rank: int = field(default=16, metadata={"help": "LoRA rank r."})
    lora_alpha: int | None = field(default=None, metadata={"help": "LoRA alpha; default 2 * lora_rank."})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout."})
    lora_target_modules: list[str] = field(
        default_factory=lambda: list(DEFAULT_LORA_TARGETS), metadata={"help": "Module names that get LoRA."}
    )
    dataset_name: str = field(default="ultrafeedback", metadata={"help": "Source name, hub id or local path."})
    dataset_path: str | None = field(default=None, metadata={"help": "Local copy of the named dataset."})
    dataset_subset: str | None = field(default=None, metadata={"help": "Subset (data_dir) of a hub dataset."})
    max_samples: int | None = field(default=None, metadata={"help": "Use at most this many training rows."})
    eval_samples: int = field(default=100, metadata={"help": "Rows held out to measure pairwise accuracy."})
    skip_bad_rows: bool = field(default=False, metadata={"help": "Skip malformed data rows instead of failing."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Allow a non-empty output directory."})
    # TRL fields with this project's defaults
    output_dir: str = field(default="./grpo_outputs/reward_model", metadata={"help": "Run folder."})
    logging_steps: float = field(default=5, metadata={"help": "Log metrics every N steps."})
    save_steps: float = field(default=50, metadata={"help": "Save a checkpoint every N steps."})

    def __post_init__(self) -> None:
        import torch

        if self.lora_rank < 1 or self.eval_samples < 0 or (self.max_samples is not None and self.max_samples < 1):
            raise ConfigError(
                f"lora_rank={self.lora_rank}, eval_samples={self.eval_samples}, max_samples={self.max_samples}: "
                "lora_rank and max_samples must be positive, eval_samples 0 or more."
            )
        cuda = torch.cuda.is_available()
        self.use_cpu = self.use_cpu or not cuda
        if self.bf16 is None:  # TRL would turn bf16 on even on a CPU
            self.bf16 = cuda and torch.cuda.is_bf16_supported()
        super().__post_init__()


OWN_KEYS = tuple(
    f.name for f in dataclasses.fields(RewardModelConfig) if f.name not in RewardConfig.__dataclass_fields__
)


def build_reward_model_config(
    config_file: str | None = None, overrides: dict[str, Any] | None = None
) -> RewardModelConfig:
    """Defaults < JSON ``config_file`` < ``overrides`` (the flags given); unknown keys name the valid ones."""
    values = read_json_object(config_file, "config") if config_file else {}
    values.update(overrides or {})
    source = f"config file {config_file}" if config_file else "command line"
    valid = {f.name for f in dataclasses.fields(RewardModelConfig) if f.init}
    unknown = sorted(set(values) - valid)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(unknown)}. Valid keys are this project's ({', '.join(OWN_KEYS)}) "
            "or any trl.RewardConfig field (learning_rate, max_steps, max_length, per_device_train_batch_size, ...)."
        )
    check_values({key: values[key] for key in sorted(set(values) & VALID_KEYS)}, source)  # those GRPO shares, as GRPO
    try:
        return RewardModelConfig(**values)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{source}: {str(err).splitlines()[0]}") from None


# --------------------------------------------------------------------------------------------------
# Data


def is_pair(row: dict[str, Any]) -> bool:
    """A usable preference pair: a chosen and a rejected answer, and they differ."""
    return bool(row["chosen"].strip()) and bool(row["rejected"].strip()) and row["chosen"] != row["rejected"]


def as_trl_pairs(pairs):
    """Rows in TRL's explicit-prompt conversational preference format (answers as assistant turns)."""

    def to_messages(row):
        return {key: [{"role": "assistant", "content": row[key]}] for key in ("chosen", "rejected")}

    return pairs.select_columns(["prompt", "chosen", "rejected"]).map(to_messages)


def load_pairs(config: RewardModelConfig):
    """Training and held-out pairs: ``train_grpo.py``'s loader and split, then rows without a pair dropped."""
    from data_loader import DataError, prepare_splits
    from train_grpo import load_source

    dataset = load_source(config)
    train, heldout = prepare_splits(
        dataset, max_samples=config.max_samples, eval_samples=config.eval_samples, seed=config.seed
    )
    train = train.filter(is_pair)
    heldout = heldout.filter(is_pair) if heldout is not None else None
    if len(train) == 0:
        raise DataError(
            f"dataset {config.dataset_name}: no training row has both a chosen and a different rejected answer; "
            "a reward model learns from preference pairs: use ultrafeedback, hh_rlhf, openai_summarize or a file "
            "with prompt, chosen and rejected."
        )
    return train, heldout


# --------------------------------------------------------------------------------------------------
# Model


def load_classifier(config: RewardModelConfig):
    """The base model as a one-label sequence classifier (seeded head), its tokenizer, and the LoRA config."""
    import torch
    from peft import LoraConfig, prepare_model_for_kbit_training
    from transformers import set_seed

    from config_base import deepspeed_enabled
    from models import (
        _bf16_supported,
        _bnb_config,
        _lora_kwargs,
        cuda_available,
        load_tokenizer,
        resolve_model_path,
    )
    from reward_model import from_pretrained_classifier
    from run_utils import local_rank

    resolved = resolve_model_path(config.model_name)
    tokenizer = load_tokenizer(resolved)
    kwargs: dict[str, Any] = {"dtype": torch.float32}
    if cuda_available():
        kwargs["dtype"] = torch.bfloat16 if _bf16_supported() else torch.float16
        if not deepspeed_enabled():
            kwargs["device_map"] = {"": local_rank()}
        if config.load_in_4bit:
            kwargs["quantization_config"] = _bnb_config(kwargs["dtype"])
    set_seed(config.seed)  # the score head is initialised randomly
    logger.info("loading %s (%s) as a reward model", config.model_name, resolved)
    model = from_pretrained_classifier(resolved, config.model_name, num_labels=1, **kwargs)
    model.config.pad_token_id = tokenizer.pad_token_id
    if "quantization_config" in kwargs:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
    peft_config = LoraConfig(
        task_type=RewardModelConfig.ADAPTER_TASK, bias="none", modules_to_save=["score"], **_lora_kwargs(config)
    )
    return model, tokenizer, peft_config


# --------------------------------------------------------------------------------------------------
# The run


def heldout_scores(model, tokenizer, heldout, config: RewardModelConfig) -> dict[str, list[float]] | None:
    """Chosen and rejected scores of the held-out pairs, scored as ``get_reward_model_reward`` scores."""
    from reward_model import RewardModel, score_pairs

    if heldout is None or len(heldout) == 0:
        return None
    reward_model = RewardModel(model, tokenizer, config.max_length)
    chosen, rejected = score_pairs(reward_model, heldout, config.per_device_eval_batch_size)
    return {"chosen": chosen, "rejected": rejected}


def accuracy_of(scores: dict[str, list[float]] | None) -> dict[str, float] | None:
    from reward_model import pairwise_accuracy

    return pairwise_accuracy(scores["chosen"], scores["rejected"]) if scores else None


def build_trainer(config: RewardModelConfig, train, heldout, callbacks: list):
    """TRL's ``RewardTrainer`` on the LoRA classifier; held-out pairs feed its eval when eval_strategy is set."""
    from trl import RewardTrainer

    model, tokenizer, peft_config = load_classifier(config)
    return RewardTrainer(
        model=model,
        args=config,
        train_dataset=as_trl_pairs(train),
        eval_dataset=as_trl_pairs(heldout) if heldout is not None and len(heldout) else None,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )


def run_training(trainer, checkpoint: str | None) -> dict[str, Any]:
    """Train (from ``checkpoint`` when resuming), stopping cleanly on the first Ctrl-C/SIGTERM."""
    from callbacks import GracefulStop
    from checkpoints import check_adapter_matches, install_atomic_checkpoints

    if checkpoint:
        check_adapter_matches(checkpoint, trainer.model)
    install_atomic_checkpoints(trainer)
    stop = GracefulStop()
    trainer.add_callback(stop)
    started = time.monotonic()
    stop.install()
    try:
        trainer.train(resume_from_checkpoint=checkpoint)
    finally:
        stop.uninstall()
    return {
        "steps": trainer.state.global_step,
        "seconds": round(time.monotonic() - started, 1),
        "interrupted": stop.requested,
        "resumed_from": checkpoint,
    }


def write_info(run_dir: Path, info: dict[str, Any]) -> Path:
    """``reward_model.json``: what ``get_reward_model_reward`` needs to rebuild the model, and the results."""
    from reward_model import INFO_FILE
    from run_utils import keep_previous

    path = run_dir / INFO_FILE
    keep_previous(path)
    path.write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def save_run_config(run_dir: Path, config: RewardModelConfig) -> None:
    """``run_config.json``: every setting and the run's provenance (an earlier one is kept aside)."""
    from run_utils import keep_previous, run_provenance

    keep_previous(run_dir / RUN_CONFIG_FILE)
    settings = {**config.to_dict(), "_run": run_provenance()}
    (run_dir / RUN_CONFIG_FILE).write_text(json.dumps(settings, indent=2, ensure_ascii=False, default=str) + "\n")


def main(config: RewardModelConfig, *, output_dir_given: bool = True) -> dict[str, Any]:
    """One run: output dir (decided), pairs, classifier, then the run dir is opened and logged to, untrained
    accuracy, train, held-out accuracy, save.  Nothing is written before the inputs are checked."""
    from callbacks import MetricsLogger
    from run_utils import close_run, decide_run_dir, is_main_process, open_run_dir, setup_logging
    from train_grpo import write_plot

    plan = decide_run_dir(config, explicit=output_dir_given)
    config.output_dir, config.resume_from_checkpoint = str(plan.path), plan.checkpoint
    train, heldout = load_pairs(config)
    trainer = build_trainer(config, train, heldout, [MetricsLogger(plan.path)])
    if len(trainer.train_dataset) == 0:  # TRL drops the pairs longer than max_length; nothing would be trained
        from data_loader import DataError

        raise DataError(
            f"none of the {len(train)} training pairs fits max_length {config.max_length} (prompt plus answer, "
            "in tokens); raise --max-length or use shorter pairs."
        )

    run_dir = open_run_dir(plan)
    setup_logging(run_dir)
    if is_main_process():
        save_run_config(run_dir, config)
    logger.info("run directory: %s (%s)", run_dir, plan.action)
    heldout_pairs = len(heldout) if heldout is not None else 0
    logger.info(
        "pairs: %d for training (%d within max_length %s), %d held out",
        len(train),
        len(trainer.train_dataset),
        config.max_length,
        heldout_pairs,
    )
    before = heldout_scores(trainer.model, trainer.processing_class, heldout, config)
    summary = run_training(trainer, plan.checkpoint)
    after = heldout_scores(trainer.model, trainer.processing_class, heldout, config)

    trainer.save_model(str(run_dir))
    summary |= {
        "train_pairs": len(trainer.train_dataset),
        "untrained_accuracy": accuracy_of(before),
        "heldout_accuracy": accuracy_of(after),
        "reward_model_dir": str(run_dir),
    }
    info = {"base_model": config.model_name, "max_length": config.max_length, **summary, "heldout_scores": after}
    summary["plot"] = None
    if is_main_process():  # under accelerate launch every process scored the pairs; one writes
        write_info(run_dir, info)
        summary["plot"] = write_plot(run_dir)
    close_run(run_dir, summary["interrupted"], summary["steps"])
    log_summary(summary)
    return summary


def _accuracy_text(stats: dict[str, float] | None) -> str:
    if stats is None:
        return "n/a (no held-out pairs)"
    return f"{100 * stats['accuracy']:.1f}% (SE {100 * stats['stderr']:.1f}, {stats['n']} pairs)"


def log_summary(summary: dict[str, Any]) -> None:
    lines = [
        "=== reward model training finished ===",
        f"steps: {summary['steps']} in {summary['seconds']} s",
        f"held-out pairwise accuracy: {_accuracy_text(summary['heldout_accuracy'])}",
        f"  before training (random head): {_accuracy_text(summary['untrained_accuracy'])}",
        f"reward model: {summary['reward_model_dir']}  (use: --reward-model {summary['reward_model_dir']})",
        f"plot: {summary['plot']}",
    ]
    for line in lines:
        logger.info(line)
    if summary["interrupted"]:
        logger.warning("stopped early at step %d; add --resume-from-checkpoint latest to continue", summary["steps"])


# --------------------------------------------------------------------------------------------------
# Command line

FLAG_TO_KEY = {
    "model": "model_name",
    "dataset": "dataset_name",
    "dataset_path": "dataset_path",
    "dataset_subset": "dataset_subset",
    "custom_data": "dataset_name",
    "max_samples": "max_samples",
    "eval_samples": "eval_samples",
    "epochs": "num_train_epochs",
    "max_steps": "max_steps",
    "learning_rate": "learning_rate",
    "batch_size": "per_device_train_batch_size",
    "gradient_accumulation_steps": "gradient_accumulation_steps",
    "max_length": "max_length",
    "lora_rank": "lora_rank",
    "seed": "seed",
    "output_dir": "output_dir",
    "overwrite": "overwrite_output_dir",
    "resume_from_checkpoint": "resume_from_checkpoint",
    "skip_bad_rows": "skip_bad_rows",
    "report_to": "report_to",
}


def build_parser() -> argparse.ArgumentParser:
    from train_grpo import GivenOnce, OneLineErrorParser

    p = OneLineErrorParser(
        prog="train_reward_model.py",
        description="TRL RewardTrainer 로 chosen/rejected 쌍에서 보상 모델(LoRA + score 헤드)을 훈련합니다. "
        "결과 폴더는 train_grpo.py --reward-model 로 GRPO 보상에 씁니다.",
        epilog="설정 우선순위: 기본값 < --config 파일 < 명령줄 옵션. "
        "설정 파일에는 trl.RewardConfig 의 모든 필드도 쓸 수 있습니다.",
    )
    p.add_argument("--config", metavar="PATH", action=GivenOnce, help="설정 파일 경로 (JSON)")
    p.add_argument("--model", help=f"기반 모델: 짧은 이름, 허브 ID 또는 로컬 폴더 (내장 모델: {EMBEDDED_MODEL})")
    p.add_argument("--dataset", help="데이터셋: ultrafeedback, hh_rlhf, openai_summarize, 허브 ID 또는 로컬 경로")
    p.add_argument("--dataset-path", metavar="PATH", help="--dataset 의 로컬 사본 (파일 또는 save_to_disk 폴더)")
    p.add_argument("--dataset-subset", metavar="NAME", help="데이터셋 하위 집합 (예: hh_rlhf 의 helpful-base)")
    p.add_argument(
        "--custom-data", metavar="PATH", help="커스텀 데이터 파일 (prompt, chosen, rejected 가 있는 .jsonl 등)"
    )
    p.add_argument("--max-samples", type=int, metavar="N", help="훈련에 쓸 최대 쌍 수")
    p.add_argument("--eval-samples", type=int, metavar="N", help="쌍별 정확도를 잴 떼어 둘 쌍 수 (기본 100)")
    p.add_argument("--epochs", type=float, metavar="N", help="훈련 에포크 수")
    p.add_argument("--max-steps", type=int, metavar="N", help="최대 최적화 스텝 수 (에포크보다 우선)")
    p.add_argument("--learning-rate", type=float, metavar="LR", help="학습률 (기본 1e-4)")
    p.add_argument("--batch-size", type=int, metavar="N", help="장치당 배치 크기 (쌍 수)")
    p.add_argument("--gradient-accumulation-steps", type=int, metavar="N", help="그래디언트 누적 스텝 수")
    p.add_argument("--max-length", type=int, metavar="N", help="프롬프트+답변 최대 토큰 수 (넘는 쌍은 훈련에서 제외)")
    p.add_argument("--lora-rank", type=int, metavar="R", help="LoRA 랭크")
    p.add_argument("--seed", type=int, metavar="N", help="난수 시드 (데이터 분할, score 헤드 초기화)")
    p.add_argument("--output-dir", metavar="PATH", help="출력 디렉토리")
    p.add_argument(
        "--overwrite", action="store_true", default=None, help="비어 있지 않은 출력 디렉토리에 덮어쓰기 허용"
    )
    p.add_argument("--resume-from-checkpoint", metavar="PATH", help="체크포인트에서 재시작 (PATH 또는 latest)")
    p.add_argument("--skip-bad-rows", action="store_true", default=None, help="잘못된 데이터 행을 건너뛰기")
    p.add_argument("--report-to", nargs="+", metavar="TRACKER", help="기록 도구 (wandb, tensorboard, none)")
    return p


def cli(argv: list[str] | None = None) -> int:
    """Parse flags, run ``main``; bad input is one ERROR line and exit status 2."""
    from run_utils import report_failure, restore_stdout, setup_logging
    from train_grpo import user_errors

    args = build_parser().parse_args(argv)
    setup_logging(None)
    overrides = {key: value for dest, key in FLAG_TO_KEY.items() if (value := getattr(args, dest)) is not None}
    try:
        config = build_reward_model_config(args.config, overrides)
        summary = main(config, output_dir_given=args.output_dir is not None)
    except KeyboardInterrupt:
        logger.error("interrupted")
        return 130
    except user_errors() as err:
        logger.error("%s", err)
        return 2
    except Exception as err:  # noqa: BLE001 - the machine's problem (one line) or a bug (traceback to the log)
        return report_failure(err)
    finally:
        restore_stdout()
    return 130 if summary["interrupted"] else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(cli())
