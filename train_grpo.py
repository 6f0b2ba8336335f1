#!/usr/bin/env python
"""GRPO training from the command line: parse flags, build the config, run ``main(config)``."""

from __future__ import annotations

import argparse
import dataclasses
import faulthandler
import json
import logging
import shlex
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config_base import (
    EMBEDDED_MODEL,
    MODEL_ALIASES,
    PRESET_FILES,
    REWARD_NAMES,
    ConfigError,
    import_unsloth_first,
    load_preset,
    read_json_object,
)

if TYPE_CHECKING:
    from config import GRPOConfig
    from run_utils import RunPlan

logger = logging.getLogger("train_grpo")

SEED_DATASETS = ("ultrafeedback", "ultrafeedback_large", "hh_rlhf", "openai_summarize")
# flag dest -> config key; flags left at None are not given and do not override the preset or file.
FLAG_TO_KEY = {
    "model": "model_name",
    "dataset": "dataset_name",
    "dataset_path": "dataset_path",
    "dataset_subset": "dataset_subset",
    "custom_data": "custom_data",  # an alias of dataset_name, resolved with the other flags
    "max_samples": "max_samples",
    "eval_samples": "eval_samples",
    "eval_steps": "eval_steps",
    "epochs": "num_train_epochs",
    "learning_rate": "learning_rate",
    "batch_size": "per_device_train_batch_size",
    "gradient_accumulation_steps": "gradient_accumulation_steps",
    "output_dir": "output_dir",
    "reward_function": "reward_functions",
    "reward_config": "reward_config",
    "wandb_project": "wandb_project",
    "report_to": "report_to",
    "resume_from_checkpoint": "resume_from_checkpoint",
    "num_generations": "num_generations",
    "generation_batch_size": "generation_batch_size",
    "reward_timeout": "reward_timeout",
    "reward_model": "reward_model",
    "max_completion_length": "max_completion_length",
    "lora_rank": "lora_rank",
    "backend": "backend",
    "seed": "seed",
    "max_steps": "max_steps",
    "beta": "beta",
    "skip_bad_rows": "skip_bad_rows",
    "streaming": "streaming",
    "overwrite": "overwrite_output_dir",
    "init_adapter": "init_adapter",
}


RUN_CONFIG_FILE = "run_config.json"
DEFAULT_EVAL_ONLY_SAMPLES = 100


def input_errors() -> tuple[type[Exception], ...]:
    """User errors that follow from the flags, config files, data, model and output directory alone (not from a
    process's GPU): under a launcher every process of a machine meets them alike."""
    from data_loader import DataError
    from models import BackendError, ModelError
    from run_utils import RunDirError

    return (ConfigError, DataError, ModelError, BackendError, RunDirError, FileNotFoundError)


def user_errors() -> tuple[type[Exception], ...]:
    """Errors caused by input that the CLI reports as one ERROR line instead of a traceback."""
    from memory import ResourceError

    return (*input_errors(), ResourceError)


