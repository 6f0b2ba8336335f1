"""Run configuration: our own fields, the presets, JSON files, and the one mapping to ``trl.GRPOConfig``.

Precedence when a run is assembled: dataclass defaults < preset (``--quick-test`` / ``--production``) <
``--config`` JSON file < command-line flags.  A JSON file may also carry any field of ``trl.GRPOConfig``
(``warmup_ratio``, ``save_total_limit``, ...); those are passed through untouched in ``trl_args`` instead of
being re-declared here.  Any other key is an error that lists the valid ones.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parent / "config"
PRESET_FILES = {
    "quick_test": CONFIG_DIR / "quick_test.json",
    "production": CONFIG_DIR / "production.json",
}

EMBEDDED_MODEL = "smollm2-135m"
# The seed's short names.  Instruct variants, because every data source is turned into chat prompts.
MODEL_ALIASES = {
    "llama-3.1-8b": "unsloth/Meta-Llama-3.1-8B-Instruct-bnb-4bit",
    "llama-3.1-70b": "unsloth/Meta-Llama-3.1-70B-Instruct-bnb-4bit",
    "gemma-2-9b": "unsloth/gemma-2-9b-it-bnb-4bit",
    "qwen2.5-7b": "unsloth/Qwen2.5-7B-Instruct-bnb-4bit",
    EMBEDDED_MODEL: "HuggingFaceTB/SmolLM2-135M-Instruct",
}
BACKENDS = ("auto", "unsloth", "transformers")
REWARD_NAMES = ("accuracy", "length", "custom")
# ``reward_function_type`` from the seed's config: a shorthand that selects ``reward_functions``.
REWARD_FUNCTION_TYPES = {
    "systematic": list(REWARD_NAMES),
    "accuracy": ["accuracy"],
    "length": ["length"],
    "custom": ["custom"],
}
# ``reward_config_name`` from the seed's config: the default weight of each reward in the weighted sum.
# A ``weight`` (or, for length, ``length_weight``) in the reward config file overrides these.
REWARD_WEIGHT_PRESETS = {
    "balanced": {"accuracy": 1.0, "length": 1.0, "custom": 1.0},
    "accuracy_first": {"accuracy": 1.0, "length": 0.1, "custom": 0.25},
}
DEFAULT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class ConfigError(ValueError):
    """A configuration value or key that cannot be used; the message names the key and the fix."""


@dataclass
class GRPOConfig:
    """Everything a run needs.  Field names follow the seed README's example config."""

    # Model
    model_name: str = field(
        default="llama-3.1-8b",
        metadata={"help": f"Short name ({', '.join(MODEL_ALIASES)}), hub id or local folder."},
    )
    backend: str = field(
        default="auto",
        metadata={"help": "auto: Unsloth on CUDA when installed, else transformers (+bitsandbytes on CUDA)."},
    )
    load_in_4bit: bool = field(
        default=True, metadata={"help": "4-bit weights on CUDA (Unsloth or bitsandbytes). Ignored on CPU."}
    )
    max_seq_length: int = field(
        default=2048,
        metadata={"help": "Prompt + completion tokens. Prompts longer than this minus the completion are dropped."},
    )
    lora_rank: int = field(default=16, metadata={"help": "LoRA rank r."})
    lora_alpha: int | None = field(default=None, metadata={"help": "LoRA alpha; default 2 * lora_rank."})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout."})
    lora_target_modules: list[str] = field(
        default_factory=lambda: list(DEFAULT_LORA_TARGETS), metadata={"help": "Module names that get LoRA."}
    )
    # Data
    dataset_name: str = field(
        default="ultrafeedback",
        metadata={"help": "Dataset source name, hub id or local path (see data_loader.DATASET_SOURCES)."},
    )
    dataset_path: str | None = field(
        default=None, metadata={"help": "Local copy of the named dataset (file or folder) instead of the hub."}
    )
    dataset_subset: str | None = field(
        default=None, metadata={"help": "Subset (data_dir) of a hub dataset, e.g. hh_rlhf's helpful-base."}
    )
    custom_data: str | None = field(default=None, metadata={"help": "Custom JSONL/JSON/Parquet/CSV file."})
    streaming: bool = field(default=False, metadata={"help": "Stream a hub dataset instead of downloading it."})
    max_samples: int | None = field(default=None, metadata={"help": "Use at most this many training rows."})
    eval_samples: int = field(default=0, metadata={"help": "Rows held out for evaluation (0: none)."})
    eval_steps: int = field(
        default=0, metadata={"help": "Evaluate on the held-out rows every N steps during training (0: off)."}
    )
    skip_bad_rows: bool = field(
        default=False, metadata={"help": "Skip malformed data rows (counted in the log) instead of failing."}
    )
    # Training
    learning_rate: float = field(default=5e-6, metadata={"help": "Peak learning rate."})
    num_train_epochs: float = field(default=1.0, metadata={"help": "Passes over the training prompts."})
    max_steps: int = field(default=-1, metadata={"help": "Stop after this many optimizer steps (-1: epochs)."})
    per_device_train_batch_size: int = field(
        default=4, metadata={"help": "Completions per device per micro-batch (TRL counts completions)."}
    )
    per_device_eval_batch_size: int = field(default=4, metadata={"help": "Prompts per evaluation batch."})
    gradient_accumulation_steps: int = field(default=2, metadata={"help": "Micro-batches per optimizer step."})
    group_size: int = field(default=4, metadata={"help": "Completions sampled per prompt (TRL's num_generations)."})
    max_completion_length: int = field(default=256, metadata={"help": "Tokens generated per completion."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature of the rollouts."})
    beta: float = field(default=0.0, metadata={"help": "KL penalty against the base model (0: no KL term)."})
    gamma: float = field(
        default=1.0,
        metadata={"help": "Discount factor. GRPO scores whole completions, so only 1.0 (no discount) is valid."},
    )
    seed: int = field(default=42, metadata={"help": "Seed for data order, sampling and LoRA init."})
    output_dir: str = field(default="./grpo_outputs", metadata={"help": "Where adapter, config and logs go."})
    logging_steps: int = field(default=1, metadata={"help": "Log metrics every N steps."})
    save_steps: int = field(default=50, metadata={"help": "Save a checkpoint every N steps."})
    # Rewards
    reward_functions: list[str] = field(
        default_factory=lambda: ["accuracy"],
        metadata={"help": "Rewards to combine: accuracy, length, custom, or module.path.function."},
    )
    reward_function_type: str | None = field(
        default=None,
        metadata={"help": f"Shorthand for reward_functions: {', '.join(REWARD_FUNCTION_TYPES)} (all three)."},
    )
    reward_config_name: str = field(
        default="balanced",
        metadata={"help": f"Default reward weights: {', '.join(REWARD_WEIGHT_PRESETS)}."},
    )
    reward_config: str | dict | None = field(
        default=None, metadata={"help": "Reward settings: a JSON path or a dict in config/reward_config.json's shape."}
    )
    # Tracking and run control
    use_wandb: bool | None = field(
        default=None, metadata={"help": "Weights & Biases: None = on only when it can work (credentials)."}
    )
    wandb_project: str | None = field(default=None, metadata={"help": "W&B project (turns W&B on)."})
    report_to: list[str] | None = field(
        default=None, metadata={"help": "Trackers for TRL (wandb, tensorboard); None: decided by use_wandb."}
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Allow writing into a non-empty output directory."}
    )
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": "Checkpoint folder, or 'latest' for the newest one in output_dir."}
    )
    trl_args: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "Further trl.GRPOConfig fields, passed through as given."}
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError naming the first bad value and what would be accepted."""
        _check_choice("backend", self.backend, BACKENDS)
        _check_choice("reward_config_name", self.reward_config_name, REWARD_WEIGHT_PRESETS)
        if self.reward_function_type is not None:
            _check_choice("reward_function_type", self.reward_function_type, REWARD_FUNCTION_TYPES)
        if not self.reward_functions:
            raise ConfigError(f"reward_functions is empty; give one or more of {', '.join(REWARD_NAMES)}.")
        if not math.isclose(self.gamma, 1.0):
            raise ConfigError(
                f"gamma={self.gamma}: GRPO rewards whole completions with no per-step discounting, so only "
                "gamma=1.0 is meaningful. Remove the key or set it to 1.0."
            )
        for name in (
            "max_seq_length",
            "lora_rank",
            "per_device_train_batch_size",
            "per_device_eval_batch_size",
            "gradient_accumulation_steps",
            "max_completion_length",
            "logging_steps",
            "save_steps",
        ):
            _check_positive(name, getattr(self, name))
        _check_positive("learning_rate", self.learning_rate)
        _check_positive("num_train_epochs", self.num_train_epochs)
        if self.group_size < 2:
            raise ConfigError(f"group_size={self.group_size}: GRPO compares completions, it needs at least 2.")
        if self.max_completion_length >= self.max_seq_length:
            raise ConfigError(
                f"max_completion_length ({self.max_completion_length}) must be below max_seq_length "
                f"({self.max_seq_length}), which also holds the prompt."
            )
        if self.max_samples is not None and self.max_samples < 1:
            raise ConfigError(f"max_samples={self.max_samples}: give a positive number or leave it unset.")
        if self.eval_steps and (self.eval_samples == 0 or self.per_device_eval_batch_size % self.group_size):
            raise ConfigError(
                f"eval_steps={self.eval_steps} needs eval_samples > 0 and per_device_eval_batch_size "
                f"({self.per_device_eval_batch_size}) divisible by group_size ({self.group_size})."
            )
        if self.streaming and self.max_steps <= 0:
            raise ConfigError("streaming=True reads a dataset of unknown length; give max_steps (--max-steps N).")
        if self.beta < 0 or self.temperature <= 0 or self.eval_samples < 0:
            raise ConfigError("beta and eval_samples must be >= 0 and temperature > 0.")

    @property
    def selected_rewards(self) -> list[str]:
        """The reward names in use: ``reward_function_type`` when set, else ``reward_functions``."""
        if self.reward_function_type is not None:
            return list(REWARD_FUNCTION_TYPES[self.reward_function_type])
        return list(self.reward_functions)

    @property
    def max_prompt_length(self) -> int:
        """Token budget left for the prompt (TRL 1.x dropped its own ``max_prompt_length``)."""
        return self.max_seq_length - self.max_completion_length

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_choice(key: str, value: Any, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{key}={value!r} is not valid; choose one of: {', '.join(map(str, choices))}.")


def _check_positive(key: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{key}={value!r} must be a positive number.")


OWN_KEYS = tuple(f.name for f in dataclasses.fields(GRPOConfig))


def trl_field_names() -> set[str]:
    """Names of ``trl.GRPOConfig`` fields; imported lazily so that Unsloth can be imported before TRL."""
    from trl import GRPOConfig as TRLGRPOConfig

    return {f.name for f in dataclasses.fields(TRLGRPOConfig) if f.init}


def split_known_keys(values: dict[str, Any], source: str) -> dict[str, Any]:
    """Sort ``values`` into our fields and trl pass-through; unknown keys raise with the valid list."""
    own = {k: v for k, v in values.items() if k in OWN_KEYS}
    rest = {k: v for k, v in values.items() if k not in OWN_KEYS}
    if rest:
        trl_names = trl_field_names()
        unknown = sorted(set(rest) - trl_names)
        if unknown:
            raise ConfigError(
                f"{source}: unknown key(s) {', '.join(unknown)}. Valid keys are this project's: "
                f"{', '.join(OWN_KEYS)}; or any trl.GRPOConfig field (e.g. warmup_ratio, save_total_limit, "
                "lr_scheduler_type, loss_type, scale_rewards)."
            )
        own["trl_args"] = {**own.get("trl_args", {}), **rest}
    return own


def merge(config: GRPOConfig, overrides: dict[str, Any], source: str) -> GRPOConfig:
    """A new config with ``overrides`` applied; ``trl_args`` dicts are merged key by key."""
    overrides = split_known_keys(overrides, source)
    if "trl_args" in overrides:
        overrides["trl_args"] = {**config.trl_args, **overrides["trl_args"]}
    try:
        return dataclasses.replace(config, **overrides)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    except TypeError as err:
        raise ConfigError(f"{source}: {err}") from None


def read_json_object(path: str | Path, what: str) -> dict[str, Any]:
    """Read a JSON object from ``path`` with errors that name the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{what} {path}: invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path}: expected a JSON object {{...}}, got {type(data).__name__}.")
    return data


