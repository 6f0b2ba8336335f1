"""Reward models as GRPO rewards: a sequence-classification model scores prompt + completion.

    reward = get_reward_model_reward("grpo_outputs/reward_model")   # a folder from train_reward_model.py
    GRPOTrainer(config, reward_functions=[reward], reward_weights=[1.0])

A reward model is a sequence classifier with one output (``num_labels=1``): a full model folder or hub id
(``...ForSequenceClassification``), or a PEFT adapter folder of task type ``SEQ_CLS`` whose classifier head
was saved with it (``modules_to_save``), as ``train_reward_model.py`` writes.  The conversation (prompt
messages + the completion as the assistant turn) is rendered with the reward model's own tokenizer and chat
template, exactly as TRL's ``RewardTrainer`` renders its training pairs, so that scores mean what training
taught.  Scoring runs batched, in eval mode and without gradients; each model is loaded once per process.

Only the standard library is imported at module level: ``train_grpo.py`` must be able to import this module
before Unsloth patches transformers.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models import ModelError, resolve_model_path

logger = logging.getLogger(__name__)

REWARD_FUNCTION_NAME = "reward_model_reward"
INFO_FILE = "reward_model.json"  # written by train_reward_model.py next to the adapter
DEFAULT_MAX_LENGTH = 1024  # TRL RewardConfig.max_length's default
CLASSIFIER_TASK = "SEQ_CLS"
HEAD_NAMES = ("score", "classifier")  # names of the classifier head in transformers' sequence classifiers
FIX = "give a folder written by train_reward_model.py, or a sequence-classification model with one label"

Messages = list[dict[str, str]]


# --------------------------------------------------------------------------------------------------
# Conversations


def as_messages(prompt: Any) -> Messages:
    """A prompt as chat messages: a conversation as is, a plain string as one user turn, None as none."""
    if prompt is None:
        return []
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return list(prompt)


def conversation(prompt: Any, completion: Any) -> Messages:
    """Prompt messages followed by the completion as the assistant turn (TRL's explicit-prompt pairs)."""
    reply = [{"role": "assistant", "content": completion}] if isinstance(completion, str) else list(completion)
    return as_messages(prompt) + reply


# --------------------------------------------------------------------------------------------------
# Scoring


@dataclass
class RewardModel:
    """A loaded sequence classifier with its tokenizer; ``score`` turns conversations into floats."""

    model: Any
    tokenizer: Any
    max_length: int = DEFAULT_MAX_LENGTH

    def token_ids(self, messages: Messages) -> list[int]:
        """The conversation through the chat template; over-long ones keep their end, where the score is read."""
        ids = self.tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
        return ids[-self.max_length :]

    def score(self, conversations: list[Messages], batch_size: int = 16) -> list[float]:
        """One score per conversation, in batches of ``batch_size``, without gradients."""
        import torch

        was_training = self.model.training
        self.model.eval()
        scores: list[float] = []
        try:
            with torch.inference_mode():
                for start in range(0, len(conversations), batch_size):
                    batch = self._padded([self.token_ids(c) for c in conversations[start : start + batch_size]])
                    logits = self.model(**batch).logits
                    scores.extend(logits[:, 0].float().tolist())
        finally:
            self.model.train(was_training)
        return scores

    def _padded(self, sequences: list[list[int]]) -> dict[str, Any]:
        """Right padding as TRL's preference collator does (the classifier reads the last non-pad token)."""
        import torch

        width = max(len(ids) for ids in sequences)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(sequences), width), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, ids in enumerate(sequences):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention_mask[row, : len(ids)] = 1
        device = self.model.device
        return {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device)}


def pairwise_accuracy(chosen: list[float], rejected: list[float]) -> dict[str, float]:
    """How often chosen scores strictly above rejected, with the binomial standard error, ties and margin."""
    n = len(chosen)
    if n == 0:
        return {"accuracy": math.nan, "stderr": math.nan, "ties": math.nan, "mean_margin": math.nan, "n": 0}
    accuracy = sum(c > r for c, r in zip(chosen, rejected)) / n
    return {
        "accuracy": accuracy,
        "stderr": math.sqrt(accuracy * (1 - accuracy) / n),
        "ties": sum(c == r for c, r in zip(chosen, rejected)) / n,
        "mean_margin": sum(c - r for c, r in zip(chosen, rejected)) / n,
        "n": n,
    }


