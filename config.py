"""Run configuration: ``GRPOConfig`` is ``trl.GRPOConfig`` plus the settings TRL has no field for.

Every trainer hyper-parameter (learning rate, batch sizes, ``num_generations``, ``beta``, ``output_dir``, ...) is a
field of ``trl.GRPOConfig`` and is declared only there; this subclass adds the model, data, LoRA and reward
settings, as huggingface/open-r1's ``configs.py`` does.  The seed's keys (``group_size``, ``custom_data``,
``reward_function_type``, ``gamma``) are aliases of real settings (``config_base.ALIASES``).

A command-line run is assembled once from layers, each a plain dict: this project's defaults for TRL fields
(``config_base.PROJECT_DEFAULTS``) < preset (``--quick-test`` / ``--production``) < ``--config`` JSON file <
the flags that were given.  Aliases are resolved in each layer before merging, every key and value is checked
(types from TRL's own field declarations, ranges, choices) with an error naming the layer, and then the config is
built once; nothing changes it afterwards.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import functools
import importlib.util
import json
import logging
import math
import re
import types
import typing
from dataclasses import InitVar, dataclass, field
from pathlib import Path
from typing import Any

from config_base import (
    ALIASES,
    BACKENDS,
    CAUSAL_LM,
    CONFIG_DIR,
    DEFAULT_LORA_TARGETS,
    EMBEDDED_MODEL,
    MODEL_ALIASES,
    PRESET_FILES,
    PROJECT_DEFAULTS,
    REWARD_FUNCTION_TYPES,
    REWARD_NAMES,
    REWARD_WEIGHT_PRESETS,
    ConfigError,
    foreign_adapter,
    hub_offline,
    import_unsloth_first,
    load_preset,
    read_adapter_config,
    read_json_object,
    repeated,
    resolve_aliases,
    world_size,
)

import_unsloth_first()  # Unsloth patches TRL and transformers only if it is imported before them

import trl  # noqa: E402
from transformers.generation.configuration_utils import ALL_CACHE_IMPLEMENTATIONS  # noqa: E402

__all__ = [
    "BACKENDS",
    "CONFIG_DIR",
    "EMBEDDED_MODEL",
    "MODEL_ALIASES",
    "PRESET_FILES",
    "REWARD_FUNCTION_TYPES",
    "REWARD_NAMES",
    "REWARD_WEIGHT_PRESETS",
    "ConfigError",
    "GRPOConfig",
    "build_config",
    "create_default_config",
    "load_config_from_file",
    "read_json_object",
    "save_config_to_file",
]

logger = logging.getLogger(__name__)


@dataclass
class GRPOConfig(trl.GRPOConfig):
    """``trl.GRPOConfig`` plus what TRL has no field for.  Field names follow the seed README's example config."""

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
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout, in [0, 1)."})
    lora_target_modules: list[str] = field(
        default_factory=lambda: list(DEFAULT_LORA_TARGETS), metadata={"help": "Module names that get LoRA."}
    )
    # Data
    dataset_name: str = field(
        default="ultrafeedback",
        metadata={"help": "Dataset source name, hub id or local path (alias: custom_data)."},
    )
    dataset_path: str | None = field(
        default=None, metadata={"help": "Local copy of the named dataset (file or folder) instead of the hub."}
    )
    dataset_subset: str | None = field(
        default=None, metadata={"help": "Subset (data_dir) of a hub dataset, e.g. hh_rlhf's helpful-base."}
    )
    streaming: bool = field(default=False, metadata={"help": "Stream a hub dataset instead of downloading it."})
    max_samples: int | None = field(default=None, metadata={"help": "Use at most this many training rows."})
    eval_samples: int = field(default=0, metadata={"help": "Rows held out for evaluation (0: none)."})
    skip_bad_rows: bool = field(
        default=False, metadata={"help": "Skip malformed data rows (counted in the log) instead of failing."}
    )
    # Rewards
    reward_functions: list[str] = field(
        default_factory=lambda: ["accuracy"],
        metadata={"help": "Rewards to combine: accuracy, length, custom, or module.path.function."},
    )
    reward_config_name: str = field(
        default="balanced",
        metadata={"help": f"Default reward weights: {', '.join(REWARD_WEIGHT_PRESETS)}."},
    )
    reward_config: str | dict | None = field(
        default=None, metadata={"help": "Reward settings: a JSON path or a dict in config/reward_config.json's shape."}
    )
    reward_timeout: float = field(
        default=60.0, metadata={"help": "Seconds a reward call may take; past it the batch scores None."}
    )
    reward_model: str | None = field(
        default=None, metadata={"help": "Sequence-classification reward model (folder or hub id) scoring completions."}
    )
    reward_model_weight: float = field(default=1.0, metadata={"help": "Weight of the reward model's score."})
    # Tracking and run control
    use_wandb: bool | None = field(
        default=None, metadata={"help": "Weights & Biases: None = on only when it can work (credentials)."}
    )
    wandb_project: str | None = field(default=None, metadata={"help": "W&B project (turns W&B on)."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Start a new run in an output directory that holds an earlier one."}
    )
    init_adapter: str | None = field(
        default=None,
        metadata={"help": "Start a new run from this LoRA adapter (a finished run's folder or a checkpoint)."},
    )
    compile_generation: bool = field(
        default=False,
        metadata={"help": "transformers backend, CUDA, bf16 weights: compiled decoding, static KV cache (1.5x, H200)."},
    )
    log_completions_steps: int = field(
        default=10, metadata={"help": "Show a table of sample completions on the terminal every N steps (0: never)."}
    )
    # The seed's other names (config_base.ALIASES); accepted by the constructor, not stored.
    group_size: InitVar[int | None] = None
    custom_data: InitVar[str | None] = None
    reward_function_type: InitVar[str | None] = None
    gamma: InitVar[float | None] = None

    def __post_init__(self, group_size, custom_data, reward_function_type, gamma) -> None:
        given = {"group_size": group_size, "custom_data": custom_data}
        given |= {"reward_function_type": reward_function_type, "gamma": gamma}
        aliases = {k: v for k, v in given.items() if v is not None}
        # A setting given under both names must agree, as in a config file (GRPOConfig(group_size=4,
        # num_generations=8) silently took 4): the real name counts as given when passed, or not its default
        # (set before the call, e.g. by a copy).
        defaults = {
            f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            for f in dataclasses.fields(self)
        }  # (a list default comes from its factory: reward_functions=['accuracy'] counted as given)
        canonical = {ALIASES[a][0] for a in aliases} - {None}
        passed = getattr(self, "_given_keys", frozenset())
        also_given = {k: getattr(self, k) for k in canonical if k in passed or getattr(self, k) != defaults.get(k)}
        for key, value in resolve_aliases({**also_given, **aliases}, "GRPOConfig").items():
            setattr(self, key, value)
        for f in dataclasses.fields(self):
            if f.init:
                check_value(f.name, getattr(self, f.name))
        self._check_own_settings()
        if self.eval_steps and self.eval_samples and self.eval_strategy == "no":
            self.eval_strategy = "steps"  # eval_steps is how the seed asks for evaluation during training
        self._machine_defaults()
        if self.generation_batch_size is not None and self.steps_per_generation is not None:
            # A copy of a built config (dataclasses.replace) carries both; TRL derives one from the other again.
            self.steps_per_generation = None
        try:
            super().__post_init__()
        except ValueError as err:
            raise ConfigError(f"trainer settings rejected by TRL: {err}") from None

    def _check_optional_packages(self) -> None:
        """Settings that need a package this project does not install: transformers and TRL import it only when
        training starts, after the model is loaded (found by a fault hunt)."""
        needs = [
            ("use_liger_kernel", self.use_liger_kernel, "liger_kernel", "liger-kernel"),
            ("use_vllm", self.use_vllm, "vllm", "vllm (see README: vLLM)"),
            (
                "optim",
                isinstance(self.optim, str) and ("bnb" in self.optim or "8bit" in self.optim),
                "bitsandbytes",
                "bitsandbytes",
            ),
        ]
        for key, needed, module, package in needs:
            if needed and importlib.util.find_spec(module) is None:
                raise ConfigError(
                    f"{key}={getattr(self, key)!r} needs {package}, which is not installed here; install it, or "
                    f"leave {key} out."
                )

    def _machine_defaults(self) -> None:
        """bf16 only where the GPU has it; CPU training where there is no GPU (TRL would refuse otherwise)."""
        import torch

        if not torch.cuda.is_available():
            self.use_cpu = True
        if self.bf16 is None:
            self.bf16 = not self.use_cpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported()

    def _check_own_settings(self) -> None:
        """Relations between settings that one value alone cannot show."""
        self._check_optional_packages()
        if self.push_to_hub and hub_offline():
            # the Trainer pushes at every save: offline, the run failed at its first checkpoint (fault hunt)
            raise ConfigError("push_to_hub=True with HF_HUB_OFFLINE set: the hub cannot be reached; unset one of them.")
        if self.reward_weights and not any(self.reward_weights):
            raise ConfigError(
                f"every reward weight is 0 ({self.reward_weights}): all advantages would be 0 and nothing would be "
                "learned; give at least one reward a weight (reward config 'weight' or reward_weights)."
            )
        if self.max_completion_length is not None and self.max_completion_length >= self.max_seq_length:
            raise ConfigError(
                f"max_completion_length ({self.max_completion_length}) must be below max_seq_length "
                f"({self.max_seq_length}), which also holds the prompt."
            )
        if self.eval_steps and self.eval_samples and self.per_device_eval_batch_size % self.num_generations:
            raise ConfigError(
                f"eval_steps={self.eval_steps} needs per_device_eval_batch_size ({self.per_device_eval_batch_size}) "
                f"divisible by num_generations ({self.num_generations})."
            )
        if self.eval_steps and not self.eval_samples:
            raise ConfigError(f"eval_steps={self.eval_steps} needs held-out rows: give eval_samples > 0.")
        if not self.reward_functions and not self.reward_model:
            raise ConfigError(
                f"reward_functions is empty; give one or more of {', '.join(REWARD_NAMES)}, or a --reward-model."
            )
        if self.init_adapter and self.resume_from_checkpoint:
            raise ConfigError(
                "init_adapter starts a new run from an adapter, resume_from_checkpoint continues an interrupted one; "
                "give one of them."
            )
        if self.init_adapter and not (Path(self.init_adapter) / "adapter_model.safetensors").is_file():
            raise ConfigError(
                f"init_adapter={self.init_adapter}: no adapter_model.safetensors there; give a finished run's folder "
                "or one of its checkpoint-N folders."
            )
        if self.init_adapter and foreign_adapter(self.init_adapter, CAUSAL_LM):
            raise ConfigError(  # was "does not fit ... use the same --model and --lora-rank", which were the same
                f"init_adapter={self.init_adapter} is a reward model (train_reward_model.py), not a policy: use it as "
                f"a reward with --reward-model {self.init_adapter}, or give a GRPO run's folder."
            )
        if self.streaming and self.max_steps <= 0:
            raise ConfigError("streaming=True reads a dataset of unknown length; give max_steps (--max-steps N).")

    def validate(self) -> None:
        """Check again after attributes were set by hand (``config.learning_rate = ...``)."""
        for f in dataclasses.fields(self):
            if f.init:
                check_value(f.name, getattr(self, f.name))
        self._check_own_settings()

    # The seed's alias, readable and writable as an attribute.
    @property
    def selected_rewards(self) -> list[str]:
        return list(self.reward_functions)

    @property
    def max_prompt_length(self) -> int:
        """Token budget left for the prompt (TRL 1.x dropped its own ``max_prompt_length``)."""
        return self.max_seq_length - self.max_completion_length


def _get_group_size(self: GRPOConfig) -> int:
    return self.num_generations


def _set_group_size(self: GRPOConfig, value: int) -> None:
    self.num_generations = value


# After the dataclass is made, so that the constructor keeps ``group_size`` as an init-only alias.
GRPOConfig.group_size = property(_get_group_size, _set_group_size, doc="The seed's name of num_generations.")

OWN_KEYS = tuple(f.name for f in dataclasses.fields(GRPOConfig) if f.name not in trl.GRPOConfig.__dataclass_fields__)
TRL_KEYS = tuple(f.name for f in dataclasses.fields(trl.GRPOConfig) if f.init)
VALID_KEYS = frozenset(OWN_KEYS) | frozenset(TRL_KEYS) | frozenset(ALIASES)


def _init_naming_unknown_keys(dataclass_init):
    """The dataclass constructor, with a mistyped keyword reported as the config file's would be (a ConfigError
    with the close valid names) instead of Python's bare ``TypeError: unexpected keyword argument``; the keywords
    given are noted for ``__post_init__`` (an alias and its real name both given must agree, even where the real
    name's value is its default)."""

    @functools.wraps(dataclass_init)
    def init(self, *args, **kwargs):
        check_keys(kwargs, f"{type(self).__name__}(...)")
        object.__setattr__(self, "_given_keys", frozenset(kwargs))
        dataclass_init(self, *args, **kwargs)

    return init


GRPOConfig.__init__ = _init_naming_unknown_keys(GRPOConfig.__init__)


# ------------------------------------------------------------------------------------------------------------
# Value checks: types from the dataclass declarations (TRL's and ours), then ranges and choices.
POSITIVE = {
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "gradient_accumulation_steps",
    "max_completion_length",
    "max_seq_length",
    "lora_rank",
    "logging_steps",
    "save_steps",
    "learning_rate",
    "num_train_epochs",
    "temperature",
    "reward_timeout",
    "generation_batch_size",
    "steps_per_generation",
    "max_samples",
    "num_iterations",  # 0 trained no step and marked the run finished (fault hunt)
    "lora_alpha",
    # TRL fields whose bad values failed inside the first step, or trained without a word (fourth hunt)
    "repetition_penalty",
    "epsilon",
    "epsilon_high",
    "delta",
}
NON_NEGATIVE = {"beta", "eval_samples", "warmup_steps", "weight_decay", "max_grad_norm", "seed", "eval_steps"}
NON_NEGATIVE |= {"log_completions_steps", "save_total_limit", "top_k"}


def values_trl_lists(key: str) -> tuple[str, ...]:
    """The values TRL's own help for ``key`` lists ("Supported values are 'grpo', 'dr_grpo', ... and 'vespo'."),
    its one declaration of them; empty if the help no longer says so (a test then fails, on the TRL upgrade)."""
    help_text = trl.GRPOConfig.__dataclass_fields__[key].metadata.get("help", "")
    _, found, rest = help_text.partition("Supported values are")
    return tuple(re.findall(r"'(\w+)'", rest.split(". ", 1)[0])) if found else ()


CHOICES = {
    "backend": BACKENDS,
    "reward_config_name": tuple(REWARD_WEIGHT_PRESETS),
    # TRL 1.15 checks these two only inside the first training step, and transformers the cache only when it
    # generates: a typo would fail after the model is loaded.
    "loss_type": values_trl_lists("loss_type"),
    "scale_rewards": ("group", "batch", "none"),  # or true / false
    "cache_implementation": ALL_CACHE_IMPLEMENTATIONS,
    # as TRL's help states them; TRL checks the first only in the first step, the second never without vLLM
    "importance_sampling_level": ("token", "sequence"),
    "vllm_mode": ("server", "colocate"),
}
# Probabilities, with the ranges TRL's help gives: (low, high, low included)
UNIT_RANGES = {"top_p": (0.0, 1.0, False), "min_p": (0.0, 1.0, True)}


@typing.no_type_check
def _type_hints() -> dict[str, Any]:
    return typing.get_type_hints(GRPOConfig)


_HINTS: dict[str, Any] = {}
JSON_TYPES = (type(None), bool, int, float, str, list, tuple, dict, enum.Enum)


def _accepts(value: Any, hint: Any) -> bool:
    """Whether ``value`` (as read from JSON or given in Python) fits the declared type ``hint``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is Any:
        return True
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return isinstance(value, hint) or value in {m.value for m in hint}
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        return isinstance(value, (list, tuple)) and all(_accepts(v, item) for v in value)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    return True  # a structured type (e.g. ParallelismConfig): TRL checks it itself


def _enum_choices(hint: Any) -> list[str]:
    """The values of an ``Enum | str`` field (transformers turns the string into the enum and fails otherwise)."""
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    enums = [a for a in args if isinstance(a, type) and issubclass(a, enum.Enum)]
    return [m.value for e in enums for m in e] if enums and str in args else []


def _type_name(hint: Any) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    return " or ".join(names.get(a, _generic_name(a)) for a in args)


def _generic_name(hint: Any) -> str:
    """``list[float]`` as "a list of numbers" rather than "list" (["1"] is a list, just not of numbers)."""
    plural = {bool: "true/false values", int: "integers", float: "numbers", str: "strings"}
    inner = typing.get_args(hint)
    if typing.get_origin(hint) is list and inner:
        return f"a list of {plural.get(inner[0], getattr(inner[0], '__name__', str(inner[0])))}"
    return getattr(hint, "__name__", str(hint))


def check_value(key: str, value: Any) -> None:
    """Raise ConfigError if ``value`` does not fit ``key``'s declared type, range or choices."""
    if not _HINTS:
        _HINTS.update(_type_hints())
    hint = _HINTS.get(key)
    if not isinstance(value, JSON_TYPES):
        return  # an object TRL built from a plain value (e.g. AcceleratorConfig); TRL checked it
    if hint is not None and not _accepts(value, hint):
        raise ConfigError(f"{key}={value!r} must be {_type_name(hint)}.")
    choices = _enum_choices(hint)
    if isinstance(value, str) and choices and value not in choices:
        raise ConfigError(f"{key}={value!r} is not valid; choose one of: {', '.join(choices)}.")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}={value!r} must be a finite number.")
    if isinstance(value, list) and any(isinstance(v, float) and not math.isfinite(v) for v in value):
        # reward_weights [NaN] zeroed every reward and [inf] made it inf: the run learned nothing (fault hunt)
        raise ConfigError(f"{key}={value!r}: every number must be finite.")
    if value is None or isinstance(value, bool):
        return
    if key in POSITIVE and isinstance(value, (int, float)) and value <= 0:
        raise ConfigError(f"{key}={value!r} must be a positive number.")
    if key in NON_NEGATIVE and isinstance(value, (int, float)) and value < 0:
        raise ConfigError(f"{key}={value!r} must be zero or more.")
    if CHOICES.get(key) and value not in CHOICES[key]:
        raise ConfigError(f"{key}={value!r} is not valid; choose one of: {', '.join(CHOICES[key])}.")
    if key in UNIT_RANGES and isinstance(value, (int, float)):
        low, high, low_included = UNIT_RANGES[key]
        if not (low <= value <= high if low_included else low < value <= high):
            raise ConfigError(f"{key}={value!r} must be in {'[' if low_included else '('}{low:g}, {high:g}].")
    _check_special(key, value)


