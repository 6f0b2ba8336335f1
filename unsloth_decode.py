"""Fixes to Unsloth 2026.10.9's decode step, applied when the Unsloth backend loads a model.

Generation is most of a GRPO step, and at the generation batches our defaults choose (128 completions on an 8B
model) Unsloth's decode step is GPU-bound in places that are not the work itself (docs/benchmarks.md, "Where an
Unsloth decode step's time goes"): the LM head and the q / k / v projections multiplied as batched GEMMs that
read the weight once per sequence, and attention falling back to SDPA's math kernel, which copies K and V once
per query head. The fixes compute the same products with the kernels the work calls for; none touches training
(a sequence of more than one token takes none of these paths).
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
    """Apply the fixes to an Unsloth model (those in Unsloth's own modules once per process)."""
    fold_rows_into_one_matrix(model.get_output_embeddings())
    _patch_unsloth_models("unsloth.kernels.utils", "fast_linear_forward", foldable_rows)
    _patch_unsloth_models(
        "unsloth.utils.attention_dispatch",
        "decode_scaled_dot_product_attention",
        groups_as_rows,
        bound_as="scaled_dot_product_attention",
    )


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


def _patch_unsloth_models(home: str, name: str, wrap, bound_as: str | None = None) -> None:
    """Replace Unsloth's function ``home.name`` by ``wrap(it)`` in every ``unsloth.models`` module that calls it.

    The model modules bind the function as a global (``from ... import name [as bound_as]``), so each binding
    is replaced; the wrapper is made once per process (kept on ``home``), so a second model does not wrap it
    twice. Where Unsloth is laid out otherwise than 2026.10.9, nothing is patched and a warning says so."""
    original = getattr(sys.modules.get(home), name, None)
    if original is None:
        logger.warning("Unsloth's decoding was not sped up: %s.%s is missing (another Unsloth version?)", home, name)
        return
    attribute = f"_grpo_{wrap.__name__}"
    wrapped = getattr(sys.modules[home], attribute, None) or wrap(original)
    setattr(sys.modules[home], attribute, wrapped)
    bound_as = bound_as or name
    for module_name, module in list(sys.modules.items()):
        if module_name.startswith("unsloth.models") and getattr(module, bound_as, None) is original:
            setattr(module, bound_as, wrapped)


def foldable_rows(linear_forward):
    """Unsloth's ``fast_linear_forward`` handed its one-token input [B, 1, H] with strides ``torch.matmul`` folds.

    Why: in Unsloth 2026.10.9's captured decode step the q / k / v projections get rows of a wider buffer
    (strides (14336, 4096, 1) on the Llama-3.1-8B shape, recorded on an H200), and ``torch.matmul`` folds
    [B, 1, H] into one [B, H] GEMM only when the batch stride equals the middle one (PyTorch's ``should_fold``),
    so each projection was a batched GEMM reading its weight once per sequence. The middle dimension has size
    one, so its stride addresses nothing: giving it the batch stride is a view of the same memory, which
    ``torch.matmul`` folds into one GEMM whose rows are the buffer's own rows."""

    @functools.wraps(linear_forward)
    def fast_linear_forward(proj, X, *args, **kwargs):
        if X.dim() == 3 and X.shape[1] == 1 and X.stride(1) != X.stride(0):
            X = X.as_strided(X.shape, (X.stride(0), X.stride(0), X.stride(2)))
        return linear_forward(proj, X, *args, **kwargs)

    return fast_linear_forward


def groups_as_rows(sdpa):
    """``sdpa`` (Unsloth's decode SDPA) that computes one decode token's grouped-query attention as plain
    attention of ``heads / kv_heads`` query rows per KV head, on a kernel that takes a mask (not cuDNN, not math).

    Why: Unsloth's decode calls SDPA with ``enable_gqa=True`` and a padding mask, and keeps cuDNN out of decoding
    on sm90/sm100 (cuDNN builds a plan per key length, i.e. per generated token: 36 ms per call measured). Flash
    takes no mask and, before torch 2.14, the memory-efficient kernel takes no GQA, so every layer of every
    decode step ran SDPA's math kernel: 1.29 ms per layer at 128 sequences on an H200 against 0.12 ms as rows.

    With one query position, the heads sharing a KV head are independent queries against the same keys and
    the same padding mask, so [B, heads, 1, D] viewed as [B, kv_heads, heads / kv_heads, D] is ordinary
    attention with no K / V copies (the view never copies: the heads of a group are adjacent). Any other call
    (several query positions, causal, no GQA, a mask that differs per head, other arguments) goes to ``sdpa``.

    On CUDA the rows go straight to the memory-efficient kernel (``efficient_rows``): each layer's attention is
    launched by the host between two of Unsloth's captured graph segments, the GPU waits for it there, and SDPA's
    front end (backend choice, mask conversion and padding) costs about 0.2 ms a layer, mostly on the host
    (0.31 against 0.12 ms per call, 19.28 against 18.91 ms per decode step at 128 sequences on an H200)."""
    bias = _StepBias()

    @functools.wraps(sdpa)
    def attention(query, key, value, *args, **kwargs):
        if args or not _groups_fit_as_rows(query, key, kwargs):
            return sdpa(query, key, value, *args, **kwargs)
        import torch
        from torch.nn.attention import SDPBackend, sdpa_kernel

        batch, heads, _, dim = query.shape
        rows = query.reshape(batch, key.shape[1], heads // key.shape[1], dim)
        mask, scale = kwargs.get("attn_mask"), kwargs.get("scale")
        if query.is_cuda and bias.direct and _direct_fits(key, mask):
            out = bias.efficient_rows(rows, key, value, mask, scale)
            if out is not None:
                return out.reshape(batch, heads, 1, dim)
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]):
            out = torch.nn.functional.scaled_dot_product_attention(rows, key, value, attn_mask=mask, scale=scale)
        return out.reshape(batch, heads, 1, dim)

    attention.step_bias = bias  # the benchmark turns the direct call off through it (point flag :sdpaattn)
    return attention


