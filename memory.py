"""GPU memory: an estimate before loading, and an out-of-memory message with concrete settings to try.

The estimate adds up what a GRPO LoRA step keeps on the GPU: the base weights at their precision (4-bit
linear layers with bf16 embeddings and LM head, or bf16 throughout), the LoRA weights with their fp32
gradients and Adam moments, the KV cache of a generation batch, and the activations of the training
micro-batch (with gradient checkpointing: a hidden state per layer per token, plus one layer's working set).
It is meant to catch runs that cannot fit, not to predict the allocator to the last megabyte.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from config import GRPOConfig

logger = logging.getLogger(__name__)

GIB = 2**30
BYTES_4BIT = 0.5 + 0.03  # nf4 weights plus double-quantised block scales
ACTIVATION_FACTOR = 16  # bytes per token per hidden unit in one layer's forward/backward working set


class ResourceError(RuntimeError):
    """The run does not fit the GPU; the message gives settings that would."""


@dataclass
class MemoryEstimate:
    weights: float
    lora_and_optimizer: float
    kv_cache: float
    activations: float

    @property
    def total(self) -> float:
        return self.weights + self.lora_and_optimizer + self.kv_cache + self.activations

    def describe(self) -> str:
        parts = ", ".join(f"{name.replace('_', ' ')} {value / GIB:.1f}" for name, value in vars(self).items())
        return f"{self.total / GIB:.1f} GiB ({parts})"


def estimate(config: GRPOConfig, model_config, four_bit: bool) -> MemoryEstimate:
    """Memory of a GRPO LoRA run of ``config`` on a model described by ``model_config`` (a transformers config)."""
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
    lora_params = layers * sum(
        config.lora_rank * (i + o) for name, (i, o) in per_layer.items() if name in config.lora_target_modules
    )
    lora = lora_params * (2 + 4 + 8 + 4)  # weights, fp32 grads, Adam moments, fp32 master copy
    sequence = config.max_seq_length
    generation_batch = config.per_device_train_batch_size * config.gradient_accumulation_steps
    kv_cache = 2 * layers * kv_heads * head_dim * sequence * generation_batch * 2
    tokens = config.per_device_train_batch_size * sequence
    activations = tokens * hidden * 2 * layers + tokens * max(hidden, intermediate) * ACTIVATION_FACTOR
    return MemoryEstimate(weights, lora, kv_cache, activations)


def check_fits(config: GRPOConfig, model_path: str, four_bit: bool) -> MemoryEstimate | None:
    """Warn, with a suggestion, when the estimate exceeds the free memory of this process's GPU."""
    import torch
    from transformers import AutoConfig

    if not torch.cuda.is_available():
        return None
    try:
        model_config = AutoConfig.from_pretrained(model_path)
    except (OSError, ValueError) as err:
        logger.info("memory estimate skipped: %s", err)
        return None
    needed = estimate(config, model_config, four_bit)
    free, total = torch.cuda.mem_get_info()
    logger.info("estimated GPU memory: %s; free %.1f of %.1f GiB", needed.describe(), free / GIB, total / GIB)
    if needed.total > free:
        logger.warning("this run will probably not fit: %s", suggestion(config, four_bit))
    return needed


def suggestion(config: GRPOConfig, four_bit: bool) -> str:
    """Concrete settings with the same global batch but less memory per step."""
    batch, accumulation = config.per_device_train_batch_size, config.gradient_accumulation_steps
    tips = []
    if batch >= 2 * config.group_size or (batch > 1 and batch % 2 == 0):
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
