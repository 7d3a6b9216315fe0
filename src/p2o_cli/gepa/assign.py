"""From GEPA's templates to per-problem assignments: greedy set cover, then K draws per problem.

The covering set is a small group of templates that together solve every dev problem any
template solves. Each hard problem then gets K templates (one per rollout) drawn, weighted by
mean dev score, from the covering templates known to solve it (on dev, or on a hard-train
minibatch), else from the whole covering set. Draws are without replacement until the
candidates run out, so a group of K rollouts sees as many different templates as it can —
the paper's point is diverse templates inside one group; ``same_template_in_group`` is its
ablation (one template for all K). ``plain_in_group`` gives the last few of the K rollouts the
empty template, the plain prompt: under the group baseline a behaviour all K templated
rollouts share gets advantages that sum to zero, and a plain rollout beside them is the
contrast that credits it.

Each problem's draws come from ``random.Random(f"{seed}:{id}")``: deterministic for a seed,
and independent of the order or the other members of the hard file.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..errors import P2OError
from ..files.records import Assignment, Template
from ..reward.values import solved
from .pareto import SELECTION_FLOOR, mean_score, unique_by_text, weighted_sample


@dataclass
class AssignResult:
    assignments: list[Assignment]
    cover: list[Template]  # the covering set, in the order greedy picked it
    covered: int  # dev problems the covering set solves
    fallback: int  # problems no covering template was known to solve


def dev_solved(template: Template) -> set[str]:
    return {pid for pid, score in zip(template.dev_ids, template.dev_scores) if solved(score)}


def solved_by(template: Template) -> set[str]:
    """Every hard id the template is known to solve: on dev, or on its minibatch evaluations."""
    return dev_solved(template) | set(template.train_solved)


def greedy_set_cover(templates: Sequence[Template]) -> list[Template]:
    """A small set of templates solving every dev problem that any of them solves.

    Greedy (the classic ln n approximation): take the template solving most still-uncovered
    problems; ties go to the higher mean dev score, then to the earlier template.
    """
    sets = [dev_solved(t) for t in templates]
    uncovered = set().union(*sets) if sets else set()
    chosen: list[int] = []
    while uncovered:
        best = max(
            (i for i in range(len(templates)) if i not in chosen),
            key=lambda i: (len(sets[i] & uncovered), mean_score(templates[i]), -i),
        )
        gain = sets[best] & uncovered
        if not gain:
            break
        chosen.append(best)
        uncovered -= gain
    return [templates[i] for i in chosen]


def _draw(candidates: Sequence[Template], k: int, rng: random.Random, floor: float) -> list[Template]:
    """K templates: rounds of weighted draws without replacement, so repeats come only when needed."""
    out: list[Template] = []
    while len(out) < k:
        out.extend(weighted_sample(candidates, min(k - len(out), len(candidates)), rng, floor))
    return out


def assign_templates(
    hard_ids: Sequence[str],
    templates: Sequence[Template],
    k: int,
    seed: int = 0,
    same_template_in_group: bool = False,
    floor: float = SELECTION_FLOOR,
    plain_rewards: Mapping[str, Sequence[float]] | None = None,
    plain_in_group: int = 0,
) -> AssignResult:
    """K template ids for every hard id (see the module docstring).

    ``plain_rewards`` (hard id -> the rewards that made it hard) is copied into each
    assignment, so the rollouts it produces can carry their problem's plain baseline.
    """
    plain_rewards = plain_rewards or {}
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if not 0 <= plain_in_group < k:
        raise ValueError(f"plain_in_group must lie in [0, k), got {plain_in_group} with k={k}")
    unique = unique_by_text(templates)
    if not unique:
        raise P2OError("no templates to assign")
    plain = next((t for t in unique if t.text == ""), None)
    if plain_in_group and plain is None:
        raise P2OError("plain rollouts in a group need the empty template among the templates (GEPA's seed)")
    n_templated = k - plain_in_group
    cover = greedy_set_cover(unique)
    covered = len(set().union(*(dev_solved(t) for t in cover))) if cover else 0
    if not cover:
        # No template solves any dev problem: the best one by mean score (the seed on ties)
        # stands in, so every problem still gets a valid assignment.
        cover = [max(unique, key=lambda t: (mean_score(t), -unique.index(t)))]
    solves = [solved_by(t) for t in cover]
    assignments: list[Assignment] = []
    fallback = 0
    for pid in hard_ids:
        rng = random.Random(f"{seed}:{pid}")
        candidates = [t for t, s in zip(cover, solves) if pid in s]
        if not candidates:
            candidates = cover
            fallback += 1
        if same_template_in_group:
            picked = weighted_sample(candidates, 1, rng, floor) * n_templated
        else:
            picked = _draw(candidates, n_templated, rng, floor)
        picked += [plain] * plain_in_group  # type: ignore[list-item]
        assignments.append(Assignment(pid, [t.template_id for t in picked], list(plain_rewards.get(pid, []))))
    return AssignResult(assignments, cover, covered, fallback)
