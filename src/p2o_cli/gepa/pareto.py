"""Pure functions over dev-score vectors: the Pareto front and parent selection.

A template's dev-score vector z holds its reward (in [0, 1]) on each dev problem. z_j dominates z_i
iff z_j ≥ z_i everywhere and > somewhere (strict domination), so templates that solve
*different* problems all stay on the front even when none beats the others on average —
that diversity is what lets the set cover later give each hard problem its own template.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from ..errors import P2OError
from ..files.records import Template
from ..reward.values import solved

# Weight of an all-zero template when sampling parents: small, but not zero, so the empty
# seed template (often all zeros on a hard dev set) can still be drawn and improved on.
SELECTION_FLOOR = 0.01


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """True iff ``a`` is ≥ ``b`` on every problem and > on at least one."""
    if len(a) != len(b):
        raise ValueError(f"score vectors differ in length ({len(a)} vs {len(b)})")
    strictly = False
    for x, y in zip(a, b):
        if x < y:
            return False
        if x > y:
            strictly = True
    return strictly


def pareto_front(scores: Sequence[Sequence[float]]) -> list[int]:
    """Indices (ascending) of the vectors no other vector strictly dominates.

    Equal vectors do not dominate each other, so both stay; merge duplicate *texts* first
    with :func:`unique_by_text` when that matters.
    """
    return [i for i, zi in enumerate(scores) if not any(dominates(zj, zi) for j, zj in enumerate(scores) if j != i)]


def unique_by_text(templates: Sequence[Template]) -> list[Template]:
    """The first template of each distinct text (whitespace at the ends ignored), in order."""
    seen: set[str] = set()
    out: list[Template] = []
    for template in templates:
        key = template.text.strip()
        if key not in seen:
            seen.add(key)
            out.append(template)
    return out


def mean_score(template: Template) -> float:
    return sum(template.dev_scores) / len(template.dev_scores) if template.dev_scores else 0.0


def front_templates(templates: Sequence[Template]) -> list[Template]:
    """The non-dominated templates (duplicate texts merged first), in their original order.

    All templates must be scored on the same dev problems in the same order.
    """
    unique = unique_by_text(templates)
    dev_ids = unique[0].dev_ids if unique else []
    for template in unique:
        if template.dev_ids != dev_ids:
            raise P2OError(f"template {template.template_id!r} was scored on different dev problems")
    return [unique[i] for i in pareto_front([t.dev_scores for t in unique])]


def weighted_sample(
    items: Sequence[Template], k: int, rng: random.Random, floor: float = SELECTION_FLOOR
) -> list[Template]:
    """``k`` distinct items drawn without replacement, each draw ∝ max(mean dev score, floor)."""
    pool = list(items)
    weights = [max(mean_score(t), floor) for t in pool]
    chosen: list[Template] = []
    for _ in range(min(k, len(pool))):
        r = rng.random() * sum(weights)
        index = len(pool) - 1  # guards against float round-off at the top end
        for i, w in enumerate(weights):
            r -= w
            if r < 0:
                index = i
                break
        chosen.append(pool.pop(index))
        weights.pop(index)
    return chosen


def select_parents(
    templates: Sequence[Template], width: int, rng: random.Random, floor: float = SELECTION_FLOOR
) -> list[Template]:
    """Up to ``width`` parents: the whole front if it is small enough, else a weighted sample of it."""
    if width < 1:
        raise ValueError(f"width must be at least 1, got {width}")
    front = front_templates(templates)
    if len(front) <= width:
        return front
    return weighted_sample(front, width, rng, floor)


def dev_coverage(templates: Sequence[Template]) -> float:
    """Fraction of dev problems solved by at least one template."""
    covered: set[str] = set()
    dev: set[str] = set()
    for template in templates:
        dev.update(template.dev_ids)
        covered.update(i for i, s in zip(template.dev_ids, template.dev_scores) if solved(s))
    return len(covered) / len(dev) if dev else 0.0
