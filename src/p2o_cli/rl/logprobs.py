"""Token-level helpers of the train step: log-probs and entropy from logits, the template ratio mask,
and flat per-token tensors as padded rows."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

# --------------------------------------------------------------------------- context distillation


def template_ratio_mask(
    logp_original: Tensor,
    logp_templated: Tensor,
    response_mask: Tensor | None = None,
    low: float = 0.01,
    high: float = 10.0,
) -> tuple[Tensor, dict[str, float]]:
    """Keep tokens whose ratio ``π(y|x) / π(y|x̃)`` lies in ``[low, high]`` (bounds inclusive).

    Inputs are per-token log-probs ``[B, T]`` of the sampled response under the original prompt
    ``x`` and under the templated prompt ``x̃``. The test runs on the log-ratio against
    ``[log low, log high]``, so no ratio is ever exponentiated for the decision; non-finite
    log-ratios are dropped. The returned bool mask is already ANDed with ``response_mask``.

    Stats over valid (``response_mask``) tokens: ``ratio_mean``, ``ratio_min``, ``ratio_max``
    (float64, log-ratios clamped to ±100 so they stay finite; nan when there is no valid
    token) and ``masked_frac``, the fraction of valid tokens dropped.
    """
    if not 0.0 < low <= high:
        raise ValueError(f"need 0 < low <= high, got low={low}, high={high}")
    if logp_original.shape != logp_templated.shape:
        raise ValueError(f"log-prob shapes differ: {tuple(logp_original.shape)} vs {tuple(logp_templated.shape)}")
    with torch.no_grad():
        log_ratio = logp_original.detach().float() - logp_templated.detach().float()
        valid = torch.ones_like(log_ratio, dtype=torch.bool) if response_mask is None else response_mask.bool()
        inside = (log_ratio >= math.log(low)) & (log_ratio <= math.log(high))
        keep = inside & valid

        n_valid = int(valid.sum().item())
        if n_valid == 0:
            nan = float("nan")
            return keep, {"ratio_mean": nan, "ratio_min": nan, "ratio_max": nan, "masked_frac": 0.0}
        lr = log_ratio.double().nan_to_num(nan=0.0).clamp(-100.0, 100.0)[valid]
        stats = {
            "ratio_mean": torch.exp(torch.logsumexp(lr, 0) - math.log(n_valid)).item(),
            "ratio_min": torch.exp(lr.min()).item(),
            "ratio_max": torch.exp(lr.max()).item(),
            "masked_frac": 1.0 - keep.sum().item() / n_valid,
        }
    return keep, stats


# --------------------------------------------------------------------------- logits → log-probs


def _rowwise(fn: Callable[[Tensor], Tensor], x: Tensor, chunk_size: int) -> Tensor:
    """Apply ``fn`` ([n, V] -> [n]) to ``x`` ``[..., V]`` in chunks of rows.

    Half-precision input with grad is checkpointed per chunk, so autograd keeps the half
    logits (already alive) rather than a float32 copy of the whole vocabulary matrix.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if x.shape[:-1].numel() == 0:
        out_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        return x.new_zeros(x.shape[:-1], dtype=out_dtype)
    # [B, T, V] is walked row by row, so a non-contiguous slice such as logits[:, :-1] is never copied whole.
    rows = list(x.unbind(0)) if x.dim() == 3 else [x.reshape(-1, x.shape[-1])]
    recompute = torch.is_grad_enabled() and x.requires_grad and x.dtype not in (torch.float32, torch.float64)
    outs = []
    for row in rows:
        for start in range(0, row.shape[0], chunk_size):
            chunk = row[start : start + chunk_size]
            outs.append(checkpoint(fn, chunk, use_reentrant=False) if recompute else fn(chunk))
    return torch.cat(outs).reshape(x.shape[:-1])


def _upcast(x: Tensor) -> Tensor:
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _logsumexp_rows(chunk: Tensor) -> Tensor:
    return torch.logsumexp(_upcast(chunk), dim=-1)


def _entropy_rows(chunk: Tensor) -> Tensor:
    logits = _upcast(chunk)
    log_p = torch.log_softmax(logits, dim=-1)
    p_log_p = log_p.exp() * log_p
    # Tokens with probability exactly 0 (logit -inf) contribute 0, not 0 * -inf = nan.
    return -torch.where(log_p.isneginf(), torch.zeros_like(p_log_p), p_log_p).sum(-1)


def token_log_probs(logits: Tensor, labels: Tensor, chunk_size: int = 4096) -> Tensor:
    """``log softmax(logits)[label]`` per position: logits ``[B, T, V]``, labels ``[B, T]`` -> ``[B, T]``.

    Computed as ``logit[label] - logsumexp(logits)`` in float32 (float64 input stays float64),
    ``chunk_size`` positions at a time so only a chunk of float32 logits exists at once.
    Differentiable. Positions with a negative label (e.g. -100 padding) get 0. The caller aligns
    logits and labels (logits[:, :-1] predict input_ids[:, 1:]).
    """
    if logits.shape[:-1] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} do not match labels {tuple(labels.shape)}")
    ignore = labels < 0
    safe = labels.clamp(min=0).long()
    picked = _upcast(logits.gather(-1, safe.unsqueeze(-1)).squeeze(-1))
    log_probs = picked - _rowwise(_logsumexp_rows, logits, chunk_size)
    return torch.where(ignore, torch.zeros_like(log_probs), log_probs)


def entropy_from_logits(logits: Tensor, chunk_size: int = 4096) -> Tensor:
    """Entropy of ``softmax(logits)`` per position: ``[..., V]`` -> ``[...]``, in float32, chunked."""
    return _rowwise(_entropy_rows, logits, chunk_size)


def pad_rows(flat: Tensor, lengths: Sequence[int], fill: float = 0.0) -> tuple[Tensor, Tensor]:
    """Split a flat per-token tensor ``[N]`` into padded rows ``[n, max_len]`` plus a bool mask."""
    rows = flat.split(list(lengths))
    return stack_rows(rows, fill), length_mask(lengths, flat.device)


def stack_rows(rows: Sequence[Tensor], fill: float = 0.0) -> Tensor:
    """Per-sequence 1-D tensors → padded ``[n, max_len]`` (differentiable)."""
    return torch.nn.utils.rnn.pad_sequence(list(rows), batch_first=True, padding_value=fill)


def length_mask(lengths: Sequence[int], device: torch.device | str | None = None) -> Tensor:
    width = max(lengths, default=0)
    return torch.arange(width, device=device)[None, :] < torch.tensor(list(lengths), device=device)[:, None]


def micro_batch_log_probs(model: Any, mb: Any, device: torch.device, temperature: float, bf16: bool,
                          entropy: bool = False) -> tuple[Tensor, Tensor | None]:
    """Per-response-token log-probs ``[N]`` (and entropies) of a micro-batch under ``model``."""
    mb = mb.to(device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with autocast:
        # Logits only where they predict a response token (packed), or over each row's tail
        # that holds every response (padded).
        out = model(**mb.forward_kwargs())
    logits = mb.select_logits(out.logits)
    if temperature != 1.0:
        # In place: [tokens, vocab] is the largest tensor of the step, and lm_head's backward
        # needs its input, not this output.
        logits = logits.div_(temperature)
    logp = token_log_probs(logits, mb.targets)
    ent = None
    if entropy:
        with torch.no_grad():
            ent = entropy_from_logits(logits.detach())
    return logp, ent
