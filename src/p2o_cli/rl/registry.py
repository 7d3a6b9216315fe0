"""Name registries for the RL math: advantage estimators, policy losses, KL penalties.

Every function registered in one table shares one signature (the Protocol below), so the
trainer calls whichever a config names with the same arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

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


KLPenalty = Callable[[Tensor, Tensor], Tensor]

_F = TypeVar("_F", bound=Callable[..., object])

_ADVANTAGE_ESTIMATORS: dict[str, AdvantageEstimator] = {}
_POLICY_LOSSES: dict[str, PolicyLoss] = {}
_KL_PENALTIES: dict[str, KLPenalty] = {}


def _register(table: dict[str, object], kind: str, names: tuple[str, ...]) -> Callable[[_F], _F]:
    if not names:
        raise ValueError(f"register a {kind} under at least one name")

    def decorator(fn: _F) -> _F:
        for name in names:
            if name in table and table[name] is not fn:
                raise ValueError(f"{kind} {name!r} is already registered")
        for name in names:
            table[name] = fn
        return fn

    return decorator


def _lookup(table: dict[str, _F], kind: str, name: str) -> _F:
    try:
        return table[name]
    except KeyError:
        known = ", ".join(sorted(table)) or "(none)"
        raise ValueError(f"unknown {kind} {name!r}; known: {known}") from None


def register_advantage_estimator(*names: str) -> Callable[[_F], _F]:
    """Decorator: register ``fn(rewards [N], index [N], **kw) -> advantages [N]`` under ``names``."""
    return _register(_ADVANTAGE_ESTIMATORS, "advantage estimator", names)  # type: ignore[arg-type]


def register_policy_loss(*names: str) -> Callable[[_F], _F]:
    """Decorator: register ``fn(log_probs, old_log_probs, advantages, mask, **kw) -> (loss, stats)``."""
    return _register(_POLICY_LOSSES, "policy loss", names)  # type: ignore[arg-type]


def register_kl_penalty(*names: str) -> Callable[[_F], _F]:
    """Decorator: register a per-token KL estimator ``fn(log_probs, ref_log_probs) -> [B, T]``."""
    return _register(_KL_PENALTIES, "KL penalty", names)  # type: ignore[arg-type]


def get_advantage_estimator(name: str) -> AdvantageEstimator:
    """The advantage estimator registered as ``name``; ``ValueError`` listing known names otherwise."""
    return _lookup(_ADVANTAGE_ESTIMATORS, "advantage estimator", name)


def get_policy_loss(name: str) -> PolicyLoss:
    """The policy loss registered as ``name``; ``ValueError`` listing known names otherwise."""
    return _lookup(_POLICY_LOSSES, "policy loss", name)


def get_kl_penalty(name: str) -> KLPenalty:
    """The KL estimator registered as ``name``; ``ValueError`` listing known names otherwise."""
    return _lookup(_KL_PENALTIES, "KL penalty", name)


def known_advantage_estimators() -> list[str]:
    return sorted(_ADVANTAGE_ESTIMATORS)


def known_policy_losses() -> list[str]:
    return sorted(_POLICY_LOSSES)


def known_kl_penalties() -> list[str]:
    return sorted(_KL_PENALTIES)


