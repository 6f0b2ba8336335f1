"""What GRPO training on a CPU needs beyond the stock stack.

1. A pure-PyTorch stand-in for TRL's Triton log-probability kernel.  TRL 1.x computes per-token
   log-probabilities through ``ChunkedLogProbFunction``, whose inner loop is a Triton kernel: it needs a GPU,
   and the CPU build of PyTorch ships no Triton at all.  ``TorchLogProbFunction`` computes the same outputs
   (log-prob of the target, entropy, log of the sum of squared probabilities, mean logit and whether the
   target is the top-1 token) with ordinary autograd, a chunk of tokens at a time.
2. Resuming a multi-process CPU run: transformers loads the optimizer state with ``map_location`` set to
   the process's device, ``cpu:<rank>``, a location torch cannot restore; it is mapped to the CPU.
"""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)

OPTIONAL_OUTPUTS = ("entropy", "log_sum_sq_probs", "mean_logits", "is_top1")
TOKEN_CHUNK = 1024


class TorchLogProbFunction:
    """Same ``apply`` signature and outputs as ``trl.kernels.ChunkedLogProbFunction``."""

    @staticmethod
    def apply(
        hidden,
        weight,
        bias,
        targets,
        temperature,
        chunk_size,
        final_logit_softcapping=None,
        logit_scale=1.0,
        outputs=OPTIONAL_OUTPUTS,
    ):
        del chunk_size  # the vocabulary is processed whole; tokens are chunked instead
        parts = [
            _token_chunk(
                hidden[i : i + TOKEN_CHUNK],
                weight,
                bias,
                targets[i : i + TOKEN_CHUNK],
                temperature,
                final_logit_softcapping,
                logit_scale,
                outputs,
            )
            for i in range(0, hidden.shape[0], TOKEN_CHUNK)
        ] or [_token_chunk(hidden, weight, bias, targets, temperature, final_logit_softcapping, logit_scale, outputs)]
        return tuple(None if part[0] is None else torch.cat(part) for part in zip(*parts))


def _token_chunk(hidden, weight, bias, targets, temperature, softcap, logit_scale, outputs):
    logits = torch.nn.functional.linear(hidden, weight, bias).float() * logit_scale
    if softcap is not None:
        logits = softcap * torch.tanh(logits / softcap)
    z = logits / temperature
    log_p = z.log_softmax(dim=-1)
    logprobs = log_p.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    entropy = -(log_p.exp() * log_p).sum(-1) if "entropy" in outputs else None
    with torch.no_grad():
        log_sum_sq = torch.logsumexp(2 * log_p, dim=-1) if "log_sum_sq_probs" in outputs else None
        mean_logits = z.mean(dim=-1) if "mean_logits" in outputs else None
        is_top1 = z.argmax(dim=-1) == targets if "is_top1" in outputs else None
    return logprobs, entropy, log_sum_sq, mean_logits, is_top1


def use_torch_logprob_kernel() -> None:
    """Route TRL's fused LM head through ``TorchLogProbFunction`` (for CPU runs)."""
    import trl.trainer.utils as trl_utils

    if trl_utils._ChunkedLogProbFunction is not TorchLogProbFunction:
        trl_utils._ChunkedLogProbFunction = TorchLogProbFunction
        logger.info("CPU run: TRL's Triton log-prob kernel replaced by its PyTorch equivalent")


def _restore_indexed_cpu(storage, location: str):
    """torch deserializer: storages tagged ``cpu:N`` stay on the CPU (None: not ours to handle)."""
    return storage if location.startswith("cpu:") else None


def _no_tag(obj):
    return None


def allow_indexed_cpu_locations() -> None:
    """Let ``torch.load(..., map_location=torch.device("cpu", N))`` work (multi-process CPU resume)."""
    import torch.serialization as serialization

    if not any(entry[2] is _restore_indexed_cpu for entry in serialization._package_registry):
        serialization.register_package(5, _no_tag, _restore_indexed_cpu)