def reward_name(value: str) -> str:
    if value in REWARD_NAMES or "." in value or ":" in value:
        return value
    raise argparse.ArgumentTypeError(f"{value!r}: {', '.join(REWARD_NAMES)} 중 하나 또는 package.module.function")


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse with a one-line error instead of the usage block (``--help`` still shows everything)."""

    def error(self, message: str):
        from run_utils import local_rank

        line = f"ERROR {self.prog}: {message} (전체 옵션: python {self.prog} --help)\n"
        self.exit(2, line if local_rank() == 0 else None)  # under a launcher: once per machine


class GivenOnce(argparse.Action):
    """A flag that may be given once: a second one would silently replace the first (``--config a.json --config
    b.json`` dropped a.json)."""

    def __call__(self, parser, namespace, values, option_string=None):
        earlier = getattr(namespace, self.dest, None)
        if earlier is not None:
            parser.error(f"{option_string} given twice ({earlier}, {values}); give one (merge the files into one)")
        setattr(namespace, self.dest, values)


def build_parser() -> argparse.ArgumentParser:
    models = ",".join(list(MODEL_ALIASES))
    p = OneLineErrorParser(
        prog="train_grpo.py",
        description="TRL GRPO 트레이너로 LoRA 강화 학습을 수행합니다 (CPU, 단일 GPU + Unsloth, 다중 GPU).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="설정 우선순위: 기본값 < 프리셋(--quick-test/--production) < --config 파일 < 명령줄 옵션",
    )
    p.add_argument(
        "--model",
        metavar=f"{{{models}}}",
        help=f"사용할 모델: 위 이름, 허브 ID 또는 로컬 폴더 (기본: llama-3.1-8b; 내장 모델: {EMBEDDED_MODEL})",
    )
    p.add_argument(
        "--dataset",
        metavar=f"{{{','.join(SEED_DATASETS)},arithmetic}}",
        help="사용할 데이터셋: 위 이름, 허브 ID 또는 로컬 경로 (기본: ultrafeedback)",
    )
    p.add_argument("--dataset-path", metavar="PATH", help="--dataset 의 로컬 사본 (파일 또는 save_to_disk 폴더)")
    p.add_argument("--dataset-subset", metavar="NAME", help="데이터셋 하위 집합 (예: hh_rlhf 의 helpful-base)")
    p.add_argument("--custom-data", metavar="PATH", help="커스텀 데이터셋 파일 경로 (.jsonl/.json/.parquet/.csv)")
    p.add_argument("--config", metavar="PATH", action=GivenOnce, help="설정 파일 경로 (JSON)")
    preset = p.add_mutually_exclusive_group()
    preset.add_argument("--quick-test", action="store_true", help="빠른 테스트 실행 (내장 모델, 몇 스텝)")
    preset.add_argument("--production", action="store_true", help="프로덕션 훈련 실행 (config/production.json)")
    p.add_argument("--max-samples", type=int, metavar="N", help="사용할 최대 샘플 수")
    p.add_argument("--eval-samples", type=int, metavar="N", help="평가용으로 떼어 둘 샘플 수")
    p.add_argument("--eval-steps", type=int, metavar="N", help="훈련 중 N 스텝마다 떼어 둔 샘플로 평가 (0: 끔)")
    p.add_argument("--epochs", type=float, metavar="N", help="훈련 에포크 수")
    p.add_argument("--max-steps", type=int, metavar="N", help="최대 최적화 스텝 수 (에포크보다 우선)")
    p.add_argument("--learning-rate", type=float, metavar="LR", help="학습률")
    p.add_argument("--batch-size", type=int, metavar="N", help="장치당 배치 크기 (완성 문장 수 기준)")
    p.add_argument("--gradient-accumulation-steps", type=int, metavar="N", help="그래디언트 누적 스텝 수")
    p.add_argument("--num-generations", type=int, metavar="G", help="프롬프트당 생성 수 (그룹 크기, group_size)")
    p.add_argument(
        "--generation-batch-size",
        type=int,
        metavar="N",
        help="한 번에 생성할 완성 문장 수 (TRL generation_batch_size; 기본: 최적화 배치와 같음)",
    )
    p.add_argument("--max-completion-length", type=int, metavar="N", help="완성 문장 최대 토큰 수")
    p.add_argument("--lora-rank", type=int, metavar="R", help="LoRA 랭크")
    p.add_argument("--beta", type=float, metavar="B", help="KL 페널티 계수 (0: KL 없음)")
    p.add_argument(
        "--backend",
        choices=["auto", "unsloth", "transformers"],
        help="auto: CUDA 에서 Unsloth, 없으면 transformers (+bitsandbytes); CPU 는 transformers",
    )
    p.add_argument("--seed", type=int, metavar="N", help="난수 시드")
    p.add_argument("--output-dir", metavar="PATH", help="출력 디렉토리")
    p.add_argument(
        "--overwrite", action="store_true", default=None, help="비어 있지 않은 출력 디렉토리에 덮어쓰기 허용"
    )
    p.add_argument(
        "--reward-function",
        nargs="+",
        action="extend",  # repeated, the names add up (the second one replaced the first)
        type=reward_name,
        metavar="{accuracy,length,custom}",
        help="보상 함수 타입, 여러 개 가능 (기본: accuracy); package.module.function 도 가능",
    )
    p.add_argument("--reward-timeout", type=float, metavar="SEC", help="보상 함수 호출 제한 시간(초), 넘으면 None")
    p.add_argument("--reward-model", metavar="PATH", help="보상 모델 (시퀀스 분류 모델 폴더 또는 허브 ID)")
    p.add_argument("--reward-config", metavar="PATH", help="보상 함수 설정 파일 경로 (JSON), 커스텀 보상 함수 설정")
    p.add_argument(
        "--reward-preview",
        action="store_true",
        help="모델 없이 데이터셋의 chosen/rejected 를 보상 함수로 채점해 표로 보여 주기",
    )
    p.add_argument("--skip-bad-rows", action="store_true", default=None, help="잘못된 데이터 행을 건너뛰고 개수 기록")
    p.add_argument("--streaming", action="store_true", default=None, help="허브 데이터셋을 스트리밍으로 읽기")
    p.add_argument("--wandb-project", metavar="NAME", help="Weights & Biases 프로젝트 이름")
    p.add_argument("--no-wandb", action="store_true", help="Weights & Biases 비활성화")
    p.add_argument("--report-to", nargs="+", metavar="TRACKER", help="기록 도구 (wandb, tensorboard, none)")
    p.add_argument("--eval-only", action="store_true", help="평가만 실행 (저장된 어댑터가 있으면 불러옴)")
    p.add_argument("--resume-from-checkpoint", metavar="PATH", help="체크포인트에서 재시작 (PATH 또는 latest)")
    p.add_argument(
        "--init-adapter",
        metavar="PATH",
        help="새 실행을 이전 실행(또는 체크포인트)의 어댑터에서 시작 (끝난 실행 이어 훈련)",
    )
    return p


def preset_name(args: argparse.Namespace) -> str | None:
    return "quick_test" if args.quick_test else "production" if args.production else None


def requested_backend(args: argparse.Namespace) -> str:
    """The backend asked for by the flags, else the config file, else the preset: read before any heavy import.

    A file that cannot be read here is reported properly when the config is built; ``auto`` stands in until then.
    """
    if args.backend:
        return args.backend
    preset = preset_name(args)
    for path in (args.config, PRESET_FILES[preset] if preset else None):
        if path:
            try:
                backend = read_json_object(path, "config").get("backend")
            except ConfigError:
                continue
            if isinstance(backend, str):
                return backend
    return "auto"


def flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The flags that were given, as config keys (one table: FLAG_TO_KEY)."""
    overrides: dict[str, Any] = {
        FLAG_TO_KEY[dest]: value for dest, value in vars(args).items() if dest in FLAG_TO_KEY and value is not None
    }
    if args.no_wandb:
        if "wandb" in (overrides.get("report_to") or []):
            raise ConfigError("--no-wandb and --report-to wandb contradict each other; keep one.")
        overrides["use_wandb"] = False
    if overrides.get("report_to") == ["none"]:
        overrides["report_to"] = []
    return overrides


