"""Pareto front and parent selection on hand-made dev-score matrices."""

from __future__ import annotations

import random

import pytest

from p2o_cli.files.records import Template
from p2o_cli.gepa.pareto import (
    dev_coverage,
    dominates,
    front_templates,
    pareto_front,
    select_parents,
    unique_by_text,
    weighted_sample,
)

DEV = ["p1", "p2", "p3"]


def tpl(tid: str, scores: list[float], text: str | None = None) -> Template:
    return Template(tid, text if text is not None else f"text of {tid}", dev_ids=list(DEV), dev_scores=scores)


def test_strict_domination() -> None:
    assert dominates([1, 1, 0], [1, 0, 0])
    assert not dominates([1, 0, 0], [1, 0, 0])  # equal: neither dominates
    assert not dominates([1, 0, 0], [0, 1, 0])  # incomparable
    assert not dominates([0, 0, 0], [1, 0, 0])
    with pytest.raises(ValueError):
        dominates([1], [1, 0])


def test_complementary_templates_all_stay_on_the_front() -> None:
    # A solves {1,2}, B {2,3}, C {1,3}: no one dominates another; the empty seed is dominated.
    scores = [[0, 0, 0], [1, 1, 0], [0, 1, 1], [1, 0, 1]]
    assert pareto_front(scores) == [1, 2, 3]


def test_dominated_template_leaves_the_front() -> None:
    scores = [[1, 0, 0], [1, 1, 0], [0, 0, 1], [1, 1, 0]]
    # [1,0,0] is dominated by [1,1,0]; the two equal [1,1,0] both stay.
    assert pareto_front(scores) == [1, 2, 3]
    assert pareto_front([[0, 0, 0], [0, 0, 0]]) == [0, 1]
    assert pareto_front([]) == []


def test_duplicate_texts_are_merged_first() -> None:
    a, dup = tpl("a", [1, 1, 0], "Be careful."), tpl("b", [1, 1, 0], "  Be careful.\n")
    c = tpl("c", [0, 0, 1])
    assert [t.template_id for t in unique_by_text([a, dup, c])] == ["a", "c"]
    assert [t.template_id for t in front_templates([a, dup, c])] == ["a", "c"]


def test_select_whole_front_when_it_fits() -> None:
    templates = [tpl("t0", [0, 0, 0], ""), tpl("A", [1, 1, 0]), tpl("B", [0, 1, 1]), tpl("C", [1, 0, 1])]
    parents = select_parents(templates, 3, random.Random(0))
    assert [p.template_id for p in parents] == ["A", "B", "C"]


def test_select_samples_distinct_members_when_front_is_wide() -> None:
    dev = [f"p{i}" for i in range(8)]
    # Eight templates each solving a different single problem: all on the front.
    templates = [
        Template(f"s{i}", f"t{i}", dev_ids=dev, dev_scores=[float(j == i) for j in range(8)]) for i in range(8)
    ]
    picked = select_parents(templates, 3, random.Random(1))
    assert len(picked) == 3 and len({p.template_id for p in picked}) == 3
    again = select_parents(templates, 3, random.Random(1))
    assert [p.template_id for p in picked] == [p.template_id for p in again]


def test_weighted_sample_prefers_high_scores_but_floor_keeps_zero_drawable() -> None:
    strong, zero = tpl("strong", [1, 1, 1]), tpl("zero", [0, 0, 0])
    firsts = [weighted_sample([strong, zero], 1, random.Random(s))[0].template_id for s in range(2000)]
    share = firsts.count("zero") / len(firsts)
    assert 0 < share < 0.05  # weight 0.01 against 1.0
    # With everything at zero the floor makes the draw uniform.
    zeros = [tpl(f"z{i}", [0, 0, 0], f"z{i}") for i in range(2)]
    firsts = [weighted_sample(zeros, 1, random.Random(s))[0].template_id for s in range(1000)]
    assert 0.4 < firsts.count("z0") / 1000 < 0.6


def test_mismatched_dev_ids_are_refused() -> None:
    odd = Template("odd", "x", dev_ids=["q"], dev_scores=[1.0])
    with pytest.raises(ValueError, match="different dev problems"):
        front_templates([tpl("a", [1, 0, 0]), odd])


def test_dev_coverage() -> None:
    assert dev_coverage([tpl("A", [1, 1, 0]), tpl("B", [0, 1, 0])]) == pytest.approx(2 / 3)
    assert dev_coverage([tpl("A", [1, 1, 0]), tpl("C", [0, 0, 1])]) == 1.0
