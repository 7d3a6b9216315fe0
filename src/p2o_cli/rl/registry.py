"""Name registries for the RL math: advantage estimators, policy losses, KL penalties.

Every function registered in one table shares one signature (the Protocols below), so the
trainer calls whichever a config names with the same arguments. An installed package adds its
own through the entry-point group of the table (``p2o.advantage_estimators``, ``p2o.policy_losses``,
``p2o.kl_penalties``; see :mod:`p2o_cli.plugins`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from ..plugins import Registry

if TYPE_CHECKING:  # annotations only: --help lists these registries' names without importing torch
    from torch import Tensor


class AdvantageEstimator(Protocol):
    def __call__(self, rewards: Tensor, index: Tensor, **kwargs: object) -> Tensor:
        """Per-sample advantages ``[N]`` from rewards ``[N]`` and group indices ``[N]`` in ``0..G-1``."""
        ...


class PolicyLoss(Protocol):
    def __call__(
        self, log_probs: Tensor, old_log_probs: Tensor, advantages: Tensor, mask: Tensor, **kwargs: object
    ) -> tuple[Tensor, dict[str, float]]:
        """Per-token loss ``[B, T]`` (zero outside ``mask``) and stats."""
        ...


KLPenalty = Callable[["Tensor", "Tensor"], "Tensor"]

# Built-ins register in core_algos (their names are listed here too, for --help); installed
# packages add theirs under these entry-point groups.
ADVANTAGE_ESTIMATORS: Registry[AdvantageEstimator] = Registry(
    "advantage estimator", "p2o.advantage_estimators", builtin=("grpo", "dr_grpo", "grpo_no_std"))
POLICY_LOSSES: Registry[PolicyLoss] = Registry("policy loss", "p2o.policy_losses", builtin=("ppo_clip", "vanilla"))
KL_PENALTIES: Registry[KLPenalty] = Registry("KL penalty", "p2o.kl_penalties",
                                             builtin=("k1", "kl", "k2", "mse", "k3", "low_var_kl"))

register_advantage_estimator = ADVANTAGE_ESTIMATORS.register
register_policy_loss = POLICY_LOSSES.register
register_kl_penalty = KL_PENALTIES.register
get_advantage_estimator = ADVANTAGE_ESTIMATORS.get
get_policy_loss = POLICY_LOSSES.get
get_kl_penalty = KL_PENALTIES.get
known_advantage_estimators = ADVANTAGE_ESTIMATORS.names
known_policy_losses = POLICY_LOSSES.names
known_kl_penalties = KL_PENALTIES.names
