"""Greedy set cover and per-problem template assignment."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest
from typer.testing import CliRunner

from p2o_cli.cli import app
from p2o_cli.errors import P2OError
from p2o_cli.files.records import Assignment, Hard, Template, read_records, write_records
from p2o_cli.gepa.assign import assign_templates, greedy_set_cover

DEV = ["d1", "d2", "d3", "d4"]


def tpl(tid: str, solved: set[str], train: list[str] | None = None, text: str | None = None) -> Template:
    return Template(
        tid,
        text if text is not None else f"text {tid}",
        dev_ids=list(DEV),
        dev_scores=[float(d in solved) for d in DEV],
        train_solved=train or [],
    )


TEMPLATES = [
    tpl("t0", set(), text=""),
    tpl("A", {"d1", "d2"}),
    tpl("B", {"d2", "d3"}, train=["h1"]),
    tpl("C", {"d1", "d3"}),
    tpl("D", {"d4"}),
    tpl("E", {"d1", "d2", "d3"}),
]


def test_set_cover_on_complementary_templates() -> None:
    # A {1,2}, B {2,3}, C {1,3}: two of them cover {1,2,3}; greedy takes A (first on ties), then B.
    cover = greedy_set_cover(TEMPLATES[:4])
    assert [t.template_id for t in cover] == ["A", "B"]


def test_set_cover_prefers_the_big_set_and_is_minimal() -> None:
    cover = greedy_set_cover(TEMPLATES)
    assert [t.template_id for t in cover] == ["E", "D"]
    assert greedy_set_cover([TEMPLATES[0]]) == []


def test_assignment_uses_the_templates_that_solved_each_problem() -> None:
    result = assign_templates(["d1", "d4", "h1", "h9"], TEMPLATES[:5], k=6, seed=3)
    by_id = {a.id: a.template_ids for a in result.assignments}
    cover = [t.template_id for t in result.cover]
    assert cover == ["A", "B", "D"] and result.covered == 4
    assert set(by_id["d1"]) == {"A"}  # only A (of the cover) solves d1
    assert set(by_id["d4"]) == {"D"}
    assert set(by_id["h1"]) == {"B"}  # B solved the hard-train problem h1 on its minibatch
    # h9 is solved by no one: drawn from the whole cover, all three used before any repeats.
    assert len(by_id["h9"]) == 6 and set(by_id["h9"][:3]) == {"A", "B", "D"}
    assert Counter(by_id["h9"]) == Counter({"A": 2, "B": 2, "D": 2})
    assert result.fallback == 1


def test_assignment_is_deterministic_and_order_independent() -> None:
    ids = [f"h{i}" for i in range(20)]
    a = assign_templates(ids, TEMPLATES, k=6, seed=7).assignments
    b = assign_templates(list(reversed(ids)), TEMPLATES, k=6, seed=7).assignments
    assert sorted(a, key=lambda x: x.id) == sorted(b, key=lambda x: x.id)
    c = assign_templates(ids, TEMPLATES, k=6, seed=8).assignments
    assert a != c


def test_same_template_in_group_ablation() -> None:
    ids = [f"h{i}" for i in range(10)]
    result = assign_templates(ids, TEMPLATES, k=6, seed=0, same_template_in_group=True)
    assert all(len(a.template_ids) == 6 and len(set(a.template_ids)) == 1 for a in result.assignments)
    assert {a.template_ids[0] for a in result.assignments} <= {"E", "D"}


def test_plain_in_group_keeps_the_last_rollouts_plain() -> None:
    ids = [f"h{i}" for i in range(10)]
    paper = assign_templates(ids, TEMPLATES, k=6, seed=0).assignments
    result = assign_templates(ids, TEMPLATES, k=6, seed=0, plain_in_group=1).assignments
    for a, p in zip(result, paper):
        assert len(a.template_ids) == 6 and a.template_ids[-1] == "t0"  # the empty template: the plain prompt
        assert a.template_ids[:5] == p.template_ids[:5]  # the same draws for the templated five
    same = assign_templates(ids, TEMPLATES, k=6, seed=0, same_template_in_group=True, plain_in_group=2).assignments
    assert all(a.template_ids[-2:] == ["t0", "t0"] and len(set(a.template_ids[:4])) == 1 for a in same)
    with pytest.raises(ValueError, match="plain_in_group"):
        assign_templates(ids, TEMPLATES, k=2, plain_in_group=2)
    with pytest.raises(P2OError, match="empty template"):
        assign_templates(ids, TEMPLATES[1:], k=6, plain_in_group=1)


def test_nothing_solved_falls_back_to_the_seed_template() -> None:
    result = assign_templates(["x"], [TEMPLATES[0], tpl("Z", set())], k=3)
    assert result.assignments == [Assignment("x", ["t0", "t0", "t0"])]
    with pytest.raises(ValueError):
        assign_templates(["x"], [], k=3)


def test_assign_command(tmp_path) -> None:
    templates = tmp_path / "templates.jsonl"
    write_records(templates, TEMPLATES)
    hard = tmp_path / "hard.jsonl"
    write_records(hard, [Hard(f"h{i}", f"q{i}", "1", [0.0, float(i == 3)], i / 10) for i in range(5)])
    runner = CliRunner()
    outs = []
    for name in ("a.jsonl", "b.jsonl"):
        out = tmp_path / name
        result = runner.invoke(app, ["assign", "--templates", str(templates), "--hard", str(hard),
                                     "--k", "4", "--seed", "1", "--out", str(out)], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    records = read_records(tmp_path / "a.jsonl", Assignment)
    assert [r.id for r in records] == [f"h{i}" for i in range(5)]
    assert all(len(r.template_ids) == 4 for r in records)
    # each assignment carries its hard record's plain rewards, for --templated-baseline plain
    assert [r.plain_rewards for r in records] == [[0.0, 0.0]] * 3 + [[0.0, 1.0], [0.0, 0.0]]

    out = tmp_path / "same.jsonl"
    result = runner.invoke(app, ["assign", "--templates", str(templates), "--hard", str(hard), "--k", "4",
                                 "--same-template-in-group", "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert all(len(set(r.template_ids)) == 1 for r in read_records(out, Assignment))

    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(orjson.dumps({"template_id": "x"}) + b"\n")
    result = runner.invoke(app, ["assign", "--templates", str(bad), "--hard", str(hard), "--out", str(out)])
    assert result.exit_code == 2 and "bad.jsonl:1" in result.output
