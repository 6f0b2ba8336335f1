"""The fixes to Unsloth's decode step (unsloth_decode.py): the same products as before, by other kernels.

Unsloth itself needs CUDA; here the fixes are checked on the tensors and layouts its decode step hands them,
and the patching on stand-in modules laid out as Unsloth 2026.10.9's."""

from __future__ import annotations

import sys
import types

import pytest

import unsloth_decode


def _rows_layouts():
    """[B, 1, H] inputs as a decode step may hand them to the LM head: fresh, a row sliced out of a longer
    sequence (batch stride 5 x H), and a [1, B, H] buffer transposed (size-1 dimension's stride B x H)."""
    import torch

    torch.manual_seed(0)
    return {
        "contiguous": torch.randn(8, 1, 16),
        "sliced from a sequence": torch.randn(8, 5, 16)[:, -1:],
        "transposed": torch.randn(1, 8, 16).transpose(0, 1),
        "a whole sequence": torch.randn(8, 5, 16),
    }


@pytest.mark.parametrize("layout", list(_rows_layouts()))
def test_the_lm_head_multiplies_one_matrix_whatever_the_input_strides(layout):
    import torch
    from torch.profiler import ProfilerActivity, profile

    head = torch.nn.Linear(16, 40, bias=False).requires_grad_(False)  # frozen, as under LoRA
    hidden = _rows_layouts()[layout]
    expected = torch.nn.functional.linear(hidden, head.weight)
    unsloth_decode.fold_rows_into_one_matrix(head)
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
        logits = head(hidden)
    assert logits.shape == expected.shape
    torch.testing.assert_close(logits, expected)
    assert "aten::bmm" not in {e.key for e in prof.key_averages()}  # the weight is not expanded per row


def test_without_the_fold_a_sliced_row_is_a_batched_product():
    """The PyTorch behaviour the fold exists for: if this starts folding by itself, the fold can go."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    head = torch.nn.Linear(16, 40, bias=False).requires_grad_(False)  # a trainable weight is folded (with a copy)
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
        head(_rows_layouts()["sliced from a sequence"])
    assert "aten::bmm" in {e.key for e in prof.key_averages()}


def test_the_folded_lm_head_trains_as_before():
    import torch

    head = torch.nn.Linear(16, 40)
    plain = torch.nn.Linear(16, 40)
    plain.load_state_dict(head.state_dict())
    unsloth_decode.fold_rows_into_one_matrix(head)
    hidden = torch.randn(4, 5, 16)
    head(hidden[:, -2:]).square().sum().backward()
    plain(hidden[:, -2:]).square().sum().backward()
    torch.testing.assert_close(head.weight.grad, plain.weight.grad)
    torch.testing.assert_close(head.bias.grad, plain.bias.grad)


def test_a_copy_of_the_folded_lm_head_multiplies_by_its_own_weight():
    """A reference model made by deep copy must not call the original's forward."""
    import copy

    import torch

    head = torch.nn.Linear(16, 40, bias=False).requires_grad_(False)
    unsloth_decode.fold_rows_into_one_matrix(head)
    twin = copy.deepcopy(head)
    twin.weight.zero_()
    hidden = _rows_layouts()["sliced from a sequence"]
    assert not twin(hidden).any() and head(hidden).any()


# Llama-3.1's grouping (4 query heads per KV head) at a small size
BATCH, HEADS, KV_HEADS, DIM, KV_LEN = 6, 8, 2, 16, 11


def _decode_attention_inputs():
    """One decode token as Unsloth's step lays it out: the query a [B, 1, heads, D] projection transposed,
    K / V permuted out of a [kv_len, B, kv_heads, D] cache."""
    import torch

    torch.manual_seed(0)
    query = torch.randn(BATCH, 1, HEADS, DIM).transpose(1, 2)
    keys, values = (torch.randn(KV_LEN, BATCH, KV_HEADS, DIM).permute(1, 2, 0, 3) for _ in range(2))
    return query, keys, values