def _check_special(key: str, value: Any) -> None:
    if key == "num_generations" and value < 2:
        raise ConfigError(f"num_generations (group_size)={value}: GRPO compares completions, it needs at least 2.")
    if (key == "max_steps" and value == 0) or (key == "max_steps" and value < -1):
        raise ConfigError(f"max_steps={value}: give a positive number of steps, or -1 to train by epochs.")
    if key == "report_to" and isinstance(value, list):
        from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

        unknown = [v for v in value if v not in (*INTEGRATION_TO_CALLBACK, "all", "none")]
        if unknown:
            raise ConfigError(
                f"report_to {', '.join(unknown)}: not a tracker transformers knows; choose from "
                f"{', '.join(INTEGRATION_TO_CALLBACK)}, all or none."
            )
    if key == "lora_target_modules" and isinstance(value, list) and not value:
        raise ConfigError(
            "lora_target_modules is empty; name the layers to adapt, e.g. q_proj, v_proj (or leave it out)."
        )
    if key == "lora_dropout" and not 0 <= value < 1:
        raise ConfigError(f"lora_dropout={value}: must be in [0, 1).")
    if key == "reward_config" and isinstance(value, dict):  # written inline: checked in its layer, which is named
        from rewards import load_reward_config

        load_reward_config(value)
    if key == "reward_functions":  # (empty is a relation: allowed with a reward model, GRPOConfig checks it)
        twice = repeated(value)
        if twice:  # accepted before: the reward counted twice under one logged name (fault hunt)
            raise ConfigError(
                f"reward_functions names {', '.join(twice)} twice; name each reward once (its weight sets how much "
                "it counts)."
            )
        for name in value:
            if name not in REWARD_NAMES and "." not in name and ":" not in name:
                raise ConfigError(
                    f"reward function {name!r}: choose from {', '.join(REWARD_NAMES)} or give package.module.function."
                )


