"""The light half of the configuration: names, presets and JSON layers as plain dicts, and the import order.

Nothing here imports transformers, TRL or PEFT, so the command line can read its layers, decide the backend and
import Unsloth first (Unsloth patches those libraries only when it is imported before them), and only then
import ``config`` (which subclasses ``trl.GRPOConfig``).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

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

# This project's values for fields that trl.GRPOConfig declares: the lowest layer of every command-line run and of
# ``create_default_config``.  ``GRPOConfig(...)`` built directly in Python starts from TRL's own defaults instead.
PROJECT_DEFAULTS: dict[str, Any] = {
    "output_dir": "./grpo_outputs",
    "learning_rate": 5e-6,
    "num_train_epochs": 1.0,
    "per_device_train_batch_size": 4,
    "per_device_eval_batch_size": 4,
    "gradient_accumulation_steps": 2,
    "num_generations": 4,
    "max_completion_length": 256,
    "logging_steps": 1,
    "save_steps": 50,
    # Our reward functions read the dataset's chosen/rejected columns, so TRL must not drop them.
    "remove_unused_columns": False,
    # Every LoRA parameter takes part in each forward pass; the extra DDP graph traversal is waste.
    "ddp_find_unused_parameters": False,
    "log_completions": True,
    "num_completions_to_print": 2,
}


class ConfigError(ValueError):
    """A configuration value or key that cannot be used; the message names the key and the fix."""


def world_size() -> int:
    """Processes in this run (set by torchrun / accelerate launch)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


# ------------------------------------------------------------------------------------------------------------
# Import order
_unsloth_decision: list[bool] = []  # empty until decided once per process


def deepspeed_enabled() -> bool:
    """True under ``accelerate launch`` with a DeepSpeed config (DeepSpeed itself is imported only then)."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def fsdp_enabled() -> bool:
    """True under ``accelerate launch`` with an FSDP config (e.g. config/accelerate/fsdp2.yaml)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def sharded_launch() -> bool:
    """DeepSpeed or FSDP: the launcher places the weights, and 4-bit blocks must be stored shardable."""
    return deepspeed_enabled() or fsdp_enabled()


def launch_allows_unsloth(requested: str) -> bool:
    """One process: yes. Several: only under plain DDP and only when asked for by name, because transformers
    measured faster under DDP (docs/benchmarks.md) and Unsloth's models are not sharded by FSDP / DeepSpeed."""
    return world_size() == 1 or (requested == "unsloth" and not sharded_launch())


def unsloth_may_be_used(requested: str) -> bool:
    """Whether Unsloth can be the backend here: asked for (or auto), installed, allowed by the launch, and a CUDA
    GPU present."""
    if requested not in ("auto", "unsloth") or importlib.util.find_spec("unsloth") is None:
        return False
    if not launch_allows_unsloth(requested):
        return False
    import torch  # torch before Unsloth is fine; Unsloth must precede transformers, TRL and PEFT

    return torch.cuda.is_available()


def import_unsloth_first(requested: str = "auto") -> bool:
    """Import Unsloth now if it may be the backend; the first call in a process decides.

    The command line calls this with the backend it was given before anything imports transformers; library
    entry points (``import config``) call it with ``auto`` and then follow the earlier decision.  A script that
    wants the transformers backend on a machine where Unsloth could run calls
    ``import_unsloth_first("transformers")`` before it imports ``config`` or ``grpo_trainer``: once imported,
    Unsloth has patched TRL for its own models.
    """
    if not _unsloth_decision:
        use = unsloth_may_be_used(requested) and not unsloth_imported()
        if use:
            import unsloth  # noqa: F401
        _unsloth_decision.append(use or unsloth_imported())
    return _unsloth_decision[0]


def unsloth_imported() -> bool:
    """Whether Unsloth is loaded in this process (then TRL's trainer is Unsloth's patched one)."""
    return "unsloth" in sys.modules


# ------------------------------------------------------------------------------------------------------------
# The hub


def hub_offline() -> bool:
    """Whether HF_HUB_OFFLINE is set (the hub is not tried at all)."""
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() in ("1", "true", "yes", "on")


def fail_fast_hint() -> str:
    """The advice to set HF_HUB_OFFLINE, unless it is set (it was given to runs that had it: fault hunt)."""
    return "" if hub_offline() else " Set HF_HUB_OFFLINE=1 to fail fast offline."


# ------------------------------------------------------------------------------------------------------------
# JSON layers


def repeated(names: list[str]) -> list[str]:
    """The names that occur more than once in ``names``, sorted (each named once)."""
    return sorted({name for name in names if names.count(name) > 1})


class DuplicateKeyError(ValueError):
    """A JSON object names one key twice: which value was meant is unknown (``json`` keeps the last, silently)."""

    def __init__(self, key: str):
        super().__init__(f"key {key!r} appears twice in one object")
        self.key = key


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for ``json.loads`` that refuses a key given twice (a config with two learning_rate
    lines used the last one without a word, a data row with two "chosen" trained on one of them: fault hunt)."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise DuplicateKeyError(key)
        seen[key] = value
    return seen


