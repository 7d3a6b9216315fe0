"""The toy pretraining loss: per-token cross-entropy on the response, with the first token (the
step/direct decision) against its expected target and counted more than the rest."""

from __future__ import annotations

from typing import Any

import torch

IGNORE = -100


def expected_decision_loss(
    decision_logits: torch.Tensor, decision_ids: torch.Tensor, step_prob: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy ``[B]`` of the first response token against its expected target: the step
    opening with ``step_prob``, the direct one otherwise (the mean over the Bernoulli draw of the
    sampled target's loss, without its noise)."""
    log_probs = torch.log_softmax(decision_logits.float(), dim=-1).gather(1, decision_ids)
    return -(step_prob * log_probs[:, 0] + (1 - step_prob) * log_probs[:, 1])


def response_token_loss(model: Any, batch: dict[str, Any], decision_target: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token cross-entropy ``[B, T-1]`` and the mask of response tokens it counts; with
    ``decision_target="expected"`` the first response token's is :func:`expected_decision_loss`."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    labels = batch["labels"][:, 1:]
    token_loss = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=IGNORE, reduction="none"
    ).view(labels.shape)
    if decision_target == "expected":
        rows, cols = torch.arange(len(labels)), batch["decision_pos"]
        expected = expected_decision_loss(logits[rows, cols], batch["decision_ids"], batch["step_prob"])
        token_loss = token_loss.index_put((rows, cols), expected)
    return token_loss, labels != IGNORE


def weighted_token_mean(token_loss: torch.Tensor, weights: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The batch's response-token mean, each token's loss counted ``weights`` times (the decision
    token ``decision_weight`` times): the weights scale a token's pull, not the token count."""
    return (token_loss * weights).sum() / mask.sum()