def check_layer(values: dict[str, Any], source: str) -> None:
    """Unknown keys and bad values of one layer, reported with the layer's name."""
    check_keys(values, source)
    check_values(values, source)


def check_values(values: dict[str, Any], source: str) -> None:
    """Each value checked as ``check_value`` does, the error prefixed with where it came from."""
    for key, value in values.items():
        try:
            check_value(key, value)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None


def check_keys(values: dict[str, Any], source: str) -> None:
    """Keys that are no setting, each with the valid names close to it, and where valid names are listed."""
    unknown = sorted(set(values) - VALID_KEYS)
    if unknown:
        hints = [f"{k} (did you mean {', '.join(m)}?)" if (m := _close(k)) else k for k in unknown]
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(hints)}. Valid keys are this project's: {', '.join(OWN_KEYS)}; "
            f"the seed's aliases: {', '.join(ALIASES)}; or any trl.GRPOConfig field (e.g. warmup_steps, "
            "save_total_limit, lr_scheduler_type, loss_type, scale_rewards, generation_batch_size)."
        )


def _close(key: str) -> list[str]:
    return difflib.get_close_matches(key, sorted(VALID_KEYS), n=2, cutoff=0.8)


# ------------------------------------------------------------------------------------------------------------
# Layers -> one config
def merge_layers(layers: list[tuple[str, dict[str, Any]]], sources: dict[str, str] | None = None) -> dict[str, Any]:
    """Later layers win key by key; each is alias-resolved and checked under its own name first.  ``sources``, if
    given, receives the layer each key came from."""
    merged: dict[str, Any] = {}
    for source, values in layers:
        values = resolve_aliases({k: v for k, v in values.items() if k != PROVENANCE_KEY}, source)
        check_layer(values, source)
        merged.update(values)
        if sources is not None:
            sources.update(dict.fromkeys(values, source))
    return merged


