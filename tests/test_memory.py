"""Memory estimate and the out-of-memory advice (pure arithmetic, no GPU)."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from config import build_config
from conftest import ROOT
from memory import (
    GENERATION_BATCH_CAP,
    GIB,
    MAX_STEPS_PER_GENERATION,
    MEMORY_HEADROOM,
    choose_generation_batch,
    configured_generation_batch,
    estimate,
    out_of_memory_error,
    suggestion,
)

sys.path.insert(0, str(ROOT / "bench"))
from make_random_model import SHAPES

LLAMA_8B = SimpleNamespace(**SHAPES["llama-3.1-8b"][1])  # the shape the GPU benchmark builds


def test_weights_of_an_8b_model():
    config = project_config(
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


def project_config(**values):
    """A config with this project's defaults under ``values``, as the command line builds it."""
    return build_config(overrides=values)


def test_memory_grows_with_the_batch():
    small = estimate(project_config(per_device_train_batch_size=4), LLAMA_8B, four_bit=True)
    large = estimate(project_config(per_device_train_batch_size=16), LLAMA_8B, four_bit=True)
    assert large.activations > small.activations and large.kv_cache > small.kv_cache


def test_suggestion_keeps_the_global_batch():
    config = project_config(per_device_train_batch_size=8, gradient_accumulation_steps=2, group_size=4)
    text = suggestion(config, four_bit=False)
    assert "--batch-size 4 with gradient_accumulation_steps 4" in text and '"load_in_4bit": true' in text


def test_out_of_memory_message_names_the_checkpoint():
    message = str(out_of_memory_error(project_config(), four_bit=True, last_checkpoint="run/checkpoint-50"))
    assert "per_device_train_batch_size 4" in message and "run/checkpoint-50" in message
    assert "--resume-from-checkpoint latest" in message
    assert "No checkpoint" in str(out_of_memory_error(project_config(), four_bit=True, last_checkpoint=None))


BENCH_RUN = dict(max_seq_length=512, max_completion_length=256, per_device_train_batch_size=16, group_size=8)


def test_generation_batch_keeps_the_optimizer_batch_without_a_gpu():
    config = project_config(gradient_accumulation_steps=2, **BENCH_RUN)
    assert choose_generation_batch(config, LLAMA_8B, four_bit=True, free_bytes=None) == (
        32,
        "generation batch 32: the smallest multiple of the optimizer batch that whole groups fill",
    )
    config = project_config(per_device_train_batch_size=1, gradient_accumulation_steps=2)  # groups of 4
    assert choose_generation_batch(config, LLAMA_8B, four_bit=True, free_bytes=None)[0] == 4


def test_generation_batch_grows_to_the_cap_when_memory_allows():
    config = project_config(gradient_accumulation_steps=1, **BENCH_RUN)
    batch, reason = choose_generation_batch(config, LLAMA_8B, four_bit=True, free_bytes=80 * GIB)
    assert batch == 16 * MAX_STEPS_PER_GENERATION and "cap" in reason
    assert batch % 8 == 0 and batch % 16 == 0


def test_generation_batch_is_limited_by_the_kv_cache():
    config = project_config(
        max_seq_length=2048, max_completion_length=512, per_device_train_batch_size=8, gradient_accumulation_steps=4
    )
    batch, reason = choose_generation_batch(config, LLAMA_8B, four_bit=True, free_bytes=40 * GIB)
    assert 32 < batch < 32 * MAX_STEPS_PER_GENERATION and batch % 32 == 0 and "limited by memory" in reason
    assert estimate(config, LLAMA_8B, True, generation_batch=batch).total <= 40 * GIB
    assert estimate(config, LLAMA_8B, True, generation_batch=batch + 32).total > MEMORY_HEADROOM * 40 * GIB


# Peak GPU memory of the Unsloth 4-bit rows, Llama-3.1-8B shape, by completions generated at once (docs/benchmarks.md):
# prompts about 60 tokens + 256 generated. Unsloth as it ships ("Unsloth 4-bit, sweep of the generation batch", H100),
# and with unsloth_decode's fixes ("Generation batch with the fixes", H200), both 2026-11-28.
UNSLOTH_SWEEP_GIB = [
    *[("shipped", batch, gib) for batch, gib in {16: 7.81, 32: 9.79, 64: 13.68, 128: 21.68, 256: 36.85}.items()],
    *[("decode fixes", batch, gib) for batch, gib in {64: 13.06, 128: 19.96, 256: 33.93}.items()],
]


