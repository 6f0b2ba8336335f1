"""One decode token's projection for many sequences, multiplied straight from bitsandbytes' NF4 weights.

Why: a GRPO rollout decodes 128 sequences at once (our default generation batch), and there Unsloth 2026.10.9
multiplies each 4-bit projection by first dequantizing the whole weight to a 16-bit buffer and then running a
GEMM on it (it has fused kernels only up to 4 rows). Each decode step so reads 0.5 byte per weight, writes 2 and
reads the 2 back: 4.5 bytes per weight against the 0.5 the 4-bit format promises, and 29% of the decode step's
kernel time on an H200 was the dequantization alone (docs/benchmarks.md). Here each tile of the weight is
decoded in registers right before the tensor cores use it, so the 16-bit weight never reaches memory.

The decoded values are bit for bit those of bitsandbytes' ``dequantize_4bit`` (``T(code[nibble] * absmax)``,
high nibble first, a double-quantized absmax as ``fp32(code2[q] * absmax2) + offset`` with two roundings); the
product differs from dequantize-then-GEMM only in the order of its fp32 sums.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

# The rows (sequences) this kernel is for: at one or a few rows bitsandbytes' and Unsloth's GEMV kernels read
# the weight once already; above a few hundred the GEMM's arithmetic hides the dequantization.
MIN_ROWS, MAX_ROWS = 5, 512
# libdevice is compiled code; Triton's interpreter (TRITON_INTERPRET=1, used by the CPU tests) lacks it.
_EXACT_MUL = os.environ.get("TRITON_INTERPRET", "0") != "1"
if _EXACT_MUL:
    from triton.language.extra import libdevice


def fits(X: torch.Tensor, W: torch.Tensor, quant_state) -> bool:
    """Whether ``X [rows, K] @ W.T`` can be computed here: NF4 bytes, K whole blocks, a 16-bit input."""
    if not (MIN_ROWS <= X.shape[0] <= MAX_ROWS) or X.dim() != 2 or X.stride(-1) != 1:
        return False
    if W.dtype != torch.uint8 or W.device != X.device or X.dtype not in (torch.bfloat16, torch.float16):
        return False
    if getattr(quant_state, "quant_type", None) != "nf4" or len(getattr(quant_state, "shape", ())) != 2:
        return False
    blocksize = quant_state.blocksize
    _, in_features = quant_state.shape
    nested_ok = not quant_state.nested or quant_state.state2.absmax.device == X.device
    return (
        in_features == X.shape[1]
        and in_features % (2 * blocksize) == 0
        and blocksize >= 32
        and quant_state.absmax.device == X.device
        and nested_ok
    )


def nf4_matmul(X: torch.Tensor, W: torch.Tensor, quant_state, out: torch.Tensor | None = None, config=None):
    """``X @ dequantize_4bit(W, quant_state).T`` for ``X [rows, K]`` (any row stride), into ``out [rows, N]``.

    ``config`` (block_m, block_n, block_k, splits, num_warps, num_stages) overrides the choice of ``_config``;
    the benchmark sweeps it."""
    rows, in_features = X.shape
    out_features = quant_state.shape[0]
    if out is None:
        out = torch.empty(rows, out_features, dtype=X.dtype, device=X.device)
    block_m, block_n, block_k, splits, num_warps, num_stages = config or _config(rows, out_features, in_features)
    nested = bool(quant_state.nested)
    absmax2 = quant_state.state2.absmax if nested else quant_state.absmax
    code2 = quant_state.state2.code if nested else quant_state.code
    offset = quant_state.offset if nested else quant_state.absmax
    partials = out if splits == 1 else torch.empty(splits, rows, out_features, dtype=torch.float32, device=X.device)
    grid = (triton.cdiv(out_features, block_n), triton.cdiv(rows, block_m), splits)
    _nf4_matmul_kernel[grid](
        X,
        W,
        quant_state.absmax,
        code2,
        absmax2,
        offset,
        quant_state.code,
        partials,
        rows,
        out_features,
        in_features,
        X.stride(0),
        partials.stride(-2),
        partials.stride(0) if splits > 1 else 0,
        in_features // splits,
        BLOCKSIZE=quant_state.blocksize,
        BLOCKSIZE2=quant_state.state2.blocksize if nested else 1,
        NESTED=nested,
        EXACT_MUL=_EXACT_MUL,
        BLOCK_M=block_m,
        BLOCK_N=block_n,
        BLOCK_K=block_k,
        num_warps=num_warps,
        num_stages=num_stages,
    )
    if splits > 1:
        # Summed in a fixed order (not atomics), so the same input gives the same output every time.
        out.copy_(partials.sum(dim=0))
    return out


def _config(rows: int, out_features: int, in_features: int) -> tuple[int, int, int, int, int, int]:
    """Tile sizes and K splits: enough programs to fill an H100 / H200's 132 SMs twice over, whole K tiles."""
    block_m = 64 if rows <= 64 else 128
    block_n, block_k = 64, 128
    tiles = triton.cdiv(out_features, block_n) * triton.cdiv(rows, block_m)
    splits = 1
    k_tiles = in_features // block_k
    while tiles * splits < 264 and k_tiles % (2 * splits) == 0 and k_tiles // (2 * splits) >= 4:
        splits *= 2
    return block_m, block_n, block_k, splits, 4, 3


