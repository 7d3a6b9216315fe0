"""Core RL algorithms for p2o as pure tensor functions.

Everything here is a function of tensors: no files, no models, no optimiser state. Advantage
estimators, policy losses and KL penalties are registered by name in small dict registries
(``register_*`` decorators, ``get_*`` lookups that raise a ``ValueError`` naming the known
entries), so configs and the command line can pick them by string.

Shape conventions: ``B`` sequences, ``T`` response tokens, ``V`` vocabulary. Per-token tensors
are ``[B, T]`` and come with a ``mask`` of the same shape (true/1 on real response tokens);
positions outside the mask never influence a returned value, even when they hold inf or nan.

Stats dictionaries hold plain Python floats, ready to log.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

import torch
from torch import Tensor

from .logprobs import entropy_from_logits, template_ratio_mask, token_log_probs
from .registry import (
    get_advantage_estimator,
    get_kl_penalty,
    get_policy_loss,
    known_advantage_estimators,
    known_kl_penalties,
    known_policy_losses,
    register_advantage_estimator,
    register_kl_penalty,
    register_policy_loss,
)

__all__ = [
    "AGG_MODES",
    "aggregate_loss",
    "clipped_surrogate",
    "compute_advantages",
    "entropy_from_logits",
    "frac_zero_std",
    "get_advantage_estimator",
    "get_kl_penalty",
    "get_policy_loss",
    "group_index",
    "grpo_advantages",
    "kl_penalty",
    "known_advantage_estimators",
    "known_kl_penalties",
    "known_policy_losses",
    "loss_normalizers",
    "masked_mean",
    "masked_sum",
    "register_advantage_estimator",
    "register_kl_penalty",
    "register_policy_loss",
    "template_ratio_mask",
    "token_log_probs",
]


# --------------------------------------------------------------------------- masked reductions


def masked_sum(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Sum of ``x`` where ``mask`` is true (over everything, or along ``dim``); nan/inf outside the mask are ignored."""
    kept = torch.where(mask.bool(), x, torch.zeros((), dtype=x.dtype, device=x.device))
    return kept.sum() if dim is None else kept.sum(dim)


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of ``x`` over true ``mask`` entries; 0 where the mask is empty (no division by zero)."""
    m = mask.bool()
    if m.shape != x.shape:
        m = m.expand_as(x)
    count = m.sum() if dim is None else m.sum(dim)
    return masked_sum(x, m, dim) / count.clamp(min=1).to(x.dtype)


# --------------------------------------------------------------------------- advantages


def group_index(group_ids: Sequence[Hashable] | Tensor, device: torch.device | str | None = None) -> Tensor:
    """Map group ids (strings, ints or an integer tensor) to a long tensor of indices ``0..G-1``.

    String/hashable ids are numbered in order of first appearance; tensor ids are numbered via
    ``torch.unique`` (sorted order). Only equality of ids matters to the estimators.
    """
    if isinstance(group_ids, Tensor):
        if group_ids.dim() != 1:
            raise ValueError(f"group ids must be 1-D, got shape {tuple(group_ids.shape)}")
        if group_ids.is_floating_point() or group_ids.is_complex():
            raise ValueError(f"group id tensor must hold integers, got {group_ids.dtype}")
        _, inverse = torch.unique(group_ids, return_inverse=True)
        return inverse.to(device=device if device is not None else group_ids.device, dtype=torch.long)
    numbering: dict[Hashable, int] = {}
    index = [numbering.setdefault(gid, len(numbering)) for gid in group_ids]
    return torch.tensor(index, dtype=torch.long, device=device)


def _as_float(rewards: Tensor) -> Tensor:
    return rewards if rewards.is_floating_point() else rewards.to(torch.get_default_dtype())


def _group_stats(rewards: Tensor, index: Tensor, num_groups: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sample (reward - group mean, unbiased group std, group-is-constant) for flat rewards."""
    zeros = rewards.new_zeros(num_groups)
    counts = zeros.index_add(0, index, torch.ones_like(rewards))
    mean = zeros.index_add(0, index, rewards) / counts.clamp(min=1)
    centered = rewards - mean[index]
    # Unbiased (n - 1) variance, as torch.std and verl use; a singleton group gets std 0.
    var = zeros.index_add(0, index, centered.square()) / (counts - 1).clamp(min=1)
    hi = rewards.new_full((num_groups,), -math.inf).scatter_reduce(0, index, rewards, "amax")
    lo = rewards.new_full((num_groups,), math.inf).scatter_reduce(0, index, rewards, "amin")
    constant = (hi == lo)[index]
    # A constant group's mean may differ from its members by rounding; force exact zeros.
    centered = torch.where(constant, torch.zeros_like(centered), centered)
    return centered, var.sqrt()[index], constant


