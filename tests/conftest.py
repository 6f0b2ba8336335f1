"""Shared fixtures: a tiny random-init chat model built in seconds, and an offline environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "What is 12 + 7? Answer with a number. The answer is 19.",
    "Summarize the following post in a few sentences. The capital of France is Paris.",
    "user assistant system 0 1 2 3 4 5 6 7 8 9 + - = ? . , ! hello world yes no correct",
]


def build_tiny_model(target: Path, hidden_size: int = 32) -> Path:
    """A 2-layer Llama with a byte-level BPE tokenizer of a few hundred tokens, saved to ``target``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|pad|>", "<|im_start|>", "<|im_end|>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(
        CORPUS,
        trainers.BpeTrainer(
            vocab_size=320, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<|pad|>", eos_token="<|im_end|>", bos_token="<|im_start|>"
    )
    fast.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=fast.pad_token_id,
        eos_token_id=fast.eos_token_id,
        bos_token_id=fast.bos_token_id,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(target)
    fast.save_pretrained(target)
    return target


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture()
def in_tmp_cwd(tmp_path, monkeypatch) -> Path:
    """Run in a fresh working directory (the CLI writes grpo_training.log there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def tiny_cli_args(
    model_dir: Path, out: Path, *extra: str, rewards=("length",), completion_length: int = 8, lora_rank: int = 4
) -> list[str]:
    """CLI arguments of a run of a few seconds on a tiny model: one prompt of 4 completions per step."""
    return [
        "--model",
        str(model_dir),
        "--dataset",
        "arithmetic",
        "--output-dir",
        str(out),
        "--no-wandb",
        "--reward-function",
        *rewards,
        "--batch-size",
        "4",
        "--num-generations",
        "4",
        "--gradient-accumulation-steps",
        "1",
        "--max-completion-length",
        str(completion_length),
        "--learning-rate",
        "0.01",
        "--lora-rank",
        str(lora_rank),
        *extra,
    ]


def run_train_grpo(args: list[str], cwd: Path, env: dict | None = None, launcher: tuple[str, ...] = ()):
    """``train_grpo.py`` in its own process (optionally under a launcher such as torchrun)."""
    command = [sys.executable, *launcher, str(ROOT / "train_grpo.py"), *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