@triton.jit
def _nf4_matmul_kernel(
    X,  # [M, K] bf16 / fp16, rows X_STRIDE apart
    W,  # uint8 [N * K / 2]: weight [N, K] row major, two values a byte, the earlier in the high nibble
    ABSMAX,  # uint8 (nested) or fp32, one per BLOCKSIZE values
    CODE2,  # fp32 [256]: the absmax's 8-bit code (nested)
    ABSMAX2,  # fp32, one per BLOCKSIZE2 absmax values (nested)
    OFFSET,  # fp32 [1] (nested)
    CODE,  # fp32 [16]: the NF4 code
    OUT,  # [M, N] (out dtype) or fp32 partials [splits, M, N]
    M,
    N,
    K,
    X_STRIDE,
    OUT_STRIDE,
    SPLIT_STRIDE,
    K_PER_SPLIT,
    BLOCKSIZE: tl.constexpr,
    BLOCKSIZE2: tl.constexpr,
    NESTED: tl.constexpr,
    EXACT_MUL: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_m = tl.program_id(1)
    split = tl.program_id(2)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rn64 = rn.to(tl.int64)
    m_mask = rm < M
    n_mask = rn < N
    BLOCKS: tl.constexpr = BLOCK_K // BLOCKSIZE
    half = tl.arange(0, BLOCK_K // 2)
    ks = tl.arange(0, BLOCK_K)
    blocks = tl.arange(0, BLOCKS)
    if NESTED:
        offset = tl.load(OFFSET)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    k_start = split * K_PER_SPLIT
    for step in range(0, K_PER_SPLIT // BLOCK_K):
        k0 = k_start + step * BLOCK_K
        x = tl.load(X + rm[:, None].to(tl.int64) * X_STRIDE + (k0 + ks)[None, :], mask=m_mask[:, None], other=0.0)
        packed = tl.load(W + rn64[:, None] * (K // 2) + (k0 // 2 + half)[None, :], mask=n_mask[:, None], other=0)
        packed = packed.to(tl.int32)
        high = tl.load(CODE + (packed >> 4))
        low = tl.load(CODE + (packed & 15))
        values = tl.reshape(tl.join(high, low), (BLOCK_N, BLOCKS, BLOCKSIZE))
        block = rn64[:, None] * (K // BLOCKSIZE) + (k0 // BLOCKSIZE + blocks)[None, :]
        if NESTED:
            q = tl.load(ABSMAX + block, mask=n_mask[:, None], other=0).to(tl.int32)
            c2 = tl.load(CODE2 + q)
            s2 = tl.load(ABSMAX2 + block // BLOCKSIZE2, mask=n_mask[:, None], other=0.0)
            # Two roundings, as bitsandbytes: never contracted into one fused multiply-add.
            if EXACT_MUL:
                scale = libdevice.mul_rn(c2, s2) + offset
            else:
                scale = c2 * s2 + offset
        else:
            scale = tl.load(ABSMAX + block, mask=n_mask[:, None], other=0.0)
        w = tl.reshape(values * scale[:, :, None], (BLOCK_N, BLOCK_K)).to(X.dtype.element_ty)
        acc = tl.dot(x, tl.trans(w), acc)
    target = OUT + split.to(tl.int64) * SPLIT_STRIDE + rm[:, None].to(tl.int64) * OUT_STRIDE + rn[None, :]
    tl.store(target, acc.to(OUT.dtype.element_ty), mask=m_mask[:, None] & n_mask[None, :])
