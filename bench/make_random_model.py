"""Build a random-init causal LM of a real architecture's shape, for speed and memory work on a GPU.

    python bench/make_random_model.py --shape llama-3.1-8b --tokenizer DIR --out /tmp/llama8b

The tokenizer (any chat tokenizer folder, e.g. the embedded SmolLM2's) is copied beside the weights.  The
model keeps its real vocabulary size (the embedding and LM head are a large share of the memory); generated
ids beyond the tokenizer's vocabulary decode to nothing.  A random model rarely emits EOS, so completions run
to full length, which is what a throughput benchmark wants.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

SHAPES = {
    "qwen2-0.5b": (
        "qwen2",
        dict(
            hidden_size=896,
            intermediate_size=4864,
            num_hidden_layers=24,
            num_attention_heads=14,
            num_key_value_heads=2,
            vocab_size=151936,
            tie_word_embeddings=True,
            rope_theta=1e6,
        ),
    ),
    "qwen2.5-1.5b": (
        "qwen2",
        dict(
            hidden_size=1536,
            intermediate_size=8960,
            num_hidden_layers=28,
            num_attention_heads=12,
            num_key_value_heads=2,
            vocab_size=151936,
            tie_word_embeddings=True,
            rope_theta=1e6,
        ),
    ),
    "llama-3.1-8b": (
        "llama",
        dict(
            hidden_size=4096,
            intermediate_size=14336,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=8,
            vocab_size=128256,
            tie_word_embeddings=False,
            rope_theta=5e5,
        ),
    ),
    "llama-3.1-70b": (
        "llama",
        dict(
            hidden_size=8192,
            intermediate_size=28672,
            num_hidden_layers=80,
            num_attention_heads=64,
            num_key_value_heads=8,
            vocab_size=128256,
            tie_word_embeddings=False,
            rope_theta=5e5,
        ),
    ),
    "tiny": (
        "llama",
        dict(
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=49152,
            tie_word_embeddings=True,
        ),
    ),
}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")


def build(shape: str, tokenizer_dir: Path, out: Path) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    model_type, dims = SHAPES[shape]
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = AutoConfig.for_model(
        model_type,
        max_position_embeddings=8192,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="bfloat16",
        **dims,
    )
    started = time.perf_counter()
    with torch.device("meta"):  # shapes only: a 70B model never exists whole, on the GPU or in memory
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    out.mkdir(parents=True, exist_ok=True)
    config.architectures = [type(model).__name__]  # save_pretrained of the model would write it; TRL reads it
    config.save_pretrained(out)
    params = write_random_weights(dict(model.named_parameters()), out, config.initializer_range)
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).is_file():
            shutil.copy(tokenizer_dir / name, out / name)
    print(f"{shape}: {params / 1e9:.2f}B parameters written to {out} in {time.perf_counter() - started:.0f} s")
    return out


def write_random_weights(shapes: dict, out: Path, std: float, shard_size: str = "5GB") -> int:
    """Safetensors shards of random bf16 weights for ``shapes`` (name -> meta tensor), one shard in memory at a
    time, split and indexed as ``save_pretrained`` does: normal(0, std) as transformers initialises linear and
    embedding weights, ones for the norms."""
    import json

    import torch
    from huggingface_hub import split_torch_state_dict_into_shards
    from safetensors.torch import save_file

    device = "cuda" if torch.cuda.is_available() else "cpu"
    split = split_torch_state_dict_into_shards(shapes, max_shard_size=shard_size)
    for filename, names in split.filename_to_tensors.items():
        shard = {}
        for name in names:
            tensor = torch.ones(shapes[name].shape, dtype=torch.bfloat16, device=device)
            if tensor.dim() > 1:
                tensor.normal_(0, std)
            shard[name] = tensor.cpu()
        save_file(shard, str(out / filename), metadata={"format": "pt"})
    if split.is_sharded:
        index = {"metadata": split.metadata, "weight_map": split.tensor_to_filename}
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return sum(meta.numel() for meta in shapes.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=SHAPES, required=True)
    parser.add_argument("--tokenizer", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    build(args.shape, args.tokenizer, args.out)


if __name__ == "__main__":
    main()