def grpo_advantages(
    rewards: Tensor, group_index: Tensor | None = None, norm_by_std: bool = True, eps: float = 1e-6
) -> Tensor:
    """GRPO outcome advantages: reward minus its group mean, divided by the group std.

    ``rewards`` is either ``[G, K]`` (one row per group) or ``[N]`` with an integer
    ``group_index`` ``[N]``; the result has the same shape as ``rewards``. The std is the
    *unbiased* one (divide by n - 1), matching ``torch.std`` and verl; the advantage is
    ``(r - mean) / (std + eps)``. With ``norm_by_std=False`` it is ``r - mean`` (Dr. GRPO).
    A group whose rewards are all equal — including a group of one — gets exactly 0.
    """
    rewards = _as_float(rewards)
    if group_index is None:
        if rewards.dim() != 2:
            raise ValueError(f"rewards without group_index must be [G, K], got shape {tuple(rewards.shape)}")
        g, k = rewards.shape
        index = torch.arange(g, device=rewards.device).repeat_interleave(k)
        return grpo_advantages(rewards.reshape(-1), index, norm_by_std, eps).reshape(g, k)
    if rewards.dim() != 1 or group_index.shape != rewards.shape:
        raise ValueError(
            f"flat rewards and group_index must both be [N], got {tuple(rewards.shape)} and {tuple(group_index.shape)}"
        )
    if rewards.numel() == 0:
        return rewards.clone()
    _, index = torch.unique(group_index.to(rewards.device), return_inverse=True)
    centered, std, _ = _group_stats(rewards, index, int(index.max()) + 1)
    return centered / (std + eps) if norm_by_std else centered


@register_advantage_estimator("grpo")
def _grpo_estimator(rewards: Tensor, index: Tensor, norm_by_std: bool = True, eps: float = 1e-6) -> Tensor:
    return grpo_advantages(rewards, index, norm_by_std=norm_by_std, eps=eps)


@register_advantage_estimator("dr_grpo", "grpo_no_std")
def _dr_grpo_estimator(rewards: Tensor, index: Tensor, norm_by_std: bool = True, eps: float = 1e-6) -> Tensor:
    # Same signature as every estimator; Dr. GRPO never divides by the std, whatever is asked.
    return grpo_advantages(rewards, index, norm_by_std=False)


def compute_advantages(
    name: str,
    rewards: Tensor,
    group_ids: Sequence[Hashable] | Tensor,
    anchors: Mapping[Hashable, Sequence[float]] | None = None,
    **kwargs: object,
) -> Tensor:
    """Advantages ``[N]`` for flat rewards ``[N]`` grouped by ``group_ids`` (e.g. problem ids).

    ``name`` picks a registered estimator: ``"grpo"`` (mean-centred, std-normalised;
    kwargs ``norm_by_std``, ``eps``) or ``"dr_grpo"`` / ``"grpo_no_std"`` (mean-centred only).

    ``anchors`` maps a group id to extra rewards that join that group's statistics (mean,
    std) but get no advantage of their own: P²O anchors a templated group with the plain
    rewards that made its problem hard, so a template's successes count against what the
    policy does without it instead of against each other.
    """
    estimator = get_advantage_estimator(name)
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D [N], got shape {tuple(rewards.shape)}")
    n = rewards.numel()
    rewards = _as_float(rewards)
    if anchors:
        if isinstance(group_ids, Tensor):
            raise ValueError("anchors need group ids as a sequence, not a tensor")
        present = set(group_ids)
        extra = [(gid, float(v)) for gid, values in anchors.items() if gid in present for v in values]
        group_ids = list(group_ids) + [gid for gid, _ in extra]
        rewards = torch.cat([rewards, rewards.new_tensor([v for _, v in extra])])
    index = group_index(group_ids, device=rewards.device)
    if index.shape != rewards.shape:
        raise ValueError(f"{n} rewards but {index.numel() - (rewards.numel() - n)} group ids")
    return estimator(rewards, index, **kwargs)[:n]


