"""Hard-sample mining: problems the policy almost never solves."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..config import Config, option
from ..errors import P2OError
from ..files.records import Failure, Hard, Rollout
from ..reward.values import solved

# "At most 1 of 6 correct" (the paper's rule) is mean reward < 0.2 for K=6.
DEFAULT_TAU = 0.2


@dataclass
class MiningConfig(Config):
    PANEL = "Hard mining"

    tau: float = option(DEFAULT_TAU, min=0.0, max=1.0, help="Hard if mean reward < tau (0.2 = at most 1 of 6).")
    max_failures: int | None = option(None, min=0, unset="all", help="Failed responses kept per problem.")


def group_rollouts(rollouts: Iterable[Rollout]) -> dict[str, list[Rollout]]:
    """Rollouts by problem id, in order of first appearance, each group sorted by k."""
    groups: dict[str, list[Rollout]] = {}
    for rollout in rollouts:
        groups.setdefault(rollout.id, []).append(rollout)
    return {pid: sorted(group, key=lambda r: r.k) for pid, group in groups.items()}


def mine_hard(rollouts: Iterable[Rollout], tau: float = DEFAULT_TAU, max_failures: int | None = None) -> list[Hard]:
    """Problems whose mean reward is below ``tau``, with their unsolved responses (reward below full
    marks) for the reflector."""
    hard: list[Hard] = []
    for pid, group in group_rollouts(rollouts).items():
        rewards = [r.reward for r in group]
        mean = sum(rewards) / len(rewards)
        if mean >= tau:
            continue
        first = group[0]
        if first.problem is None or first.answer is None:
            raise P2OError(f"rollouts for {pid!r} carry no problem/answer text; re-run p2o rollout")
        failures = [Failure(r.response, r.pred, r.template_id, r.n_tokens, r.finish_reason)
                    for r in group if not solved(r.reward)]
        hard.append(
            Hard(
                id=pid,
                problem=first.problem,
                answer=first.answer,
                rewards=rewards,
                mean_reward=mean,
                failures=failures[:max_failures] if max_failures is not None else failures,
                model=next((r.model for r in group if r.model), None),
                meta=first.meta,
                source=first.source,
            )
        )
    return hard