def reward_model_alone(values: dict[str, Any], sources: dict[str, str]) -> dict[str, Any]:
    """A reward model with no reward named by a preset, file or flag is the run's only reward; named rewards are
    summed with it (README: "다른 보상과 함께 쓰면 가중합"; the default accuracy reward was added silently)."""
    if values.get("reward_model") and sources.get("reward_functions", "project defaults") == "project defaults":
        logger.info("reward: the reward model %s alone (name rewards to add to it)", values["reward_model"])
        return {"reward_functions": []}
    return {}


# (PEFT may save target_modules as full module paths, which lora_target_modules does not take: left to the user.)
ADAPTER_KEYS = {"model_name": "base_model_name_or_path", "lora_rank": "r"}


def adapter_defaults(values: dict[str, Any], sources: dict[str, str]) -> dict[str, Any]:
    """A new run from ``init_adapter`` takes the adapter's base model and rank where no preset, file or flag set
    them (without --model it loaded the default llama-3.1-8b, which the adapter does not fit)."""
    adapter = values.get("init_adapter")
    saved = read_adapter_config(adapter) if adapter else {}
    taken = {
        key: saved[name]
        for key, name in ADAPTER_KEYS.items()
        if saved.get(name) is not None and sources.get(key, "project defaults") == "project defaults"
    }
    if taken:
        logger.info("from the adapter in %s: %s", adapter, ", ".join(f"{k}={v}" for k, v in taken.items()))
        sources.update(dict.fromkeys(taken, f"init_adapter {adapter}"))
    return taken