def score_pairs(reward_model: RewardModel, pairs, batch_size: int = 16) -> tuple[list[float], list[float]]:
    """Scores of the ``chosen`` and of the ``rejected`` answers of rows with a ``prompt``, in row order."""
    prompts = list(pairs["prompt"])
    chosen = reward_model.score([conversation(p, c) for p, c in zip(prompts, pairs["chosen"])], batch_size)
    rejected = reward_model.score([conversation(p, r) for p, r in zip(prompts, pairs["rejected"])], batch_size)
    return chosen, rejected


# --------------------------------------------------------------------------------------------------
# Loading


def default_device() -> str:
    """This process's GPU (``LOCAL_RANK`` under a launcher) when CUDA is there, else the CPU."""
    import torch

    return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if torch.cuda.is_available() else "cpu"


def _dtype(device: str):
    import torch

    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def _local_folder(path_or_id: str) -> Path | None:
    """The folder ``path_or_id`` names, None for a hub id; a path that does not exist is an error."""
    folder = Path(path_or_id).expanduser()
    if folder.is_dir():
        return folder
    if path_or_id.startswith((".", "/", "~")) or folder.exists():
        raise ModelError(f"reward model {path_or_id}: no such folder; {FIX} (--reward-model PATH).")
    return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ModelError(f"reward model: cannot read {path} ({err}); re-save the folder.") from None


def _check_adapter(folder: Path, adapter_config: dict[str, Any]) -> None:
    """A classifier adapter: task type SEQ_CLS and a saved head (else the head would be random)."""
    task = adapter_config.get("task_type")
    if task != CLASSIFIER_TASK:
        raise ModelError(
            f"reward model {folder}: the adapter there is a {task} adapter (a GRPO or SFT run?), not a classifier "
            f"({CLASSIFIER_TASK}); {FIX}."
        )
    heads = set(adapter_config.get("modules_to_save") or ())
    if not heads & set(HEAD_NAMES):
        raise ModelError(
            f"reward model {folder}: the adapter was saved without its classifier head (modules_to_save has none "
            f"of {', '.join(HEAD_NAMES)}), so its scores would be random; retrain with modules_to_save=['score']."
        )


def _check_classifier(name: str, model_config) -> None:
    architectures = model_config.architectures or []
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise ModelError(
            f"reward model {name}: it is a {', '.join(architectures) or 'model of unknown architecture'}, not a "
            f"sequence classifier; {FIX}, or train one: python train_reward_model.py --model {name}."
        )
    if model_config.num_labels != 1:
        raise ModelError(
            f"reward model {name}: the classifier has {model_config.num_labels} labels, a reward model gives one "
            f"score (num_labels=1); {FIX}."
        )


def from_pretrained_classifier(name: str, what: str, **kwargs):
    """``AutoModelForSequenceClassification.from_pretrained`` with load errors as one ModelError line.

    A causal LM loaded as a classifier gets a new ``score`` head (trained, or loaded from an adapter, next);
    TRL's context keeps transformers from reporting it as missing.
    """
    from transformers import AutoModelForSequenceClassification
    from trl.trainer.reward_trainer import suppress_seqcls_warning

    try:
        with suppress_seqcls_warning():
            return AutoModelForSequenceClassification.from_pretrained(name, **kwargs)
    except OSError as err:
        raise ModelError(
            f"reward model {what}: {name} could not be loaded ({str(err).splitlines()[0]}); offline or not "
            "cached? Download it where the hub is reachable and pass the folder."
        ) from None