def frac_zero_std(rewards: Tensor, group_ids: Sequence[Hashable] | Tensor) -> float:
    """Fraction of *groups* (not samples) whose rewards are all equal, i.e. that carry no GRPO signal."""
    rewards = _as_float(rewards).reshape(-1)
    index = group_index(group_ids, device=rewards.device)
    if index.shape != rewards.shape:
        raise ValueError(f"{rewards.numel()} rewards but {index.numel()} group ids")
    if rewards.numel() == 0:
        return 0.0
    num_groups = int(index.max()) + 1
    _, _, constant = _group_stats(rewards, index, num_groups)
    per_group = torch.zeros(num_groups, dtype=torch.bool, device=rewards.device)
    per_group[index] = constant
    return per_group.float().mean().item()


# --------------------------------------------------------------------------- policy loss


def _per_token(advantages: Tensor, like: Tensor) -> Tensor:
    if advantages.shape == like.shape:
        return advantages
    if advantages.dim() == 1 and like.dim() == 2 and advantages.shape[0] == like.shape[0]:
        return advantages.unsqueeze(-1).expand_as(like)
    if advantages.dim() == 2 and like.dim() == 2 and advantages.shape == (like.shape[0], 1):
        return advantages.expand_as(like)
    raise ValueError(f"advantages of shape {tuple(advantages.shape)} do not fit log-probs {tuple(like.shape)}")


@register_policy_loss("ppo_clip", "vanilla")
def clipped_surrogate(
    log_probs: Tensor,
    old_log_probs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = 3.0,
) -> tuple[Tensor, dict[str, float]]:
    """PPO clipped surrogate with clip-higher and dual clip; returns (per-token loss ``[B, T]``, stats).

    ``r = exp(log_probs - old_log_probs)`` (log-ratio clamped to [-20, 20]); advantages are
    per token ``[B, T]`` or per sequence ``[B]`` / ``[B, 1]`` (broadcast). The loss is
    ``max(-A r, -A clip(r, 1 - clip_low, 1 + clip_high))``; with ``dual_clip = c`` the loss of a
    negative-advantage token is further capped at ``-c A``. The loss is 0 outside ``mask``;
    reduce it with :func:`aggregate_loss`.

    Stats (over mask tokens): ``pg_clipfrac`` — the clipped branch was taken; ``ppo_kl`` —
    mean of ``old_log_probs - log_probs``; ``pg_clipfrac_lower`` — the dual-clip cap was taken.
    """
    if not 0.0 <= clip_low < 1.0 or clip_high < 0.0:
        raise ValueError(f"need 0 <= clip_low < 1 and clip_high >= 0, got {clip_low}, {clip_high}")
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1 (or None), got {dual_clip}")
    mask = mask.bool()
    adv = _per_token(advantages, log_probs).to(log_probs.dtype)
    log_ratio = log_probs - old_log_probs
    ratio = torch.exp(log_ratio.clamp(-20.0, 20.0))

    loss_unclipped = -adv * ratio
    loss_clipped = -adv * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    loss = torch.maximum(loss_unclipped, loss_clipped)
    clipped = loss_clipped > loss_unclipped

    negative = adv < 0
    if dual_clip is not None:
        cap = -adv * dual_clip
        capped = negative & (loss > cap)
        loss = torch.where(negative, torch.minimum(loss, cap), loss)
    else:
        capped = torch.zeros_like(mask)

    loss = torch.where(mask, loss, torch.zeros_like(loss))
    with torch.no_grad():
        stats = {
            "pg_clipfrac": masked_mean(clipped.float(), mask).item(),
            "ppo_kl": masked_mean(-log_ratio.detach().float(), mask).item(),
            "pg_clipfrac_lower": masked_mean(capped.float(), mask).item(),
        }
    return loss, stats