def setting_source(config: GRPOConfig, key: str) -> str:
    """Where ``key``'s value came from ("preset 'production'", "config file x.json", "command line"), so that an
    error about it can say which setting to change."""
    sources = getattr(config, "setting_sources", None)
    if sources is None:  # built in Python, not by build_config
        return "the GRPOConfig given"
    return sources.get(key, "the defaults")


def derived_defaults(values: dict[str, Any]) -> dict[str, Any]:
    """Settings that follow from others or from this machine, for keys no layer gave."""
    from memory import configured_generation_batch
    from models import cuda_available, resolve_backend
    from run_utils import decide_trackers

    derived: dict[str, Any] = {"data_seed": values.get("seed", 42)}
    trl_defaults = {k: v for k, v in _trl_default_values().items() if k not in GENERATION_BATCH_KEYS}
    merged = {**trl_defaults, **_own_defaults(), **values}
    derived["report_to"] = decide_trackers(types.SimpleNamespace(report_to=None, **_pick(merged, *TRACKER_KEYS)))
    derived["reward_weights"] = reward_weights_for(
        merged["reward_functions"],
        merged["reward_config"],
        merged["reward_config_name"],
        merged["reward_model_weight"] if merged.get("reward_model") else None,
    )
    if "reward_weights" in values and derived["reward_weights"] != values["reward_weights"]:
        # the reward config's (or preset's) weights lose to reward_weights: said, not silent (fault hunt)
        logger.warning(
            "reward_weights %s replaces the weights the reward config or preset gives (%s).",
            values["reward_weights"],
            derived["reward_weights"],
        )
    if not cuda_available():
        return {k: v for k, v in derived.items() if k not in values}
    if merged.get("generation_batch_size") is None and merged.get("steps_per_generation") is None:
        derived["generation_batch_size"] = _generation_batch(merged)
    chosen = {**dict.fromkeys(GENERATION_BATCH_KEYS), **merged, **derived}
    generation_batch = configured_generation_batch(types.SimpleNamespace(**chosen), world_size())  # per process
    large_4bit = merged["load_in_4bit"] and generation_batch > 16
    if resolve_backend(merged["backend"]) == "transformers" and not large_4bit:
        # Measured on an H100 (docs/benchmarks.md): a static KV cache gives 1.32x rollout tokens/s at the same
        # memory, except with bitsandbytes 4-bit weights and large generation batches, where dynamic is faster
        # (transformers does not compile 4-bit decoding, so compile_generation changes nothing there).
        derived["cache_implementation"] = "static"
    return {k: v for k, v in derived.items() if k not in values}