def _base_model_name(folder: Path, adapter_config: dict[str, Any]) -> str:
    """The adapter's base model: the short name recorded by train_reward_model.py, else PEFT's path."""
    info = folder / INFO_FILE
    if info.is_file():
        return resolve_model_path(_read_json(info)["base_model"])
    return adapter_config["base_model_name_or_path"]


def _load_model(name: str, folder: Path | None, device: str):
    """The classifier for a hub id, a full folder or an adapter folder (merged into its base)."""
    if folder is not None and (folder / "adapter_config.json").is_file():
        from peft import PeftModel

        adapter_config = _read_json(folder / "adapter_config.json")
        _check_adapter(folder, adapter_config)
        base_name = _base_model_name(folder, adapter_config)
        base = from_pretrained_classifier(base_name, str(folder), num_labels=1, dtype=_dtype(device))
        return PeftModel.from_pretrained(base, str(folder)).merge_and_unload(), base_name
    if folder is not None and not (folder / "config.json").is_file():
        raise ModelError(f"reward model {folder}: no config.json or adapter_config.json in the folder; {FIX}.")
    from transformers import AutoConfig

    try:
        model_config = AutoConfig.from_pretrained(name)
    except OSError as err:
        raise ModelError(f"reward model {name}: not found ({str(err).splitlines()[0]}); {FIX}.") from None
    _check_classifier(name, model_config)
    return from_pretrained_classifier(name, name, dtype=_dtype(device)), name


def _load_tokenizer(name: str, folder: Path | None, base_name: str):
    """The folder's own tokenizer (else the base model's), which must have a chat template."""
    from transformers import AutoTokenizer

    source = str(folder) if folder is not None and (folder / "tokenizer_config.json").is_file() else base_name
    tokenizer = AutoTokenizer.from_pretrained(source)
    if not tokenizer.chat_template:
        raise ModelError(
            f"reward model {name}: its tokenizer ({source}) has no chat template, so prompt + completion cannot be "
            "rendered as the conversation it scores; save a tokenizer with a chat_template into the folder, or "
            "train the reward model from an instruct model."
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


@functools.cache
def load_scoring_model(path_or_id: str, device: str) -> tuple[Any, Any]:
    """The classifier and its tokenizer for ``path_or_id`` on ``device``, loaded once per process and device."""
    folder = _local_folder(path_or_id)
    name = str(folder) if folder is not None else path_or_id
    model, base_name = _load_model(name, folder, device)
    tokenizer = _load_tokenizer(name, folder, base_name)
    model.config.pad_token_id = tokenizer.pad_token_id  # the classifier finds each sequence's end by it
    model.to(device).eval()
    logger.info("reward model %s loaded on %s", name, device)
    return model, tokenizer


def load_reward_model(path_or_id: str, device: str, max_length: int = DEFAULT_MAX_LENGTH) -> RewardModel:
    """The reward model ``path_or_id`` ready to score on ``device`` (see ``load_scoring_model``)."""
    model, tokenizer = load_scoring_model(str(path_or_id), device)
    return RewardModel(model, tokenizer, max_length)


def get_reward_model_reward(
    path_or_id: str | Path, *, device: str | None = None, batch_size: int = 16, max_length: int = DEFAULT_MAX_LENGTH
):
    """A TRL reward function ``reward_model_reward(completions, prompts=None, **kwargs)`` backed by a reward model.

    The model is loaded now, so that a wrong path fails before training starts.  ``prompts`` are TRL's; the
    ``prompt`` column (as ``--reward-preview`` passes dataset columns) is used when ``prompts`` is absent.
    """
    reward_model = load_reward_model(str(path_or_id), device or default_device(), max_length)

    def reward_model_reward(completions: list, prompts: list | None = None, **kwargs: Any) -> list[float]:
        prompts = prompts if prompts is not None else kwargs.get("prompt") or [None] * len(completions)
        conversations = [conversation(p, c) for p, c in zip(prompts, completions)]
        return reward_model.score(conversations, batch_size)

    reward_model_reward.__name__ = reward_model_reward.__qualname__ = REWARD_FUNCTION_NAME
    return reward_model_reward
