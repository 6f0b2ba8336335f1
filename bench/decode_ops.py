"""Time the operations of one decode step on their own, at the Llama-3.1-8B shape, to explain a profile.

    python bench/decode_ops.py --out $OUT/decode_ops.jsonl     (on a GPU)

The Unsloth decode profile at 128 sequences (docs/benchmarks.md) spends 31 ms per step in one GEMM launched
once per step and 37% of the step in attention's math fallback. This script times, per batch size, the
candidates in isolation: the LM head (and equivalent ways to compute it), one MLP projection, and the decode
attention over a padded KV cache by the paths PyTorch's SDPA offers. Each line: the operation, batch, mean
milliseconds over ``--repeats`` after warm-up, the kernel the profiler saw take most of the time, and the rate
(TFLOP/s or the bytes read per second) against the GPU's datasheet figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

HIDDEN, VOCAB, INTERMEDIATE = 4096, 128256, 14336
HEADS, KV_HEADS, HEAD_DIM = 32, 8, 128


def timed(fn, repeats: int) -> tuple[float, str]:
    """Mean milliseconds of ``fn`` (CUDA events) and the name of the kernel that took most of its GPU time."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        fn()
    end.record()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    kernels = [e for e in prof.key_averages() if getattr(e, "self_device_time_total", 0) > 0]
    top = max(kernels, key=lambda e: e.self_device_time_total).key if kernels else "?"
    return start.elapsed_time(end) / repeats, top[:90]


def lm_head_variants(batch: int):
    """Equal products: logits of ``batch`` decode positions, as F.linear on [B, 1, H] (what the models call),
    on [B, H], and as the transposed product."""
    import torch
    import torch.nn.functional as F

    weight = torch.randn(VOCAB, HIDDEN, device="cuda", dtype=torch.bfloat16) * 0.02
    hidden = torch.randn(batch, 1, HIDDEN, device="cuda", dtype=torch.bfloat16)
    flat = hidden.view(batch, HIDDEN)
    flops = 2 * batch * HIDDEN * VOCAB
    return flops, {
        "lm_head F.linear [B,1,H]": lambda: F.linear(hidden, weight),
        "lm_head F.linear [B,H]": lambda: F.linear(flat, weight),
        "lm_head (W @ h^T)^T": lambda: (weight @ flat.t()).t(),
        "lm_head F.linear [B,H] fp32 out": lambda: F.linear(flat, weight).float(),
    }


def mlp_variants(batch: int):
    import torch
    import torch.nn.functional as F

    weight = torch.randn(INTERMEDIATE, HIDDEN, device="cuda", dtype=torch.bfloat16) * 0.02
    hidden = torch.randn(batch, 1, HIDDEN, device="cuda", dtype=torch.bfloat16)
    return 2 * batch * HIDDEN * INTERMEDIATE, {"gate_proj F.linear [B,1,H]": lambda: F.linear(hidden, weight)}