GENERATION_BATCH_KEYS = ("generation_batch_size", "steps_per_generation")  # TRL derives one from the other


def _generation_batch(merged: dict[str, Any]) -> int:
    """The largest generation batch the memory estimate says fits this GPU, up to a cap (memory.py), logged."""
    from memory import generation_batch_for
    from models import resolve_model_path

    batch, reason = generation_batch_for(
        types.SimpleNamespace(**dict.fromkeys(GENERATION_BATCH_KEYS), **merged),
        resolve_model_path(merged["model_name"]),
        merged["load_in_4bit"],
        world_size(),
    )
    logger.info("%s (set --generation-batch-size to choose)", reason)
    return batch


def reward_weights_for(
    names: list[str], reward_config: str | dict | None, preset: str, reward_model_weight: float | None
) -> list[float]:
    """TRL's ``reward_weights``: each named reward's weight (reward config, else preset), then the reward model's."""
    from rewards import load_reward_config, reward_weight

    sections = load_reward_config(reward_config)
    weights = [reward_weight(n, sections.get(n, {}), preset) if n in REWARD_NAMES else 1.0 for n in names]
    return weights if reward_model_weight is None else [*weights, reward_model_weight]


def _own_defaults() -> dict[str, Any]:
    return {
        f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
        for f in dataclasses.fields(GRPOConfig)
        if f.name in OWN_KEYS
    }