def saved_run_layer(args: argparse.Namespace, overrides: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """For --eval-only, the evaluated run's own settings (rewards, data, split) between the file and the flags."""
    from config import PROJECT_DEFAULTS, config_file_layer, merge_layers

    if not args.eval_only:
        return []
    layers = [("project defaults", PROJECT_DEFAULTS)]
    preset = preset_name(args)
    if preset:
        layers.append((f"preset '{preset}'", load_preset(preset)))
    if args.config:
        layers.append(config_file_layer(args.config))
    run_dir = Path(merge_layers([*layers, ("command line", overrides)])["output_dir"])
    saved = run_dir / RUN_CONFIG_FILE
    if not saved.is_file():
        return []
    values = read_json_object(saved, "run config")
    # Evaluation happens here and now: the run's own place, resume point and trackers do not apply.
    for key in ("resume_from_checkpoint", "report_to", "overwrite_output_dir", "reward_weights"):
        values.pop(key, None)
    return [(f"run config {saved}", values)]


def config_from_args(args: argparse.Namespace) -> GRPOConfig:
    """defaults < preset < --config file < (for --eval-only, the run's own config) < flags."""
    from config import build_config

    overrides = flag_overrides(args)
    return build_config(
        preset=preset_name(args),
        config_file=args.config,
        overrides=overrides,
        extra_layers=saved_run_layer(args, overrides),
    )


def load_source(config) -> Any:
    """The configured dataset in the GRPO schema, before any split (also used by train_reward_model.py)."""
    from config import setting_source
    from data_loader import DataError, load_grpo_dataset

    try:
        return load_grpo_dataset(
            config.dataset_name,
            dataset_path=config.dataset_path,
            subset=config.dataset_subset,
            skip_bad_rows=config.skip_bad_rows,
            streaming=getattr(config, "streaming", False),
            seed=config.seed,
        )
    except DataError as err:
        if not (config.dataset_path and setting_source(config, "dataset_name") == "the defaults"):
            raise
        # --dataset-path alone is read as a copy of the default dataset, in its layout
        raise DataError(
            f"{err} (--dataset-path is read as a copy of --dataset {config.dataset_name}, the default: name its "
            "dataset with --dataset, or give your own file with --custom-data)"
        ) from None


def load_data(config: GRPOConfig, eval_only: bool):
    """Train and held-out splits in the GRPO schema."""
    from config import setting_source
    from data_loader import DataError, prepare_splits

    dataset = load_source(config)
    if config.streaming and eval_only:
        raise ConfigError("--eval-only needs held-out rows, which a streamed dataset has none of; drop --streaming.")
    if eval_only:
        return None, rows_to_evaluate(dataset, config)
    try:
        return prepare_splits(
            dataset, max_samples=config.max_samples, eval_samples=config.eval_samples, seed=config.seed
        )
    except DataError as err:  # the only setting it can object to: say which layer set it
        source = setting_source(config, "eval_samples")
        raise DataError(f"{err} eval_samples={config.eval_samples} came from {source}.") from None


SPLIT_KEYS = ("eval_samples", "max_samples", "seed")  # with the data, they decide which rows a run trained on


def rows_to_evaluate(dataset, config: GRPOConfig):
    """For --eval-only: rows the evaluated run never trained on.

    Other data than the run's: any of its rows (its seeded shuffle's first ones).  The run's own data: its held-out
    split, which only the run's own split settings reproduce (another --eval-samples would pick rows it trained on),
    or, when it held none out, the rows after those it trained on.
    """
    from data_loader import prepare_splits

    run_file = Path(config.output_dir) / RUN_CONFIG_FILE
    run = read_json_object(run_file, "run config") if run_file.is_file() else None
    if run is not None and not _same_source(run, config):
        rows = dataset.shuffle(seed=config.seed).select(range(min(DEFAULT_EVAL_ONLY_SAMPLES, len(dataset))))
        logger.info(
            "the run trained on other data (%s); evaluating on %d rows of this one", run.get("dataset_name"), len(rows)
        )
        return rows
    changed = [key for key in SPLIT_KEYS if run is not None and run.get(key) != getattr(config, key)]
    if changed:
        given = ", ".join(f"{key}={getattr(config, key)}" for key in changed)
        saved = ", ".join(f"{key}={run.get(key)}" for key in changed)
        raise ConfigError(
            f"--eval-only on the run in {config.output_dir}: {given} differs from the run's {saved}, so the held-out "
            "rows would include rows it trained on; leave these settings as the run had them, or evaluate on other "
            "data (--dataset / --custom-data)."
        )
    if config.eval_samples:
        return prepare_splits(
            dataset, max_samples=config.max_samples, eval_samples=config.eval_samples, seed=config.seed
        )[1]
    return unseen_rows(dataset, config, trained=run is not None)


def _same_source(run: dict[str, Any], config: GRPOConfig) -> bool:
    """Whether the run trained on the data given now (the same file by another path counts as the same)."""
    from config import with_absolute_paths

    keys = ("dataset_name", "dataset_path", "dataset_subset")
    saved = with_absolute_paths({key: run.get(key) for key in keys})
    return saved == with_absolute_paths({key: getattr(config, key) for key in keys})


def unseen_rows(dataset, config: GRPOConfig, trained: bool):
    """Rows for --eval-only when the run held none out: those after the rows it trained on, never training rows.

    A run's rows are the seeded shuffle's first ``max_samples`` (prepare_splits), so what follows them was never
    seen.  A base model (``trained`` False: no run in the output directory) has seen none of them.
    """
    shuffled = dataset.shuffle(seed=config.seed)
    start = min(config.max_samples or len(shuffled), len(shuffled)) if trained else 0
    if start >= len(shuffled):
        raise ConfigError(
            f"the run in {config.output_dir} held out no rows (eval_samples=0) and trained on all {len(shuffled)}; "
            "evaluate on another dataset (--dataset / --custom-data) or train with --eval-samples N."
        )
    rows = shuffled.select(range(start, min(start + DEFAULT_EVAL_ONLY_SAMPLES, len(shuffled))))
    if trained:
        logger.info("the run held out no rows; evaluating on %d rows it never trained on", len(rows))
    return rows


def with_run_dir(config: GRPOConfig, plan: RunPlan) -> GRPOConfig:
    """``config`` with the run directory and checkpoint that ``plan`` chose (a copy; the original is untouched)."""
    if (config.output_dir, config.resume_from_checkpoint) == (str(plan.path), plan.checkpoint):
        return config
    return dataclasses.replace(config, output_dir=str(plan.path), resume_from_checkpoint=plan.checkpoint)


def main(
    config: GRPOConfig,
    *,
    eval_only: bool = False,
    reward_preview: bool = False,
    output_dir_given: bool = True,
    plan: RunPlan | None = None,
) -> dict[str, Any]:
    """One run, top to bottom: output dir (decided), data, rewards, model, then the run dir is opened (created,
    or an old run moved aside) and logged to, train, save.  Nothing is written before the inputs are checked."""
    from config import config_values, save_config_to_file
    from data_loader import filter_long_prompts
    from grpo_trainer import GRPOTrainer, build_rewards
    from rewards import PREVIEW_ROWS, accuracy_modes, preview_rewards
    from run_utils import (
        RESUME,
        check_trains_a_step,
        close_run,
        decide_run_dir,
        is_main_process,
        keep_previous,
        open_run_dir,
        run_provenance,
        setup_logging,
        world_size,
    )

    # Output directory: decided before the config is final (the CLI does it in cli()), created once inputs are checked
    if plan is None:
        plan = decide_run_dir(config, explicit=output_dir_given, evaluating=eval_only, previewing=reward_preview)
        config = with_run_dir(config, plan)

    # Data
    train_set, eval_set = load_data(config, eval_only)
    logger.info("data: %s training prompts, %s held out", _size(train_set), _size(eval_set))

    # Rewards
    reward_functions = build_rewards(config)
    if "accuracy" in config.reward_functions:  # logs how many rows are scored as math, text or keywords
        accuracy_modes(
            train_set if eval_set is None or not eval_only else eval_set, PREVIEW_ROWS if config.streaming else None
        )
    if reward_preview:
        return preview_rewards(train_set, reward_functions)
    trainer = GRPOTrainer(config, reward_functions=reward_functions, reward_weights=config.reward_weights)

    # Model
    if eval_only:
        adapter = adapter_to_evaluate(config, plan)
        if adapter is None:  # a mistyped folder evaluated the base model with only the summary saying so
            logger.warning("no adapter in %s: evaluating the base model %s", plan.path, config.model_name)
    else:
        adapter = config.init_adapter  # a new run that starts from an earlier run's adapter
    trainer.load_model(adapter_dir=adapter)
    if not eval_only:
        train_set = filter_long_prompts(train_set, trainer.tokenizer, config.max_prompt_length)
        check_trains_a_step(len(train_set) if hasattr(train_set, "__len__") else None, config, world_size())

    # Run directory and logging
    run_dir = trainer.run_dir = open_run_dir(plan)
    setup_logging(run_dir)
    if is_main_process() and not eval_only:
        if plan.action == RESUME:
            warn_about_changed_settings(run_dir / RUN_CONFIG_FILE, config)
        keep_previous(run_dir / RUN_CONFIG_FILE)
        save_config_to_file(config, run_dir / RUN_CONFIG_FILE, extra=run_provenance(), absolute_paths=True)
    logger.info("run directory: %s (%s)", run_dir, plan.action)
    logger.info("settings: %s", json.dumps(config_values(config), ensure_ascii=False, default=str))
    if eval_only:
        results = trainer.evaluate(eval_set)
        print_eval_summary(results, adapter)
        return results

    # Train
    summary = trainer.train(train_set, eval_dataset=eval_set)

    # Save
    summary["adapter_dir"] = str(trainer.save_model(run_dir))
    summary["log_file"] = str(run_dir / "grpo_training.log")
    summary["config_file"] = str(run_dir / RUN_CONFIG_FILE)
    summary["plot"] = write_plot(run_dir) if is_main_process() else None
    close_run(run_dir, summary["interrupted"], summary["steps"])
    print_train_summary(summary)
    if summary["interrupted"] and is_main_process():
        logger.warning(
            "stopped early at step %d; resume with:\n  %s", summary["steps"], resume_command(run_dir, world_size())
        )
    return summary


# Settings a resume may change without changing what is learned: where it runs, how long, what it reports.
RESUME_MAY_CHANGE = {"resume_from_checkpoint", "output_dir", "max_steps", "num_train_epochs", "report_to"}
RESUME_MAY_CHANGE |= {"overwrite_output_dir", "use_wandb", "wandb_project", "log_completions_steps", "save_steps"}
RESUME_MAY_CHANGE |= {"logging_steps", "save_total_limit", "eval_steps", "reward_timeout", "init_adapter", "_run"}


def warn_about_changed_settings(saved_file: Path, config: GRPOConfig) -> None:
    """A resume that trains on other data, rewards or hyper-parameters continues the same metrics and curves as if
    nothing changed; say what differs from the run's own config (found by a fault hunt: it was silent)."""
    from config import config_values, with_absolute_paths

    try:
        saved = json.loads(saved_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    now = json.loads(json.dumps(with_absolute_paths(config_values(config)), default=str))
    changed = sorted(k for k in saved.keys() & now.keys() if k not in RESUME_MAY_CHANGE and saved[k] != now[k])
    if changed:
        logger.warning(
            "resuming with settings that differ from the run's: %s; metrics.jsonl and the curves continue as one run",
            "; ".join(f"{k} {saved[k]!r} -> {now[k]!r}" for k in changed),
        )


def write_plot(run_dir: Path) -> str | None:
    """The training-curves PNG; a plotting problem is reported, never fatal."""
    from plot_run import plot_run

    try:
        return str(plot_run(run_dir))
    except (OSError, ValueError, ImportError) as err:
        logger.warning("no training plot: %s", err)
        return None


def resume_command(run_dir: Path, processes: int = 1) -> str:
    """The command line of this run, pointed at its directory and its latest checkpoint.

    Under a launcher only the script's part is known here (not ``accelerate launch``'s own options), so the
    hint says to put the same launch in front: resuming with plain ``python`` would train one process."""
    args, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
            continue
        if arg in ("--resume-from-checkpoint", "--output-dir"):
            skip = True
            continue
        if not arg.startswith(("--resume-from-checkpoint=", "--output-dir=")):
            args.append(arg)
    # the script as it was called (a path when run from elsewhere: `python train_grpo.py` would not be found there)
    called = sys.argv[0] if sys.argv and sys.argv[0].endswith("train_grpo.py") else "train_grpo.py"
    script = shlex.join([called, *args, "--output-dir", str(run_dir), "--resume-from-checkpoint", "latest"])
    if processes > 1:
        return f"<the same launcher and options as this run ({processes} processes)> {script}"
    return f"python {script}"


def _size(dataset) -> str:
    return "?" if dataset is not None and not hasattr(dataset, "__len__") else str(len(dataset) if dataset else 0)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def print_train_summary(summary: dict[str, Any]) -> None:
    lines = [
        "=== GRPO training stopped early ===" if summary.get("interrupted") else "=== GRPO training finished ===",
        f"steps: {summary['steps']} in {summary['seconds']} s",
        f"mean reward: start {_fmt(summary['reward_start'])} -> end {_fmt(summary['reward_end'])}",
        f"adapter: {summary['adapter_dir']}",
        f"config:  {summary['config_file']}",
        f"log:     {summary['log_file']}",
        f"plot:    {summary['plot']}",
    ]
    for line in lines:
        logger.info(line)


def adapter_to_evaluate(config: GRPOConfig, plan: RunPlan) -> Path | None:
    """What --eval-only scores: the adapter named by --init-adapter or --resume-from-checkpoint (``plan`` holds the
    checkpoint decide_run_dir resolved; both were ignored and the base model scored: fault hunt), else the run
    folder's final adapter, else None (the base model)."""
    if config.init_adapter:
        return Path(config.init_adapter)
    if plan.checkpoint:
        return Path(plan.checkpoint)
    return plan.path if (plan.path / "adapter_model.safetensors").is_file() else None


def print_eval_summary(results: dict[str, Any], adapter: Path | None) -> None:
    logger.info("=== evaluation of %s on %d prompts ===", adapter or "the base model", results["num_prompts"])
    # Evaluation during training (eval_reward in metrics.jsonl) is TRL's: sampled, num_generations per prompt.
    logger.info("sampling: %s", "greedy, one completion per prompt" if results["greedy"] else "sampled")
    for name, stats in results["rewards"].items():
        logger.info("%-18s mean %.3f  std %.3f  stderr %.3f", name, stats["mean"], stats["std"], stats["stderr"])
    for sample in results["samples"][:3]:
        logger.info(
            "prompt: %s | completion: %s | reference: %s",
            sample["prompt"][:80],
            sample["completion"][:120].replace("\n", " "),
            sample["reference"][:40],
        )


def cli(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import_unsloth_first(requested_backend(args))  # before anything imports transformers, TRL or PEFT
    from run_utils import decide_run_dir, local_rank, report_failure, restore_stdout, setup_logging

    setup_logging(None)  # errors before the run directory exists still reach ./grpo_training.log
    # A run that seems stuck (a collective waiting on another process, a slow save): `kill -USR1 PID` prints
    # where each of its threads is to stderr and the run goes on.
    if hasattr(signal, "SIGUSR1") and sys.__stderr__ is not None:
        faulthandler.register(signal.SIGUSR1, file=sys.__stderr__, all_threads=True)
    try:
        config = config_from_args(args)
        plan = decide_run_dir(
            config, explicit=args.output_dir is not None, evaluating=args.eval_only, previewing=args.reward_preview
        )
        result = main(
            with_run_dir(config, plan), eval_only=args.eval_only, reward_preview=args.reward_preview, plan=plan
        )
    except KeyboardInterrupt:
        logger.error("interrupted")
        return 130
    except input_errors() as err:
        # the same input gives the same error on every process of a machine: its first process says it once
        if local_rank() == 0:
            logger.error("%s", err)
        return 2
    except user_errors() as err:
        logger.error("%s", err)
        return 2
    except Exception as err:  # noqa: BLE001 - the machine's problem (one line) or a bug (traceback to the log)
        return report_failure(err, training=not (args.eval_only or args.reward_preview))
    finally:
        restore_stdout()
    return 130 if result.get("interrupted") else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(cli())