# --------------------------------------------------------------------------- loss aggregation

AGG_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum")


def loss_normalizers(mask: Tensor) -> tuple[float, float]:
    """``(tokens, sequences)`` of a full batch, for :func:`aggregate_loss`'s global normalisers.

    A sequence counts only if it has at least one mask token, as in the local seq-mean modes.
    Sum these over micro-batches (and data-parallel ranks) before use.
    """
    m = mask.bool()
    return float(m.sum().item()), float((m.sum(-1) > 0).sum().item())


def aggregate_loss(
    per_token_loss: Tensor,
    mask: Tensor,
    mode: str = "token-mean",
    global_tokens: float | None = None,
    global_seqs: float | None = None,
) -> Tensor:
    """Reduce a per-token loss ``[B, T]`` to a scalar.

    Modes: ``token-mean`` — sum over mask tokens / number of mask tokens;
    ``seq-mean-token-mean`` — mean over sequences of each sequence's token mean;
    ``seq-mean-token-sum`` — mean over sequences of each sequence's token sum.
    Sequences without mask tokens are left out of the sequence means.

    For gradient accumulation pass the full batch's counts (:func:`loss_normalizers`):
    ``token-mean`` then divides by ``global_tokens`` and the seq-mean modes by ``global_seqs``,
    so the sum of the micro-batch losses equals the full-batch loss.
    """
    if mode not in AGG_MODES:
        raise ValueError(f"unknown loss aggregation mode {mode!r}; known: {', '.join(AGG_MODES)}")
    if per_token_loss.shape != mask.shape:
        raise ValueError(f"loss {tuple(per_token_loss.shape)} and mask {tuple(mask.shape)} differ in shape")
    for label, value in (("global_tokens", global_tokens), ("global_seqs", global_seqs)):
        if value is not None and not value > 0:
            raise ValueError(f"{label} must be positive, got {value}")
    m = mask.bool()
    if mode == "token-mean":
        total = masked_sum(per_token_loss, m)
        denom = global_tokens if global_tokens is not None else m.sum().clamp(min=1).to(per_token_loss.dtype)
        return total / denom

    tokens_per_seq = m.sum(-1)
    seq_loss = masked_sum(per_token_loss, m, dim=-1)
    if mode == "seq-mean-token-mean":
        seq_loss = seq_loss / tokens_per_seq.clamp(min=1).to(per_token_loss.dtype)
    # Rows without tokens already contribute 0 to the sum; they are only kept out of the count.
    denom = global_seqs if global_seqs is not None else (tokens_per_seq > 0).sum().clamp(min=1).to(seq_loss.dtype)
    return seq_loss.sum() / denom


# --------------------------------------------------------------------------- KL penalty


@register_kl_penalty("k1", "kl")
def _kl_k1(log_probs: Tensor, ref_log_probs: Tensor) -> Tensor:
    return log_probs - ref_log_probs


@register_kl_penalty("k2", "mse")
def _kl_k2(log_probs: Tensor, ref_log_probs: Tensor) -> Tensor:
    return 0.5 * (log_probs - ref_log_probs).square()


@register_kl_penalty("k3", "low_var_kl")
def _kl_k3(log_probs: Tensor, ref_log_probs: Tensor) -> Tensor:
    d = (ref_log_probs - log_probs).clamp(-20.0, 20.0)
    return (torch.exp(d) - d - 1.0).clamp(-10.0, 10.0)


def kl_penalty(log_probs: Tensor, ref_log_probs: Tensor, kind: str = "k3") -> Tensor:
    """Per-token KL(π || π_ref) estimate from sampled-token log-probs.

    ``k1`` = ``logp - ref``; ``k2`` = ``0.5 (logp - ref)^2``; ``k3`` (``low_var_kl``) =
    ``exp(ref - logp) - (ref - logp) - 1``, with ``ref - logp`` clamped to [-20, 20] and the
    result to [-10, 10]. Unused by default (P²O trains without KL).
    """
    return get_kl_penalty(kind)(log_probs, ref_log_probs)