def _masks():
    import torch

    left_padded = torch.ones(BATCH, 1, 1, KV_LEN, dtype=torch.bool)
    left_padded[: BATCH // 2, ..., :4] = False  # half the rows start with 4 padding positions
    return {
        "no mask": None,
        "left padding (bool)": left_padded,
        "left padding (additive)": torch.zeros(left_padded.shape).masked_fill(~left_padded, float("-inf")),
    }


class RecordingSdpa:
    """Stands in for Unsloth's decode SDPA: keeps each call's arguments (and returns nothing)."""

    def __init__(self):
        self.calls = []

    def __call__(self, query, key, value, *args, **kwargs):
        self.calls.append((query, key, value, args, kwargs))


@pytest.mark.parametrize("mask", list(_masks()))
def test_one_decode_token_as_rows_of_its_kv_head_equals_grouped_query_attention(mask):
    import torch

    query, keys, values = _decode_attention_inputs()
    attn_mask = _masks()[mask]
    expected = torch.nn.functional.scaled_dot_product_attention(
        query, keys, values, attn_mask=attn_mask, enable_gqa=True
    )
    unsloth_sdpa = RecordingSdpa()
    out = unsloth_decode.groups_as_rows(unsloth_sdpa)(query, keys, values, attn_mask=attn_mask, enable_gqa=True)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected)
    assert not unsloth_sdpa.calls  # computed without GQA, not handed back


def test_the_steps_bias_is_made_once_per_mask_aligned_and_follows_in_place_changes():
    """The additive bias the memory-efficient kernel reads: made for the first layer of a decode step and reused
    for the others (the same mask tensor), remade when the mask changes in place; its rows start 16-aligned."""
    import torch

    mask = _masks()["left padding (bool)"]
    step_bias = unsloth_decode._StepBias()
    first = step_bias.for_mask(mask, torch.bfloat16)
    expected = torch.zeros(mask.shape, dtype=torch.bfloat16).masked_fill(~mask, float("-inf"))
    assert torch.equal(first, expected) and first.stride(0) % 16 == 0
    assert step_bias.for_mask(mask, torch.bfloat16) is first  # the next layer of the same step
    mask[-1, ..., :2] = False
    changed = step_bias.for_mask(mask, torch.bfloat16)
    assert changed is not first and torch.isinf(changed[-1, ..., :2]).all()
    assert step_bias.for_mask(mask.clone(), torch.bfloat16) is not changed  # a new step's mask
    with torch.inference_mode():  # Unsloth's decode: masks without a version counter
        inference_mask = mask.clone()
        made = step_bias.for_mask(inference_mask, torch.bfloat16)
        assert step_bias.for_mask(inference_mask, torch.bfloat16) is made
    additive = _masks()["left padding (additive)"]
    assert torch.equal(step_bias.for_mask(additive, torch.float32), additive)


def test_where_the_kernel_refuses_the_rows_sdpa_decides_from_then_on(caplog):
    """A refusal of ``aten._scaled_dot_product_efficient_attention`` (here: a CPU tensor, which it does not take)
    is said once and hands this and every later call to SDPA's front end."""
    import torch

    query, keys, values = _decode_attention_inputs()
    step_bias = unsloth_decode._StepBias()
    rows = query.reshape(BATCH, keys.shape[1], -1, query.shape[-1])
    assert step_bias.efficient_rows(rows, keys, values, _masks()["left padding (bool)"], None) is None
    assert not step_bias.direct and "its kernel refused" in caplog.text
    # the device's own failures are raised on, not taken for a refusal
    assert unsloth_decode._device_failure(torch.OutOfMemoryError("CUDA out of memory"))
    assert not unsloth_decode._device_failure(NotImplementedError("no CPU kernel"))


def _other_calls():
    """SDPA calls that are not one token of grouped-query decoding with a mask shared by the heads."""
    import torch

    query, keys, values = _decode_attention_inputs()
    per_head_mask = torch.ones(BATCH, HEADS, 1, KV_LEN, dtype=torch.bool)
    return {
        "no GQA asked": ((query, keys, values), {"attn_mask": None}),
        "causal": ((query, keys[:, :, :1], values[:, :, :1]), {"is_causal": True, "enable_gqa": True}),
        "two query positions": ((torch.randn(BATCH, HEADS, 2, DIM), keys, values), {"enable_gqa": True}),
        "a mask per head": ((query, keys, values), {"attn_mask": per_head_mask, "enable_gqa": True}),
        "the mask positional": ((query, keys, values, per_head_mask[:, :1]), {"enable_gqa": True}),
        "dropout": ((query, keys, values), {"dropout_p": 0.1, "enable_gqa": True}),
        "as many KV heads as query heads": ((query, query, query), {"enable_gqa": True}),
    }


