"""Fixes to Unsloth 2026.10.9's decode step, applied when the Unsloth backend loads a model.

Generation is most of a GRPO step, and at the generation batches our defaults choose (128 completions on an 8B
model) Unsloth's decode step is GPU-bound in two places that are not the work itself (docs/benchmarks.md,
"Where an Unsloth decode step's time goes"): the LM head multiplied as a batched GEMM that reads the head's
weight once per sequence, and attention falling back to SDPA's math kernel, which copies K and V once per query
head. Both fixes compute the same products with the kernels the work calls for; neither touches training.
"""

from __future__ import annotations

import functools
import logging
import sys
import types

logger = logging.getLogger(__name__)

# The keyword arguments Unsloth's decode passes to SDPA; a call with any other is passed on unchanged.
_DECODE_SDPA_KWARGS = frozenset({"attn_mask", "is_causal", "enable_gqa", "scale"})


def speed_up_decoding(model) -> None:
    """Apply both fixes to an Unsloth model (the attention one once per process: it lives in Unsloth's modules)."""
    fold_rows_into_one_matrix(model.get_output_embeddings())
    attend_query_groups_as_rows()


def fold_rows_into_one_matrix(linear) -> None:
    """Make ``linear`` (the LM head) multiply its input as one [rows, features] matrix, whatever its strides.

    Why: ``torch.matmul`` folds a [B, 1, H] input into one [B, H] GEMM only when the batch stride equals the
    row's (``should_fold`` in PyTorch); a row sliced out of a longer buffer, as Unsloth 2026.10.9's decode step
    hands the head, is multiplied by a batched GEMM against the weight expanded B times, so all 128,256 x 4,096
    head weights are read once per sequence: 31 ms of a 151 ms decode step at 128 sequences on an H200 against
    0.28 ms for the folded GEMM. A [B, 1, H] view as [B, H] never copies; the result is the same product.
    Both forwards are methods of the instance, so a deep copy of the model (a reference model) multiplies by
    its own weights."""
    linear._forward_unfolded = linear.forward  # the class's, or a hook's wrapper around it
    linear.forward = types.MethodType(_forward_folded, linear)


def _forward_folded(self, hidden, *args, **kwargs):
    rows = hidden.reshape(-1, hidden.shape[-1])
    return self._forward_unfolded(rows, *args, **kwargs).view(*hidden.shape[:-1], -1)


def attend_query_groups_as_rows() -> None:
    """Route Unsloth's single-token grouped-query decode attention through :func:`groups_as_rows`.

    Unsloth's decode calls SDPA with ``enable_gqa=True`` and a padding mask, and keeps cuDNN out of decoding on
    sm90/sm100 (cuDNN builds a plan per key length, i.e. per generated token). Flash takes no mask and, before
    torch 2.14, the memory-efficient kernel takes no GQA, so every layer of every decode step ran SDPA's math
    kernel: 37% of the step's GPU time at 128 sequences on an H200. Every ``unsloth.models`` module that calls
    Unsloth's decode SDPA gets the wrapped one; where Unsloth's layout differs from 2026.10.9's, nothing is
    patched and a warning says so."""
    try:
        from unsloth.utils import attention_dispatch
    except ImportError:
        logger.warning("Unsloth's decode attention was not sped up: unsloth.utils.attention_dispatch is missing")
        return
    original = getattr(attention_dispatch, "decode_scaled_dot_product_attention", None)
    if original is None:
        logger.warning("Unsloth's decode attention was not sped up: its decode SDPA function is missing")
        return
    wrapped = getattr(attention_dispatch, "_grpo_groups_as_rows", None) or groups_as_rows(original)
    attention_dispatch._grpo_groups_as_rows = wrapped
    for name, module in list(sys.modules.items()):
        if name.startswith("unsloth.models") and getattr(module, "scaled_dot_product_attention", None) is original:
            module.scaled_dot_product_attention = wrapped


def groups_as_rows(sdpa):
    """``sdpa`` that computes one decode token's grouped-query attention as plain attention of
    ``heads / kv_heads`` query rows per KV head, on a kernel that takes a mask (not cuDNN, not math).

    With one query position, the heads sharing a KV head are independent queries against the same keys and
    the same padding mask, so [B, heads, 1, D] viewed as [B, kv_heads, heads / kv_heads, D] is ordinary
    attention with no K / V copies (the view never copies: the heads of a group are adjacent). Any other call
    (several query positions, causal, no GQA, a mask that differs per head, other arguments) goes to ``sdpa``."""

    @functools.wraps(sdpa)
    def attention(query, key, value, *args, **kwargs):
        if args or not _groups_fit_as_rows(query, key, kwargs):
            return sdpa(query, key, value, *args, **kwargs)
        import torch
        from torch.nn.attention import SDPBackend, sdpa_kernel

        batch, heads, _, dim = query.shape
        rows = query.reshape(batch, key.shape[1], heads // key.shape[1], dim)
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]):
            out = torch.nn.functional.scaled_dot_product_attention(
                rows, key, value, attn_mask=kwargs.get("attn_mask"), scale=kwargs.get("scale")
            )
        return out.reshape(batch, heads, 1, dim)

    return attention


def _groups_fit_as_rows(query, key, kwargs: dict) -> bool:
    """Whether this SDPA call is one query position of grouped-query attention whose mask is shared by the heads."""
    import torch

    if set(kwargs) - _DECODE_SDPA_KWARGS or not kwargs.get("enable_gqa") or kwargs.get("is_causal"):
        return False
    if torch.compiler.is_compiling() or query.dim() != 4 or key.dim() != 4 or query.shape[2] != 1:
        return False
    heads, kv_heads = query.shape[1], key.shape[1]
    if kv_heads == heads or heads % kv_heads:
        return False
    mask = kwargs.get("attn_mask")
    return mask is None or (mask.dim() == 4 and mask.shape[1] == 1 and mask.shape[2] == 1)