def read_json_object(path: str | Path, what: str) -> dict[str, Any]:
    """Read a JSON object from ``path`` with errors that name the file and the line."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder; give the JSON file.")
    if not path.is_file():
        raise ConfigError(f"{what} file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"), object_pairs_hook=unique_keys)
    except DuplicateKeyError as err:
        raise ConfigError(f"{what} {path}: {err}; keep one of them.") from None
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{what} {path}: not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8."
        ) from None
    except json.JSONDecodeError as err:
        yaml = " (config files are JSON, not YAML)" if path.suffix in (".yaml", ".yml") else ""
        raise ConfigError(
            f"{what} {path}: invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}{yaml}"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path}: expected a JSON object {{...}}, got {type(data).__name__}.")
    return data


# PEFT task types of a GRPO policy's and a reward model's adapters
CAUSAL_LM, REWARD_MODEL_TASK = "CAUSAL_LM", "SEQ_CLS"


def read_adapter_config(folder: str | Path) -> dict[str, Any]:
    """A LoRA folder's ``adapter_config.json`` (base model, rank); {} when it is missing, unreadable or not a JSON
    object: its readers only name what it says, and fall back where it says nothing."""
    try:
        saved = json.loads((Path(folder) / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return saved if isinstance(saved, dict) else {}


# The PEFT task of each script's adapters -> (what such a folder holds, the script that makes it)
ADAPTER_TASKS = {
    CAUSAL_LM: ("a GRPO policy", "train_grpo.py"),
    REWARD_MODEL_TASK: ("a reward model", "train_reward_model.py"),
}


def foreign_adapter(folder: str | Path, task: str) -> tuple[str, str] | None:
    """(what it is, which script made it) when ``folder`` holds an adapter of our other script than the one whose
    adapters have PEFT task ``task``; None otherwise (its own kind, no adapter, or someone else's)."""
    theirs = read_adapter_config(folder).get("task_type")
    return ADAPTER_TASKS[theirs] if theirs in ADAPTER_TASKS and theirs != task else None


def load_preset(name: str) -> dict[str, Any]:
    """A preset's settings; the files it names (its reward config) are the project's, found wherever the command
    runs (``--production`` from another directory failed with "reward config file not found")."""
    values = read_json_object(PRESET_FILES[name], f"preset '{name}'")
    return {key: _project_file(value) if key != "output_dir" else value for key, value in values.items()}


def _project_file(value: Any) -> Any:
    """A path to a file of this project as an absolute path; any other value as it is."""
    if isinstance(value, str) and (CONFIG_DIR.parent / value).is_file():
        return str(CONFIG_DIR.parent / value)
    return value


def _alias_reward_function_type(value: Any) -> list[str]:
    if value not in REWARD_FUNCTION_TYPES:
        raise ConfigError(
            f"reward_function_type={value!r} is not valid; choose one of: {', '.join(REWARD_FUNCTION_TYPES)}."
        )
    return list(REWARD_FUNCTION_TYPES[value])


def _alias_gamma(value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isclose(value, 1.0):
        raise ConfigError(
            f"gamma={value!r}: GRPO rewards whole completions with no per-step discounting, so only gamma=1.0 is "
            "meaningful. Remove the key or set it to 1.0."
        )


# The seed's keys, each the other name of one real setting: alias -> (canonical key, value conversion).
# ``gamma`` has no setting behind it (None): it is checked and dropped.
ALIASES: dict[str, tuple[str | None, Any]] = {
    "group_size": ("num_generations", None),
    "custom_data": ("dataset_name", None),
    "reward_function_type": ("reward_functions", _alias_reward_function_type),
    "gamma": (None, _alias_gamma),
}


def resolve_aliases(values: dict[str, Any], source: str) -> dict[str, Any]:
    """``values`` with every alias replaced by its canonical key (``trl_args`` of older files flattened).

    Applied to each layer before layers are merged, so that precedence holds whichever name a layer uses.
    """
    values = dict(values)
    nested = values.pop("trl_args", None) or {}  # run_config.json files written before the TRL subclass
    if not isinstance(nested, dict):
        raise ConfigError(f"{source}: trl_args must be an object of trl.GRPOConfig fields.")
    values = {**nested, **values}
    for alias, (canonical, convert) in ALIASES.items():
        if alias not in values:
            continue
        try:
            value = convert(values.pop(alias)) if convert else values.pop(alias)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None
        if canonical is None:
            continue
        if canonical in values and values[canonical] != value:
            raise ConfigError(
                f"{source}: {alias}={value!r} and {canonical}={values[canonical]!r} name the same setting; keep one."
            )
        values[canonical] = value
    return values
