"""GPU memory: an estimate before loading, and an out-of-memory message with concrete settings to try.

The estimate adds up what a GRPO LoRA step keeps on the GPU: the base weights at their precision (4-bit
linear layers with bf16 embeddings and LM head, or bf16 throughout), the LoRA weights with their fp32
gradients and Adam moments, the KV cache of a generation batch, and the activations of the training
micro-batch (with gradient checkpointing: a hidden state per layer per token, plus one layer's working set).
It is meant to catch runs that cannot fit, not to predict the allocator to the last megabyte.

The same estimate chooses the generation batch (TRL's ``generation_batch_size``) when the user gave none:
decoding is launch-bound, so generating many completions at once costs little more per step than a few.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass

from config import GRPOConfig

logger = logging.getLogger(__name__)

GIB = 2**30
BYTES_4BIT = 0.5 + 0.03  # nf4 weights plus double-quantised block scales
ACTIVATION_FACTOR = 16  # bytes per token per hidden unit in one layer's forward/backward working set
SAMPLING_BYTES = 16  # per sequence per vocabulary entry while sampling: fp32 logits, softmax, top-p sort
# Largest generation round chosen automatically: completions per process, and optimizer steps that reuse one
# round (every step after the first is slightly off-policy; TRL corrects with the old log-probabilities).
# 128: on the 8B shape (H200, unsloth_decode's fixes) Unsloth trains at 2292 completion tok/s with 128 and
# 2961 with 256 for 1.7x the memory, and plain TRL gains 7x from 16 to 128 (docs/benchmarks.md, 2026-11-28).
GENERATION_BATCH_CAP = 128
MAX_STEPS_PER_GENERATION = 8
MEMORY_HEADROOM = 0.85  # share of the free memory the estimate may fill (CUDA context, fragmentation)
UNSLOTH_KV_BLOCK = 256  # rows Unsloth 2026.10.9 sizes its decoding KV buffers by (prompt + max_new_tokens, rounded up)


class ResourceError(RuntimeError):
    """The run does not fit the GPU; the message gives settings that would."""


@dataclass
class MemoryEstimate:
    weights: float
    lora_and_optimizer: float
    kv_cache: float
    activations: float
    sampling: float = 0.0
    rollout_logits: float = 0.0  # Unsloth: bf16 logits of the whole round's completions while it scores them

    @property
    def total(self) -> float:
        # the training step's activations and the rollout's logits are not held at the same time
        return self.weights + self.lora_and_optimizer + self.kv_cache + max(self.activations, self.rollout_logits)

    def describe(self) -> str:
        parts = ", ".join(f"{name.replace('_', ' ')} {value / GIB:.1f}" for name, value in vars(self).items())
        return f"{self.total / GIB:.1f} GiB ({parts})"


def estimate(
    config: GRPOConfig,
    model_config,
    four_bit: bool,
    generation_batch: int | None = None,
    shards: int = 1,
    unsloth: bool = False,
) -> MemoryEstimate:
    """Memory of a GRPO LoRA run of ``config`` on a model described by ``model_config`` (a transformers config),
    on one GPU.

    ``generation_batch``: completions this process generates at once (default: the configured generation batch,
    else the optimizer batch, TRL's default).  ``shards``: processes that the weights and the LoRA optimizer
    state are split over (FSDP, ZeRO-3); one layer is gathered whole at a time.  ``unsloth``: Unsloth keeps its
    decoding KV buffers (in blocks of ``UNSLOTH_KV_BLOCK`` rows), and its peaks grow by 0.12 GiB per completion
    of 256 tokens on the 8B shape (docs/benchmarks.md, the generation-batch sweep), twice what the KV cache alone
    would explain; the term for the rest is sized as the round's bf16 logits, a fit to those measurements (at 128
    completions Unsloth as it ships peaks inside generation: 21.66 GiB, against 19.95 GiB in scoring and training;
    with ``unsloth_decode``'s fixes both phases peak at 19.96 GiB and the fit is up to 11% above the measurements).
    """
    text = getattr(model_config, "text_config", model_config)
    hidden, layers, vocab = text.hidden_size, text.num_hidden_layers, text.vocab_size
    heads = text.num_attention_heads
    kv_heads = getattr(text, "num_key_value_heads", heads) or heads
    head_dim = getattr(text, "head_dim", None) or hidden // heads
    intermediate = getattr(text, "intermediate_size", 4 * hidden)
    per_layer = {
        "q_proj": (hidden, heads * head_dim),
        "k_proj": (hidden, kv_heads * head_dim),
        "v_proj": (hidden, kv_heads * head_dim),
        "o_proj": (heads * head_dim, hidden),
        "gate_proj": (hidden, intermediate),
        "up_proj": (hidden, intermediate),
        "down_proj": (intermediate, hidden),
    }
    linear = layers * sum(i * o for i, o in per_layer.values())
    embeddings = vocab * hidden * (1 if getattr(text, "tie_word_embeddings", False) else 2)
    weights = linear * (BYTES_4BIT if four_bit else 2) + embeddings * 2
    if shards > 1:
        weights = weights / shards + 2 * (linear / layers) * (BYTES_4BIT if four_bit else 2)  # two layers gathered
    lora_params = layers * sum(
        config.lora_rank * (i + o) for name, (i, o) in per_layer.items() if name in config.lora_target_modules
    )
    lora = lora_params * (2 + 4 + 8 + 4) / shards  # weights, fp32 grads, Adam moments, fp32 master copy
    sequence = config.max_seq_length  # prompt + completion tokens
    generation_batch = generation_batch or configured_generation_batch(config)
    kv_rows = math.ceil(sequence / UNSLOTH_KV_BLOCK) * UNSLOTH_KV_BLOCK if unsloth else sequence
    kv_cache = layers * 2 * kv_heads * head_dim * kv_rows * generation_batch * 2
    tokens = config.per_device_train_batch_size * sequence
    activations = tokens * hidden * 2 * layers + tokens * max(hidden, intermediate) * ACTIVATION_FACTOR
    sampling = generation_batch * vocab * SAMPLING_BYTES
    rollout_logits = generation_batch * config.max_completion_length * vocab * 2 if unsloth else 0
    return MemoryEstimate(weights, lora, kv_cache, activations, sampling, rollout_logits)


def configured_generation_batch(config, world_size: int = 1) -> int:
    """Completions one process generates at once: TRL's ``generation_batch_size`` or ``steps_per_generation``
    when set, else the optimizer batch (TRL's default)."""
    if config.generation_batch_size:
        return max(1, config.generation_batch_size // world_size)
    steps = config.steps_per_generation or config.gradient_accumulation_steps
    return config.per_device_train_batch_size * steps


def choose_generation_batch(
    config: GRPOConfig,
    model_config,
    four_bit: bool,
    free_bytes: int | None,
    world_size: int = 1,
    unsloth: bool = False,
) -> tuple[int, str]:
    """TRL's ``generation_batch_size`` (completions over all processes) for a run that gave none, and why.

    The largest multiple of the optimizer batch and of num_generations whose memory estimate (the KV cache
    and sampling buffers of the whole generation batch included) fits ``MEMORY_HEADROOM`` of ``free_bytes``,
    capped at ``GENERATION_BATCH_CAP`` completions per process and ``MAX_STEPS_PER_GENERATION`` optimizer
    steps per round. Without a memory figure (``free_bytes`` None: CPU) the smallest such multiple is kept (the
    optimizer batch, when it holds whole groups).
    """
    optimizer_batch = config.per_device_train_batch_size * world_size * config.gradient_accumulation_steps
    unit = math.lcm(optimizer_batch, config.num_generations)
    if free_bytes is None:
        return unit, f"generation batch {unit}: the smallest multiple of the optimizer batch that whole groups fill"
    cap = min(GENERATION_BATCH_CAP * world_size, optimizer_batch * MAX_STEPS_PER_GENERATION)
    budget = MEMORY_HEADROOM * free_bytes
    shards = sharding(world_size)
    chosen, needed = unit, estimate(config, model_config, four_bit, unit // world_size, shards, unsloth)
    for batch in range(2 * unit, cap + 1, unit):
        larger = estimate(config, model_config, four_bit, batch // world_size, shards, unsloth)
        if larger.total > budget:
            break
        chosen, needed = batch, larger
    if needed.total > budget:
        limit = f"even this needs {needed.total / GIB:.1f} GiB, over {budget / GIB:.1f} GiB"
    elif chosen + unit <= cap:
        limit = f"limited by memory: {needed.describe()} of {budget / GIB:.1f} GiB usable"
    else:
        limit = f"cap {cap} reached; estimate {needed.total / GIB:.1f} of {budget / GIB:.1f} GiB usable"
    steps = chosen // optimizer_batch
    return chosen, f"generation batch {chosen} completions ({steps} optimizer step(s) per generation round): {limit}"


def sharding(world_size: int) -> int:
    """Processes the weights are split over: all of them under FSDP or ZeRO-3, none under DDP or ZeRO-2."""
    from config_base import fsdp_enabled

    zero3 = os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3"  # set by accelerate launch
    return world_size if fsdp_enabled() or zero3 else 1


def _model_config(model_path: str):
    """The transformers config of ``model_path``, or None (logged) when it cannot be read."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(model_path)
    except (OSError, ValueError) as err:
        logger.info("memory estimate skipped: %s", err)
        return None


def _free_gpu_bytes() -> int | None:
    import torch

    return torch.cuda.mem_get_info()[0] if torch.cuda.is_available() else None


def generation_batch_for(config: GRPOConfig, model_path: str, four_bit: bool, world_size: int = 1) -> tuple[int, str]:
    """``choose_generation_batch`` for ``model_path`` with this process's free GPU memory (None on CPU)."""
    free = _free_gpu_bytes()
    model_config = _model_config(model_path) if free is not None else None
    if model_config is None:
        free = None  # no shape to estimate with: keep the optimizer batch
    return choose_generation_batch(config, model_config, four_bit, free, world_size, _uses_unsloth(config))


def _uses_unsloth(config) -> bool:
    from models import resolve_backend

    return resolve_backend(config.backend) == "unsloth"


def check_fits(config: GRPOConfig, model_path: str, four_bit: bool, world_size: int = 1) -> MemoryEstimate | None:
    """Warn, with a suggestion, when the estimate exceeds the free memory of this process's GPU."""
    import torch

    if not torch.cuda.is_available():
        return None
    model_config = _model_config(model_path)
    if model_config is None:
        return None
    batch = configured_generation_batch(config, world_size)
    needed = estimate(config, model_config, four_bit, batch, sharding(world_size), _uses_unsloth(config))
    free, total = torch.cuda.mem_get_info()
    logger.info("estimated GPU memory: %s; free %.1f of %.1f GiB", needed.describe(), free / GIB, total / GIB)
    if needed.total > free:
        logger.warning("this run will probably not fit: %s", suggestion(config, four_bit))
    return needed


def suggestion(config: GRPOConfig, four_bit: bool) -> str:
    """Concrete settings with the same global batch but less memory per step."""
    batch, accumulation = config.per_device_train_batch_size, config.gradient_accumulation_steps
    tips = []
    if batch >= 2 * config.num_generations or (batch > 1 and batch % 2 == 0):
        tips.append(
            f"--batch-size {batch // 2} with gradient_accumulation_steps {accumulation * 2} (same global batch)"
        )
    if not four_bit:
        tips.append('"load_in_4bit": true (about a quarter of the weight memory)')
    tips.append(f"--max-completion-length {max(32, config.max_completion_length // 2)}")
    tips.append(f"a smaller max_seq_length than {config.max_seq_length}")
    return "try " + "; or ".join(tips)


def out_of_memory_error(config: GRPOConfig, four_bit: bool, last_checkpoint: str | None) -> ResourceError:
    where = (
        f"The last checkpoint is {last_checkpoint}; after changing settings, continue from it with "
        "--resume-from-checkpoint latest."
        if last_checkpoint
        else "No checkpoint was saved yet."
    )
    return ResourceError(
        f"CUDA out of memory at per_device_train_batch_size {config.per_device_train_batch_size}, "
        f"gradient_accumulation_steps {config.gradient_accumulation_steps}, load_in_4bit {four_bit}, "
        f"max_completion_length {config.max_completion_length}: {suggestion(config, four_bit)}. {where}"
    )