@pytest.mark.parametrize(("decoding", "batch", "measured"), UNSLOTH_SWEEP_GIB)
def test_unsloth_estimate_covers_the_measured_peaks(decoding, batch, measured):
    """Unsloth's decoding buffers and its scoring of the whole round grow 0.12 GiB per completion: the plain
    estimate said 13.4 GiB where 21.7 was measured at 128, enough to choose a round that does not fit a 24 GB GPU."""
    config = project_config(**{**BENCH_RUN, "max_seq_length": 316})
    needed = estimate(config, LLAMA_8B, True, generation_batch=batch, unsloth=True).total / GIB
    assert measured <= needed <= 1.25 * measured
    assert estimate(config, LLAMA_8B, True, generation_batch=batch).total / GIB < needed


def test_generation_batch_falls_back_to_the_smallest_when_nothing_fits():
    config = project_config(gradient_accumulation_steps=1, **BENCH_RUN)
    batch, reason = choose_generation_batch(config, LLAMA_8B, four_bit=False, free_bytes=8 * GIB)
    assert batch == 16 and "even this needs" in reason


def test_generation_batch_counts_all_processes_and_whole_groups():
    # steps_per_generation 3 only makes the config valid in this one process (4 x 3 = 12 completions, two groups)
    config = project_config(
        max_seq_length=512,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=1,
        group_size=6,
        steps_per_generation=3,
    )
    batch, _ = choose_generation_batch(config, LLAMA_8B, four_bit=True, free_bytes=80 * GIB, world_size=2)
    assert batch % 6 == 0 and batch % 8 == 0
    assert batch // 2 <= GENERATION_BATCH_CAP and batch <= 8 * MAX_STEPS_PER_GENERATION


def test_configured_generation_batch():
    run = dict(per_device_train_batch_size=8, gradient_accumulation_steps=2)
    unset = dict(generation_batch_size=None, steps_per_generation=None)
    assert configured_generation_batch(SimpleNamespace(**unset, **run)) == 16  # TRL's default: the optimizer batch
    given = SimpleNamespace(generation_batch_size=128, steps_per_generation=None, **run)
    assert configured_generation_batch(given, world_size=2) == 64
    steps = SimpleNamespace(generation_batch_size=None, steps_per_generation=4, **run)
    assert configured_generation_batch(steps) == 32
    built = project_config(per_device_train_batch_size=8, gradient_accumulation_steps=2, steps_per_generation=4)
    assert configured_generation_batch(built) == 32  # TRL fills generation_batch_size in from the steps


def test_sharded_weights_are_split_over_the_processes():
    """The Llama-3.1-70B shape in bf16 (131 GiB) does not fit one 80 GB GPU; over 4 GPUs with FSDP / ZeRO-3 each
    holds a quarter plus the two layers gathered whole at a time."""
    llama_70b = SimpleNamespace(**SHAPES["llama-3.1-70b"][1])
    config = project_config(max_seq_length=256, max_completion_length=32, per_device_train_batch_size=4, lora_rank=8)
    whole = estimate(config, llama_70b, four_bit=False, generation_batch=4)
    sharded = estimate(config, llama_70b, four_bit=False, generation_batch=4, shards=4)
    assert 130 < whole.weights / GIB < 133
    assert 34 < sharded.weights / GIB < 37
    assert sharded.lora_and_optimizer == pytest.approx(whole.lora_and_optimizer / 4)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, 1),
        ({"ACCELERATE_USE_FSDP": "true"}, 4),
        ({"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"}, 4),
        ({"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "2"}, 1),  # weights whole
    ],
)
def test_which_launches_shard_the_weights(monkeypatch, env, expected):
    from memory import sharding

    for name in ("ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED", "ACCELERATE_DEEPSPEED_ZERO_STAGE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert sharding(4) == expected