def _device_failure(error: RuntimeError) -> bool:
    """Whether ``error`` is the device's own (out of memory, a failed launch): raised on, never taken for a refusal."""
    import torch

    failures = (getattr(torch, name, None) for name in ("OutOfMemoryError", "AcceleratorError"))
    return isinstance(error, tuple(failure for failure in failures if failure is not None))


def _direct_fits(key, mask) -> bool:
    """Whether the kernel can take this call as it is: no autograd (it would need the log-sum-exp kept) and a mask
    as long as the keys (SDPA also broadcasts a shorter one; such a call goes through SDPA's front end)."""
    import torch

    return not torch.is_grad_enabled() and (mask is None or mask.shape[-1] == key.shape[-2])


class _StepBias:
    """The decode step's padding mask as the additive bias the memory-efficient kernel reads, made once per step.

    Why: Unsloth's decode step passes every layer the same boolean keep mask (one tensor object per step), and
    SDPA turns it into an additive bias, padded to a multiple of 16 keys, again in every layer: three kernels and
    their host time, 32 times a step. Here the bias is made for the first layer and reused while the mask is the
    same tensor, unchanged (an inference tensor, as Unsloth's decode under ``torch.inference_mode`` makes, keeps
    no version counter: there the same tensor object is taken as the same mask; Unsloth makes a new one per
    step). Its rows start 16-aligned, which the kernel requires."""

    def __init__(self):
        self.made = (None, None, None)  # (mask, its version, bias): one attribute, read and written whole
        self.direct = True  # False after the kernel refused a call: SDPA's front end from then on

    def efficient_rows(self, rows, key, value, mask, scale):
        """The attention of ``rows`` by ``aten._scaled_dot_product_efficient_attention``, or None where the
        kernel refuses the inputs (then SDPA decides, now and for the rest of the process)."""
        import torch

        bias = None if mask is None else self.for_mask(mask, rows.dtype).expand(*rows.shape[:3], mask.shape[-1])
        try:
            return torch.ops.aten._scaled_dot_product_efficient_attention(
                rows, key, value, bias, False, 0.0, False, scale=scale
            )[0]
        except RuntimeError as refused:
            if _device_failure(refused):  # the GPU's trouble, not the kernel's refusal of the inputs
                raise
            logger.warning("decode attention goes through SDPA's front end: its kernel refused %s", refused)
            self.direct = False
            return None

    def for_mask(self, mask, dtype):
        import torch

        version = None if mask.is_inference() else mask._version  # inference tensors keep no version
        made_for, made_version, made = self.made
        if mask is made_for and version == made_version and made.dtype == dtype:
            return made
        keys = mask.shape[-1]
        aligned = torch.zeros(*mask.shape[:-1], -(-keys // 16) * 16, dtype=dtype, device=mask.device)
        bias = aligned[..., :keys]
        if mask.dtype == torch.bool:
            bias.masked_fill_(~mask, float("-inf"))
        else:
            bias.copy_(mask)
        self.made = (mask, version, bias)
        return bias


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