TRACKER_KEYS = ("use_wandb", "wandb_project")


def _pick(values: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: values[k] for k in keys if k in values}


def whole_group_generation_batch(values: dict[str, Any], processes: int = 1) -> dict[str, Any]:
    """TRL needs whole prompt groups in every generation batch.  When the optimizer batch (per_device_train_batch_size
    x processes x gradient_accumulation_steps) holds no whole number of groups and no generation batch is given, the
    run generates the smallest multiple of it that does, and says so: the seed README's fix for running out of
    memory, ``--batch-size 1`` (groups of 4, accumulation 2), was refused.  A generation batch given is TRL's to
    check."""
    if any(values.get(key) is not None for key in GENERATION_BATCH_KEYS):
        return {}
    batch, accumulation = values["per_device_train_batch_size"], values["gradient_accumulation_steps"]
    group = values["num_generations"]
    optimizer_batch = batch * processes * accumulation
    if optimizer_batch % group == 0:
        return {}
    generation_batch = math.lcm(optimizer_batch, group)
    logger.info(
        "generation batch %d: the optimizer batch (per_device_train_batch_size %d x processes %d x "
        "gradient_accumulation_steps %d = %d) holds no whole groups of num_generations %d, so each generation round "
        "makes %d completions for %d optimizer steps (set --generation-batch-size to choose)",
        generation_batch,
        batch,
        processes,
        accumulation,
        optimizer_batch,
        group,
        generation_batch,
        generation_batch // optimizer_batch,
    )
    return {"generation_batch_size": generation_batch}


def check_reward_weight_count(values: dict[str, Any]) -> None:
    """Weights given in a layer need one value per reward (TRL found out only after the model was loaded). A
    trainer built in Python with its own reward functions passes its own weights and is not checked here."""
    weights, names = values.get("reward_weights"), values.get("reward_functions") or []
    expected = len(names) + (1 if values.get("reward_model") else 0)
    if weights is not None and len(weights) != expected:
        raise ConfigError(
            f"reward_weights has {len(weights)} value(s) for {expected} reward(s) ({', '.join(names)}"
            f"{' and reward_model' if values.get('reward_model') else ''}); give one weight per reward, in that "
            "order (or set weights in the reward config)."
        )


def build_config(
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    extra_layers: list[tuple[str, dict[str, Any]]] = (),
) -> GRPOConfig:
    """defaults < preset < JSON file < ``extra_layers`` < ``overrides`` (the flags that were given), built once."""
    layers: list[tuple[str, dict[str, Any]]] = [("project defaults", PROJECT_DEFAULTS)]
    if preset:
        layers.append((f"preset '{preset}'", load_preset(preset)))
    if config_file:
        layers.append(config_file_layer(config_file))
    layers.extend(extra_layers)
    if overrides:
        layers.append(("command line", overrides))
    sources: dict[str, str] = {}
    values = merge_layers(layers, sources)
    if values.get("generation_batch_size") is not None and values.get("steps_per_generation") is not None:
        raise ConfigError("generation_batch_size and steps_per_generation both set the generation batch; keep one.")
    check_reward_weight_count(values)
    values |= reward_model_alone(values, sources)
    values |= adapter_defaults(values, sources)
    values |= derived_defaults(values)
    values |= whole_group_generation_batch(values, world_size())
    try:
        config = GRPOConfig(**values)
    except ConfigError as err:  # a relation between settings: name the layers that were read
        given = " < ".join(source for source, _ in layers[1:]) or "defaults"
        raise ConfigError(f"settings from {given}: {err}") from None
    config.setting_sources = sources  # not a setting: read by setting_source
    return config


def create_default_config(model: str = "llama-3.1-8b", dataset: str = "ultrafeedback") -> GRPOConfig:
    """The default config for a model short name (or hub id / folder) and a dataset name."""
    return build_config(overrides={"model_name": model, "dataset_name": dataset})


def load_config_from_file(path: str | Path, base: GRPOConfig | None = None) -> GRPOConfig:
    """The JSON file at ``path`` over ``base`` (the project defaults when None)."""
    extra = [("base config", config_values(base))] if base is not None else []
    return build_config(extra_layers=[*extra, config_file_layer(path)])


def config_file_layer(path: str | Path) -> tuple[str, dict[str, Any]]:
    """A user's JSON config as a layer of ``build_config``, its relative paths checked."""
    values = read_json_object(path, "config")
    check_paths_found(values, Path(path))
    return f"config file {path}", values