@pytest.mark.parametrize("case", list(_other_calls()))
def test_other_attention_calls_go_to_unsloths_sdpa_unchanged(case):
    args, kwargs = _other_calls()[case]
    unsloth_sdpa = RecordingSdpa()
    unsloth_decode.groups_as_rows(unsloth_sdpa)(*args, **kwargs)
    (call,) = unsloth_sdpa.calls
    assert all(a is b for a, b in zip(call[:3] + call[3], args, strict=True)) and call[4] == kwargs


def _products(inputs, linear_forward, weight):
    """What ``linear_forward`` (Unsloth's ``fast_linear_forward`` signature) computes for each input, and
    the aten operations it ran."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
        products = [linear_forward(weight, X) for X in inputs]
    return products, {e.key for e in prof.key_averages()}


def unsloth_like_linear_forward(proj, X, temp_lora=None, out=None):
    """Unsloth's one-token product of a dequantized weight: ``torch.matmul(X, W, out=out)``."""
    import torch

    return torch.matmul(X, proj, out=out)


def test_a_projection_of_rows_of_a_wider_buffer_is_one_matrix_product():
    """Unsloth's q / k / v inputs are [B, 1, H] rows of a wider buffer (strides (14336, 4096, 1) on an H200):
    as it ships, a batched product (the weight read once per row); with the fix, one GEMM, the same values."""
    import torch

    buffer = torch.randn(8, 40)  # rows of a wider buffer, unsqueezed: strides (40, 16, 1)
    inputs = [buffer[:, :16].unsqueeze(1), buffer[:, 8:24].unsqueeze(1), torch.randn(8, 1, 16)]
    weight = torch.randn(16, 24)
    shipped, shipped_ops = _products(inputs, unsloth_like_linear_forward, weight)
    fixed, fixed_ops = _products(inputs, unsloth_decode.foldable_rows(unsloth_like_linear_forward), weight)
    assert "aten::bmm" in shipped_ops and "aten::bmm" not in fixed_ops
    for a, b in zip(shipped, fixed, strict=True):
        torch.testing.assert_close(a, b)


def _stand_in_unsloth(monkeypatch, complete: bool = True):
    """Modules laid out as Unsloth 2026.10.9's: the decode SDPA in unsloth.utils.attention_dispatch and
    ``fast_linear_forward`` in unsloth.kernels.utils, bound as globals in the model modules that decode with
    them (``complete=False``: an Unsloth without them)."""
    dispatch = types.ModuleType("unsloth.utils.attention_dispatch")
    kernels = types.ModuleType("unsloth.kernels.utils")
    llama = types.ModuleType("unsloth.models.llama")
    if complete:
        dispatch.decode_scaled_dot_product_attention = llama.scaled_dot_product_attention = RecordingSdpa()
        kernels.fast_linear_forward = llama.fast_linear_forward = unsloth_like_linear_forward
    vision = types.ModuleType("unsloth.models.vision")  # other functions under the same names: left alone
    vision.scaled_dot_product_attention, vision.fast_linear_forward = RecordingSdpa(), print
    for name in ("unsloth", "unsloth.utils", "unsloth.kernels", "unsloth.models"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    for module in (dispatch, kernels, llama, vision):
        monkeypatch.setitem(sys.modules, module.__name__, module)
    return llama, vision


def _model():
    import torch

    head = torch.nn.Linear(16, 40, bias=False)
    return types.SimpleNamespace(get_output_embeddings=lambda: head)


def test_unsloths_decode_functions_are_patched_once_where_they_decode(monkeypatch):
    llama, vision = _stand_in_unsloth(monkeypatch)
    shipped = dict(vars(llama))
    other = dict(vars(vision))
    for model in (_model(), _model()):  # a second model in the process must not wrap the wrappers
        unsloth_decode.speed_up_decoding(model)
        assert llama.scaled_dot_product_attention.__wrapped__ is shipped["scaled_dot_product_attention"]
        assert llama.fast_linear_forward.__wrapped__ is shipped["fast_linear_forward"]
        assert "forward" in vars(model.get_output_embeddings())  # the head folded
    assert vars(vision) == other


def test_an_unsloth_laid_out_otherwise_is_left_alone_with_a_warning(monkeypatch, caplog):
    llama, _ = _stand_in_unsloth(monkeypatch, complete=False)
    unsloth_decode.speed_up_decoding(_model())
    assert not hasattr(llama, "scaled_dot_product_attention") and not hasattr(llama, "fast_linear_forward")
    assert caplog.text.count("decoding was not sped up") == 2
