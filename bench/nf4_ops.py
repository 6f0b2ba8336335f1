"""Time one decode step's 4-bit projections on their own at the Llama-3.1-8B shape: Unsloth's dequantize + GEMM
against ``nf4_matmul`` (the fused kernel ``unsloth_decode.four_bit_rows`` uses), and sweep the kernel's tiles.

    python bench/nf4_ops.py --out $OUT/nf4_ops.jsonl [--batches 16,64,128,256] [--sweep]   (on a GPU, with Unsloth)

Weights are random, quantized by bitsandbytes as Unsloth loads them (NF4, blocks of 64, double-quantized).
Each path is captured in a CUDA graph and replayed, as Unsloth replays its decode step, so launch costs are the
graph's. Each line: the projection, batch, path, milliseconds (median of triton's ``do_bench_cudagraph``), the
weight bytes read per second, and for ``nf4_matmul`` the largest difference from dequantize + GEMM (relative to
the output's largest value); ``--sweep`` adds one line per tile configuration and marks the fastest. A last
line per batch sums the seven projections of a layer and multiplies by the 32 layers: milliseconds per decode
step spent on projections by each path.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

HIDDEN, INTERMEDIATE, KV = 4096, 14336, 1024
LAYERS = 32
# name -> (out_features, in_features, how many of it a layer has)
PROJECTIONS = {
    "q_proj / o_proj": (HIDDEN, HIDDEN, 2),
    "k_proj / v_proj": (KV, HIDDEN, 2),
    "gate_proj / up_proj": (INTERMEDIATE, HIDDEN, 2),
    "down_proj": (HIDDEN, INTERMEDIATE, 1),
}
BANDWIDTH = 4.8e12  # H200 datasheet bytes/s (H100: 3.35e12)


def quantized(out_features: int, in_features: int):
    import bitsandbytes.functional as bnbf
    import torch

    weight = torch.randn(out_features, in_features, device="cuda", dtype=torch.bfloat16) * 0.02
    packed, state = bnbf.quantize_4bit(weight, blocksize=64, compress_statistics=True, quant_type="nf4")
    return packed, state


def unsloth_product(rows, packed, state):
    """What Unsloth 2026.10.9's fast_linear_forward does above its GEMV rows: dequantize, then one GEMM."""
    import torch
    from unsloth.kernels.utils import fast_dequantize

    weight = fast_dequantize(packed.t(), state, use_global_buffer=True, dtype=rows.dtype)
    return torch.matmul(rows, weight)


def configs():
    yield from itertools.product((64, 128), (32, 64, 128), (128, 256), (1, 2, 4, 8), (4, 8), (3, 4))


def measure(name: str, out_features: int, in_features: int, batch: int, sweep: bool, emit) -> dict[str, float]:
    """Milliseconds of one projection by each path (and by the fastest swept tiles); emits a line per path."""
    import torch
    import triton

    import nf4_matmul

    packed, state = quantized(out_features, in_features)
    # Rows of a wider buffer, as Unsloth's decode hands q / k / v their input
    rows = torch.randn(batch, in_features + 64, device="cuda", dtype=torch.bfloat16)[:, :in_features]
    weight_bytes = packed.numel() + state.absmax.numel()

    def ours(config=None):
        return nf4_matmul.nf4_matmul(rows, packed, state, config=config)

    reference = unsloth_product(rows, packed, state).float()
    error = ((ours().float() - reference).abs().max() / reference.abs().max()).item()
    timings = {
        "unsloth": triton.testing.do_bench_cudagraph(lambda: unsloth_product(rows, packed, state)),
        "nf4_matmul": triton.testing.do_bench_cudagraph(ours),
    }
    chosen = nf4_matmul._config(batch, out_features, in_features)
    best = (timings["nf4_matmul"], chosen)
    for config in configs() if sweep else ():
        block_m, _, block_k, splits, _, _ = config
        if block_m > max(64, batch * 2) or (in_features // block_k) % splits:
            continue
        try:
            ms = triton.testing.do_bench_cudagraph(lambda c=config: ours(c))
        except (
            RuntimeError,
            triton.runtime.errors.OutOfResources,
            triton.compiler.errors.CompilationError,
        ) as failure:  # tiles beyond shared memory
            emit({"op": name, "batch": batch, "config": config, "error": str(failure)[:200]})
            continue
        emit({"op": name, "batch": batch, "path": "sweep", "config": config, "ms": round(ms, 4)})
        best = min(best, (ms, config))
    timings["nf4_matmul best"] = best[0]
    for path, ms in timings.items():
        line = {"op": name, "batch": batch, "path": path, "ms": round(ms, 4)}
        line["weight_GBps"] = round(weight_bytes / ms / 1e6, 1)
        line["floor_ms"] = round(weight_bytes / BANDWIDTH * 1e3, 4)
        if path != "unsloth":
            line.update(config=chosen if path == "nf4_matmul" else best[1], max_rel_diff=error)
        emit(line)
    return timings


def main() -> None:
    import torch
    import triton

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--batches", default="16,64,128,256")
    parser.add_argument("--sweep", action="store_true")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    device = torch.cuda.get_device_name()

    def emit(line: dict) -> None:
        line.update(device=device, torch=torch.__version__, triton=triton.__version__)
        print(json.dumps(line), flush=True)
        with args.out.open("a") as handle:
            handle.write(json.dumps(line) + "\n")

    for batch in [int(b) for b in args.batches.split(",")]:
        per_step = {"unsloth": 0.0, "nf4_matmul": 0.0, "nf4_matmul best": 0.0}
        for name, (out_features, in_features, count) in PROJECTIONS.items():
            with torch.no_grad():
                timings = measure(name, out_features, in_features, batch, args.sweep, emit)
            for path, ms in timings.items():
                per_step[path] += ms * count * LAYERS
            torch.cuda.empty_cache()
        emit({"op": "projections of a decode step", "batch": batch, **{k: round(v, 3) for k, v in per_step.items()}})


if __name__ == "__main__":
    main()