# ------------------------------------------------------------------------------------------------------------
# Writing a config
# TRL defaults worth seeing in run_config.json even when unchanged.
SHOWN_TRL_KEYS = (
    "output_dir",
    "learning_rate",
    "lr_scheduler_type",
    "warmup_steps",
    "weight_decay",
    "max_grad_norm",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "num_generations",
    "generation_batch_size",
    "max_completion_length",
    "temperature",
    "top_p",
    "beta",
    "epsilon",
    "loss_type",
    "scale_rewards",
    "seed",
    "logging_steps",
    "save_steps",
    "report_to",
)
# Decided by the machine a run starts on; a file written on a laptop must not force CPU training on a GPU host.
MACHINE_KEYS = ("use_cpu", "bf16")
PROVENANCE_KEY = "_run"  # versions, command line, machine of the run that wrote the file; ignored when read


def config_values(config: GRPOConfig) -> dict[str, Any]:
    """The settings that define ``config``: ours, and TRL's where they differ from TRL's default or matter."""
    everything = config.to_dict()
    trl_defaults = _trl_default_values()
    values = {k: everything[k] for k in OWN_KEYS}
    for key in TRL_KEYS:
        if key in MACHINE_KEYS or key == "steps_per_generation":  # derived from generation_batch_size
            continue
        if key in SHOWN_TRL_KEYS or everything.get(key) != trl_defaults.get(key):
            values[key] = everything.get(key)
    return values


@functools.cache
def _trl_default_values() -> dict[str, Any]:
    """TRL's defaults as ``to_dict`` shows them, read from the declared fields without building a
    ``trl.GRPOConfig``: its ``__post_init__`` sets up devices, and under several processes a CPU-flavoured one
    would start the process group with gloo before accelerate starts NCCL (every GPU collective then fails)."""
    from transformers.trainer_pt_utils import AcceleratorConfig

    blank = object.__new__(trl.GRPOConfig)
    for spec in dataclasses.fields(trl.GRPOConfig):
        if spec.init:
            factory = spec.default_factory if spec.default_factory is not dataclasses.MISSING else lambda: None
            setattr(blank, spec.name, spec.default if spec.default is not dataclasses.MISSING else factory())
    declared = trl.GRPOConfig.to_dict(blank)
    # what __post_init__ turns the declared defaults into (machine-decided keys as on a CPU)
    accelerator = AcceleratorConfig().to_dict()
    accelerator.pop("use_configured_state")  # consumed by device set-up
    normalised = {"accelerator_config": accelerator, "debug": [], "report_to": [], "disable_tqdm": False}
    machine = {"bf16": False, "use_cpu": True}
    return {**declared, **normalised, **machine, "output_dir": PROJECT_DEFAULTS["output_dir"]}


PATH_KEYS = ("model_name", "dataset_name", "dataset_path", "reward_config", "init_adapter", "reward_model")


def check_paths_found(values: dict[str, Any], config_file: Path) -> None:
    """Relative paths in a config file are read from the working directory, as on the command line (the presets and
    examples rely on it). One that is missing there but sits beside the config file is a mistake with a clear fix:
    say so, naming the file and the key, instead of a "not found" from deep in the run."""
    for key in PATH_KEYS:
        value = values.get(key)
        if not isinstance(value, str) or not value or Path(value).is_absolute() or Path(value).exists():
            continue
        beside = config_file.parent / value
        if beside.exists():
            raise ConfigError(
                f"config file {config_file}: {key} {value!r} is not found from the working directory {Path.cwd()} "
                f"(relative paths are read from where the command runs); it is beside the config file: write "
                f"{str(beside)!r} or an absolute path."
            )


def with_absolute_paths(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with the local files and folders it names made absolute (hub ids and names left as they are), so
    that a run's own config still finds them when the run is evaluated or resumed from another directory."""

    def absolute(value: Any) -> Any:
        if isinstance(value, str) and value and Path(value).exists():
            return str(Path(value).resolve())
        if isinstance(value, str) and ".py:" in value:  # a reward given as path/to/file.py:function
            file, _, function = value.rpartition(":")
            return f"{absolute(file)}:{function}"
        return value

    fixed = {key: absolute(values[key]) for key in PATH_KEYS if key in values}
    if isinstance(values.get("reward_functions"), list):
        fixed["reward_functions"] = [absolute(name) for name in values["reward_functions"]]
    return {**values, **fixed}


def save_config_to_file(
    config: GRPOConfig, path: str | Path, extra: dict[str, Any] | None = None, *, absolute_paths: bool = False
) -> Path:
    """Write ``config`` as JSON that ``--config`` reads back (plus ``extra`` provenance under ``_run``); a run's
    own record takes ``absolute_paths``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = config_values(config)
    if absolute_paths:
        data = with_absolute_paths(data)
    if extra:
        data[PROVENANCE_KEY] = {**extra, **{k: getattr(config, k) for k in MACHINE_KEYS}}
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    return path
