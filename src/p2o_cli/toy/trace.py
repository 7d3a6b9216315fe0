"""What a toy run's templated groups teach the plain prompt, measured from its rollouts.

Context distillation trains the plain prompt x on a templated rollout's response with that
rollout's advantage. The one thing a template changes in the toy world is the response's
first token: a step line or a direct answer. So the signal that carries the template's
behaviour to x is the advantage the step-opening rollouts of a group receive, summed:

    opening advantage of a group = (1/K) · Σ_{i opens with a step} A_i

Under the paper's group baseline a group's advantages sum to zero, so when every rollout of a
group opens with a step (a template of strength 1) this is exactly zero, whatever the rewards:
the opening is not distilled. It is positive when step openings succeed more often than the
direct ones beside them. Under the plain baseline (the group measured against the plain
rewards that made the problem hard) it is positive whenever step openings succeed at all.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..files.records import Rollout
from ..rl.core_algos import compute_advantages
from .tasks import problem_id, starts_with_step

HARD_PREFIX = problem_id("hard", 0)[: -len("000000")]


def plain_step_share(rollouts_by_epoch: Mapping[int, Sequence[Rollout]]) -> list[dict[str, Any]]:
    """Per epoch of a ``p2o run`` on the toy world: how often a plain (untemplated) rollout of a
    hard problem opens with a step line — the behaviour context distillation has to carry from
    the templated prompt to the plain one. Epochs whose hard problems were all templated get
    ``share`` None.
    """
    rows = []
    for epoch, rollouts in sorted(rollouts_by_epoch.items()):
        plain = [r for r in rollouts if not r.template and r.id.startswith(HARD_PREFIX)]  # "" is x itself
        stepped = sum(starts_with_step(r.response) for r in plain)
        rows.append({"epoch": epoch, "plain_hard_rollouts": len(plain),
                     "share": stepped / len(plain) if plain else None})
    return rows


def templated_groups(rollouts: Sequence[Rollout]) -> dict[str, list[Rollout]]:
    """Problem id -> its rollouts, for the problems rolled out with at least one template."""
    groups: dict[str, list[Rollout]] = defaultdict(list)
    for r in rollouts:
        groups[r.id].append(r)
    return {pid: rs for pid, rs in groups.items() if any(r.template for r in rs)}


def opening_signal(rollouts_by_epoch: Mapping[int, Sequence[Rollout]], baseline: str = "group",
                   estimator: str = "grpo", norm_by_std: bool = True) -> list[dict[str, Any]]:
    """Per epoch, over the templated groups: the share of their rollouts that open with a step,
    the share of groups where every rollout does, their success rate, and the mean opening
    advantage (module docstring) under ``baseline`` ("group" or "plain"), computed as the train
    step computes advantages. Epochs without templated groups get None for each."""
    rows = []
    for epoch, rollouts in sorted(rollouts_by_epoch.items()):
        groups = templated_groups(rollouts)
        row: dict[str, Any] = {"epoch": epoch, "templated_groups": len(groups)}
        if not groups:
            rows.append({**row, "step_share": None, "all_step": None, "success": None, "opening_advantage": None})
            continue
        flat = [r for rs in groups.values() for r in rs]
        anchors = ({pid: list(rs[0].plain_rewards or []) for pid, rs in groups.items()}
                   if baseline == "plain" else None)
        adv = compute_advantages(estimator, torch.tensor([float(r.reward) for r in flat]), [r.id for r in flat],
                                 anchors=anchors, norm_by_std=norm_by_std).tolist()
        opens = [starts_with_step(r.response) for r in flat]
        per_group: dict[str, list[tuple[bool, float, float]]] = defaultdict(list)
        for r, step, a in zip(flat, opens, adv):
            per_group[r.id].append((step, a, float(r.reward)))
        n = len(per_group)
        row.update(
            step_share=sum(sum(s for s, _, _ in g) / len(g) for g in per_group.values()) / n,
            all_step=sum(all(s for s, _, _ in g) for g in per_group.values()) / n,
            success=sum(sum(x for _, _, x in g) / len(g) for g in per_group.values()) / n,
            opening_advantage=sum(sum(a for s, a, _ in g if s) / len(g) for g in per_group.values()) / n,
        )
        rows.append(row)
    return rows
