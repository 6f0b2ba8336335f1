"""Memory estimate and the out-of-memory advice (pure arithmetic, no GPU)."""

from __future__ import annotations

import sys
from types import SimpleNamespace

from config import GRPOConfig
from conftest import ROOT
from memory import GIB, estimate, out_of_memory_error, suggestion

sys.path.insert(0, str(ROOT / "bench"))
from make_random_model import SHAPES

LLAMA_8B = SimpleNamespace(**SHAPES["llama-3.1-8b"][1])  # the shape the GPU benchmark builds


def test_weights_of_an_8b_model():
    config = GRPOConfig(
        max_seq_length=512,
        max_completion_length=256,
        per_device_train_batch_size=16,
        gradient_accumulation_steps=1,
        group_size=8,
    )
    bf16, four_bit = estimate(config, LLAMA_8B, four_bit=False), estimate(config, LLAMA_8B, four_bit=True)
    assert 14.5 < bf16.weights / GIB < 15.5  # 8.03B parameters in bf16
    assert 5.0 < four_bit.weights / GIB < 6.0  # 4-bit linear layers, bf16 embedding and LM head
    assert four_bit.total < bf16.total
    assert four_bit.lora_and_optimizer == bf16.lora_and_optimizer > 0


def test_memory_grows_with_the_batch():
    small = estimate(GRPOConfig(per_device_train_batch_size=4), LLAMA_8B, four_bit=True)
    large = estimate(GRPOConfig(per_device_train_batch_size=16), LLAMA_8B, four_bit=True)
    assert large.activations > small.activations and large.kv_cache > small.kv_cache


def test_suggestion_keeps_the_global_batch():
    config = GRPOConfig(per_device_train_batch_size=8, gradient_accumulation_steps=2, group_size=4)
    text = suggestion(config, four_bit=False)
    assert "--batch-size 4 with gradient_accumulation_steps 4" in text and '"load_in_4bit": true' in text


def test_out_of_memory_message_names_the_checkpoint():
    message = str(out_of_memory_error(GRPOConfig(), four_bit=True, last_checkpoint="run/checkpoint-50"))
    assert "per_device_train_batch_size 4" in message and "run/checkpoint-50" in message
    assert "--resume-from-checkpoint latest" in message
    assert "No checkpoint" in str(out_of_memory_error(GRPOConfig(), four_bit=True, last_checkpoint=None))