def attention_variants(batch: int, kv_len: int):
    """One decode token's attention over a [kv_len, B, kv_heads, D] cache (Unsloth's layout, permuted), with a
    padding mask, by SDPA with GQA (what the 128-sequence profile ran: the math fallback), by SDPA on
    expanded heads, and without a mask (flash; what an unpadded batch gets)."""
    import torch
    import torch.nn.functional as F

    cache_k = torch.randn(kv_len, batch, KV_HEADS, HEAD_DIM, device="cuda", dtype=torch.bfloat16)
    cache_v = torch.randn_like(cache_k)
    query = torch.randn(batch, HEADS, 1, HEAD_DIM, device="cuda", dtype=torch.bfloat16)
    # Unsloth's query: a [B, 1, heads, D] projection viewed and transposed, so not contiguous
    query_view = torch.randn(batch, 1, HEADS, HEAD_DIM, device="cuda", dtype=torch.bfloat16).transpose(1, 2)
    keys, values = cache_k.permute(1, 2, 0, 3), cache_v.permute(1, 2, 0, 3)
    mask = torch.ones(batch, 1, 1, kv_len, device="cuda", dtype=torch.bool)
    mask[: batch // 2, ..., :20] = False  # left padding on half the rows
    groups = HEADS // KV_HEADS

    def expanded(t):
        return t[:, :, None].expand(batch, KV_HEADS, groups, kv_len, HEAD_DIM).reshape(batch, HEADS, kv_len, HEAD_DIM)

    return 4 * batch * HEADS * kv_len * HEAD_DIM, {
        f"attention L={kv_len} sdpa gqa + mask": lambda: F.scaled_dot_product_attention(
            query, keys, values, attn_mask=mask, enable_gqa=True
        ),
        f"attention L={kv_len} sdpa expanded + mask": lambda: F.scaled_dot_product_attention(
            query, expanded(keys), expanded(values), attn_mask=mask
        ),
        f"attention L={kv_len} sdpa gqa, no mask": lambda: F.scaled_dot_product_attention(
            query, keys, values, enable_gqa=True
        ),
        f"attention L={kv_len} sdpa gqa + mask, transposed query": lambda: F.scaled_dot_product_attention(
            query_view, keys, values, attn_mask=mask, enable_gqa=True
        ),
        f"attention L={kv_len} sdpa gqa + float mask": lambda: F.scaled_dot_product_attention(
            query, keys, values, attn_mask=torch.zeros(mask.shape, device="cuda", dtype=torch.bfloat16), enable_gqa=True
        ),
        f"attention L={kv_len} sdpa gqa contiguous + mask": lambda: F.scaled_dot_product_attention(
            query, keys.contiguous(), values.contiguous(), attn_mask=mask, enable_gqa=True
        ),
        **groups_as_rows_variants(query_view, keys, values, mask, kv_len),
    }


def groups_as_rows_variants(query, keys, values, mask, kv_len: int):
    """Unsloth's decode attention as it runs on sm90 (cuDNN kept out, so GQA + mask is the math kernel) against
    ``unsloth_decode.groups_as_rows`` (each KV head's query heads as rows of plain attention), and cuDNN with a
    key length that grows by one per call, as in decoding (cuDNN builds a plan per length: Unsloth's reason to
    keep it out of decoding)."""
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from unsloth_decode import groups_as_rows

    not_cudnn = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]

    def without_cudnn(*args, **kwargs):
        with sdpa_kernel(not_cudnn):
            return F.scaled_dot_product_attention(*args, **kwargs)

    rows = groups_as_rows(without_cudnn)
    rows_front_end = groups_as_rows(without_cudnn)
    rows_front_end.step_bias.direct = False  # as the eighth session had it: through SDPA's front end
    grown = {"length": kv_len // 2}

    def cudnn_growing():
        grown["length"] = grown["length"] + 1 if grown["length"] < kv_len else kv_len // 2
        cut = grown["length"]
        return F.scaled_dot_product_attention(
            query, keys[:, :, :cut], values[:, :, :cut], attn_mask=mask[..., :cut], enable_gqa=True
        )

    return {
        f"attention L={kv_len} unsloth sm90 (gqa + mask, no cuDNN)": lambda: without_cudnn(
            query, keys, values, attn_mask=mask, enable_gqa=True
        ),
        f"attention L={kv_len} groups as rows + mask": lambda: rows(
            query, keys, values, attn_mask=mask, enable_gqa=True
        ),
        f"attention L={kv_len} groups as rows + mask, SDPA front end": lambda: rows_front_end(
            query, keys, values, attn_mask=mask, enable_gqa=True
        ),
        f"attention L={kv_len} groups as rows, no mask": lambda: rows(query, keys, values, enable_gqa=True),
        f"attention L<={kv_len} cudnn gqa + mask, length growing per call": cudnn_growing,
    }


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--batches", default="16,64,128,256")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    device = torch.cuda.get_device_name()
    for batch in [int(b) for b in args.batches.split(",")]:
        for flops, variants in (lm_head_variants(batch), mlp_variants(batch), attention_variants(batch, 188)):
            for name, fn in variants.items():
                with torch.no_grad():
                    ms, kernel = timed(fn, args.repeats)
                line = {"op": name, "batch": batch, "ms": round(ms, 3), "tflops": round(flops / ms / 1e9, 1)}
                line.update(kernel=kernel, device=device, torch=torch.__version__)
                print(json.dumps(line), flush=True)
                with args.out.open("a") as handle:
                    handle.write(json.dumps(line) + "\n")
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