def load_preset(name: str) -> dict[str, Any]:
    return read_json_object(PRESET_FILES[name], f"preset '{name}'")


def load_config_from_file(path: str | Path, base: GRPOConfig | None = None) -> GRPOConfig:
    """Apply the JSON file at ``path`` onto ``base`` (defaults when None)."""
    return merge(base or GRPOConfig(), read_json_object(path, "config"), f"config file {path}")


def save_config_to_file(config: GRPOConfig, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``config`` as JSON (plus ``extra`` provenance keys under ``_run``); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = config.to_dict()
    if extra:
        data["_run"] = extra
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    return path


def create_default_config(model: str = "llama-3.1-8b", dataset: str = "ultrafeedback") -> GRPOConfig:
    """The default config for a model short name (or hub id / folder) and a dataset name."""
    return GRPOConfig(model_name=model, dataset_name=dataset)


def build_config(
    preset: str | None = None, config_file: str | None = None, overrides: dict[str, Any] | None = None
) -> GRPOConfig:
    """defaults < preset < JSON file < ``overrides`` (the command-line flags that were given)."""
    config = GRPOConfig()
    if preset:
        config = merge(config, load_preset(preset), f"preset '{preset}'")
    if config_file:
        config = load_config_from_file(config_file, base=config)
    if overrides:
        config = merge(config, overrides, "command line")
    return config


def to_trl_args(config: GRPOConfig, *, use_cpu: bool, bf16: bool, report_to: list[str], **extra: Any):
    """The one place where our config becomes a ``trl.GRPOConfig``.

    ``use_cpu``/``bf16``/``report_to`` depend on the machine and trackers, so the caller decides them.
    ``trl_args`` from the JSON file win over everything derived here.
    """
    from trl import GRPOConfig as TRLGRPOConfig

    mapped = {
        "output_dir": config.output_dir,
        "learning_rate": config.learning_rate,
        "num_train_epochs": config.num_train_epochs,
        "max_steps": config.max_steps,
        "per_device_train_batch_size": config.per_device_train_batch_size,
        "per_device_eval_batch_size": config.per_device_eval_batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "num_generations": config.group_size,
        "max_completion_length": config.max_completion_length,
        "temperature": config.temperature,
        "beta": config.beta,
        "seed": config.seed,
        "data_seed": config.seed,
        "logging_steps": config.logging_steps,
        "save_steps": config.save_steps,
        "save_strategy": "steps",
        "use_cpu": use_cpu,
        "bf16": bf16,
        "report_to": report_to,
        "remove_unused_columns": False,
        # Every LoRA parameter takes part in each forward pass; the extra DDP graph traversal is waste.
        "ddp_find_unused_parameters": False,
        "log_completions": True,
        "num_completions_to_print": 2,
        **extra,
        **config.trl_args,
    }
    try:
        return TRLGRPOConfig(**mapped)
    except ValueError as err:
        raise ConfigError(f"trainer settings rejected by TRL: {err}") from None


def check_batch_arithmetic(config: GRPOConfig, world_size: int = 1) -> None:
    """TRL needs whole prompt groups in every generation batch; say which settings would work."""
    generation_batch = config.per_device_train_batch_size * world_size * config.gradient_accumulation_steps
    if "generation_batch_size" in config.trl_args or "steps_per_generation" in config.trl_args:
        return  # TRL checks these itself and names them in its own message
    if generation_batch % config.group_size == 0:
        return
    batch_options = [
        b
        for b in range(1, 4 * config.group_size + 1)
        if (b * world_size * config.gradient_accumulation_steps) % config.group_size == 0
    ][:4]
    group_options = [g for g in range(2, generation_batch + 1) if generation_batch % g == 0]
    raise ConfigError(
        f"The generation batch (per_device_train_batch_size {config.per_device_train_batch_size} x processes "
        f"{world_size} x gradient_accumulation_steps {config.gradient_accumulation_steps} = {generation_batch}) "
        f"must be divisible by group_size (num_generations) {config.group_size}. Working values: "
        f"--batch-size {' / '.join(map(str, batch_options))} with this group size, or "
        f"--num-generations {' / '.join(map(str, group_options)) or 'none'} with this batch."
    )
