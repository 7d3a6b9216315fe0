"""The GEPA loop on a scripted world: budget accounting, batching, leak rejection, resume."""

from __future__ import annotations

import re

import orjson
import pytest

from helpers import CATEGORIES, BoxScorer, ChatTokenizer, SkillEngine, make_hard
from p2o_cli.files.records import MAX_TEMPLATE_CHARS, Hard
from p2o_cli.gepa.acceptance import leaked_answer
from p2o_cli.gepa.config import GepaConfig
from p2o_cli.gepa.reflect import ReflectionRequest
from p2o_cli.gepa.search import GepaProgress, run_gepa
from p2o_cli.gepa.state import OUTCOMES, load_state, split_sizes


class SkillReflector:
    """Adds the skill of the first failed problem; a pure function of the request (resumable)."""

    def __init__(self, leak: bool = False):
        self.leak = leak
        self.requests: list[ReflectionRequest] = []

    def propose(self, requests):
        self.requests.extend(requests)
        out = []
        for req in requests:
            failed = [f for f in req.feedback if not f.correct]
            if self.leak:
                out.append(f"Remember that the answer is {failed[0].gold}.")
                continue
            category = re.match(r"\[(\w+)\]", failed[0].problem).group(1)
            out.append(f"{req.parent_text} use {category}.".strip())
        return out


def config(**kw) -> GepaConfig:
    base = {"width": 2, "minibatch": 2, "dev_size": 4, "budget": 60, "seed": 5, "gepa_max_new_tokens": 16}
    base.update(kw)
    return GepaConfig(**base)


def run(hard, cfg, reflector=None, **kw):
    engine = SkillEngine(hard)
    reflector = reflector or SkillReflector()
    result = run_gepa(hard, engine, ChatTokenizer(), reflector, BoxScorer(), cfg, **kw)
    return result, engine, reflector


def test_split_sizes() -> None:
    assert split_sizes(1000, 300) == 300
    assert split_sizes(450, 300) == 300
    assert split_sizes(449, 300) == 224
    assert split_sizes(3, 300) == 1
    with pytest.raises(ValueError):
        split_sizes(1, 300)


def test_leaked_answer() -> None:
    assert leaked_answer("The answer is 1037.", ["1037"]) == "1037"
    assert leaked_answer("use 1,037 here", ["1037"]) == "1037"
    assert leaked_answer("Check 10370 and 1037.5 and x1037", ["1037"]) is None
    assert leaked_answer("it equals \\frac{1}{2}", ["\\frac{1}{2}"]) == "\\frac{1}{2}"
    assert leaked_answer("anything", ["", "  "]) is None


def test_search_improves_and_records_lineage(tmp_path) -> None:
    hard = make_hard()
    metrics = tmp_path / "metrics.jsonl"
    result, engine, _ = run(hard, config(budget=200), metrics_path=metrics)
    seed = result.templates[0]
    assert (seed.template_id, seed.text, seed.parent_id, seed.iteration) == ("t0", "", None, 0)
    assert seed.dev_scores == [0.0] * 4 and seed.dev_ids == result.dev_ids
    assert len(result.dev_ids) == 4 and len(result.train_ids) == 8
    assert set(result.dev_ids) | set(result.train_ids) == {h.id for h in hard}
    kept = result.templates[1:]
    assert kept, "the scripted reflector always helps"
    ids = {t.template_id for t in result.templates}
    for t in kept:
        assert re.fullmatch(r"g\d+-\d+", t.template_id) and t.parent_id in ids and t.iteration >= 1
        assert len(t.dev_scores) == 4 and set(t.train_solved) <= set(result.train_ids) and t.train_solved
    best = max(sum(t.dev_scores) for t in result.templates)
    assert best >= 2  # templates pile up skills
    assert all(temp == 0.0 for temp in engine.temperatures)  # greedy evaluation by default
    lines = [orjson.loads(line) for line in metrics.read_bytes().splitlines()]
    assert [line["gepa/iteration"] for line in lines] == list(range(result.iterations + 1))
    last = lines[-1]
    assert last["gepa/spent"] == result.spent and last["gepa/front_size"] == len(result.front)
    for key in ("gepa/parent_scores", "gepa/child_scores", "gepa/kept", "gepa/best_dev_mean", "gepa/dev_coverage"):
        assert key in last
    assert last["gepa/dev_coverage"] >= best / 4


def test_every_proposed_child_is_recorded_with_its_outcome(tmp_path) -> None:
    hard = make_hard()
    state_path = tmp_path / "state.json"
    result, _, reflector = run(hard, config(budget=200), state_path=state_path)
    proposals = load_state(state_path).proposals
    assert len(proposals) == result.reflections == len(reflector.requests)
    kept = [p for p in proposals if p.outcome == "kept"]
    # The kept ones are exactly the templates past the seed, with the scores that let them in.
    assert [p.template_id for p in kept] == [t.template_id for t in result.templates[1:]]
    assert [p.text for p in kept] == [t.text for t in result.templates[1:]]
    assert all(p.child_score > p.parent_score for p in kept)
    for p, request in zip(proposals, reflector.requests):
        assert p.parent_id == request.parent_id and p.minibatch == [f.problem_id for f in request.feedback]
        assert p.outcome in OUTCOMES and 1 <= p.iteration <= result.iterations
    # Children evaluated and refused did not beat their parent; duplicates were never evaluated.
    assert all(p.child_score <= p.parent_score for p in proposals if p.outcome == "not_better")
    assert all(p.child_score is None for p in proposals if p.outcome == "duplicate")
    assert sum(p.outcome == "duplicate" for p in proposals) == result.duplicates


def test_leaking_and_unusable_children_are_recorded_as_such(tmp_path) -> None:
    state_path = tmp_path / "state.json"
    result, _, _ = run(make_hard(), config(budget=30), reflector=SkillReflector(leak=True), state_path=state_path)
    outcomes = [p.outcome for p in load_state(state_path).proposals]
    assert outcomes == ["leaks_answer"] * result.rejected_leaks and outcomes

    class Rambling:
        def propose(self, requests):
            return ["x" * (MAX_TEMPLATE_CHARS + 5) for _ in requests]

    result, _, _ = run(make_hard(), config(budget=20), reflector=Rambling(), state_path=state_path)
    proposals = load_state(state_path).proposals
    assert [p.outcome for p in proposals] == ["unusable"] * result.skipped and proposals
    assert all(len(p.text) == MAX_TEMPLATE_CHARS and p.child_score is None for p in proposals)


def test_budget_is_counted_to_the_rollout() -> None:
    hard = make_hard()
    cfg = config(budget=37)
    iterations: list[dict] = []
    result, engine, _ = run(hard, cfg, on_iteration=lambda p: iterations.append(dict(p.metrics)))
    # Every completion the engine generated is one rollout, and the report says exactly that many.
    assert result.spent == engine.rollouts
    dev, b = len(result.dev_ids), cfg.minibatch
    children = result.reflections - result.skipped - result.duplicates - result.rejected_leaks
    assert result.spent == dev + b * result.proposals + b * children + dev * result.kept
    # The budget stops the run, overshooting by less than one iteration's worth.
    assert result.stop_reason == "budget"
    assert cfg.budget <= result.spent < cfg.budget + cfg.width * (2 * b + dev)
    # Before the last iteration the budget was not yet spent.
    assert iterations[-2]["gepa/spent"] < cfg.budget


def test_budget_checked_before_each_proposal() -> None:
    # After the seed (4) only 2 rollouts remain: one proposal, not two, is started.
    result, engine, _ = run(make_hard(), config(budget=6))
    assert result.iterations == 1 and result.proposals == 1
    assert result.spent == engine.rollouts
    # A budget the seed scoring already spends: no iteration at all.
    result, engine, _ = run(make_hard(), config(budget=4))
    assert result.iterations == 0 and result.spent == 4 == engine.rollouts


def test_parents_are_evaluated_in_one_batched_call() -> None:
    hard = make_hard()
    calls_at: list[int] = []
    engine = SkillEngine(hard)
    result = run_gepa(
        hard, engine, ChatTokenizer(), SkillReflector(), BoxScorer(), config(width=3, budget=150),
        on_iteration=lambda p: calls_at.append(len(engine.calls)),
    )
    assert engine.calls[0] == 4  # the seed on dev
    for it in range(1, result.iterations + 1):
        calls = engine.calls[calls_at[it - 1] : calls_at[it]]
        # parent call, child call, dev call (at most 3 engine calls per iteration)...
        assert 1 <= len(calls) <= 3
    # ...and the first of them holds every parent's minibatch at once: W·B prompts.
    first_iteration = engine.calls[calls_at[0] : calls_at[1]]
    assert first_iteration[0] == 1 * 2  # only the seed exists: one parent
    widths = [engine.calls[calls_at[i]] for i in range(1, result.iterations)]
    assert max(widths) == 3 * 2  # once the front is wide, three parents in one call


def test_children_leaking_answers_are_rejected_before_evaluation() -> None:
    hard = make_hard()
    result, engine, reflector = run(hard, config(budget=30), reflector=SkillReflector(leak=True))
    assert result.rejected_leaks == result.reflections == len(reflector.requests) > 0
    assert result.kept == 0 and [t.template_id for t in result.templates] == ["t0"]
    # Rejected children cost nothing: only the seed and the parent minibatches were generated.
    assert result.spent == engine.rollouts == 4 + 2 * result.proposals


def test_what_leaks_is_the_rewards_to_say() -> None:
    """The guard asks the scorer's ``leaks`` hook, not the gold: here a reward that says naming the
    problem's category would give it away, so every "use <category>" child is refused."""

    class CategoryLeaks(BoxScorer):
        def leaks(self, problem):
            return ["use " + problem["problem"].split("]")[0].lstrip("[")]

    hard = make_hard()
    result = run_gepa(hard, SkillEngine(hard), ChatTokenizer(), SkillReflector(), CategoryLeaks(), config(budget=30))
    assert result.rejected_leaks == result.reflections > 0 and result.kept == 0
    # With the gold as what leaks, the same children are kept (test_search_improves_and_records_lineage).
    assert run(hard, config(budget=30))[0].kept > 0


def test_skipped_and_perfect_proposals() -> None:
    class NoneReflector:
        def propose(self, requests):
            return [None] * len(requests)

    result, engine, _ = run(make_hard(), config(budget=20), reflector=NoneReflector())
    assert result.skipped == result.reflections > 0 and result.kept == 0
    assert result.spent == engine.rollouts

    class SolveAll:
        def propose(self, requests):
            return [" ".join(f"use {c}." for c in CATEGORIES) for _ in requests]

    result, engine, _ = run(make_hard(), config(budget=40), reflector=SolveAll())
    assert result.kept == 1 and result.perfect > 0  # the all-solver is never reflected on again
    assert result.duplicates >= 0 and result.spent == engine.rollouts


def test_resume_continues_to_the_same_result(tmp_path) -> None:
    hard = make_hard()
    cfg = config(width=3, budget=120)
    full, _, _ = run(hard, cfg, state_path=tmp_path / "full.json")
    assert full.iterations >= 3

    class Stop(Exception):
        pass

    def interrupt(progress: GepaProgress) -> None:
        if progress.iteration == 1:
            raise Stop

    state = tmp_path / "state.json"
    with pytest.raises(Stop):
        run(hard, cfg, state_path=state, on_iteration=interrupt)
    saved = orjson.loads(state.read_bytes())
    assert saved["iteration"] == 1
    resumed, engine, _ = run(hard, cfg, state_path=state, resume=True)
    assert resumed.templates == full.templates
    assert (resumed.spent, resumed.iterations, resumed.front) == (full.spent, full.iterations, full.front)
    # The resumed run did not redo the seed or iteration 1.
    assert engine.rollouts == full.spent - saved["spent"]

    # A finished search resumes to itself without generating anything; a bigger budget extends it.
    again, engine, _ = run(hard, cfg, state_path=state, resume=True)
    assert again.templates == full.templates and engine.rollouts == 0
    more, engine, _ = run(hard, config(width=3, budget=200), state_path=state, resume=True)
    assert more.spent >= 200 and more.iterations > full.iterations

    with pytest.raises(ValueError, match="minibatch"):
        run(hard, config(width=3, budget=120, minibatch=3), state_path=state, resume=True)


# ---------------------------------------------------------------- the command line


def test_gepa_and_assign_commands(tmp_path, tiny_model_dir, monkeypatch) -> None:
    from typer.testing import CliRunner

    from p2o_cli.cli import app
    from p2o_cli.files.records import Assignment, Template, read_records, write_records

    runner = CliRunner()
    hard = tmp_path / "hard.jsonl"
    write_records(hard, [Hard(f"q{i}", f"What is {i}+{i}?", str(2 * i), [0.0] * 3, 0.0) for i in range(4)])
    out, metrics = tmp_path / "templates.jsonl", tmp_path / "metrics.jsonl"
    args = ["gepa", "--hard", str(hard), "--model", str(tiny_model_dir), "--reflector", "toy", "--out", str(out),
            "--width", "2", "--minibatch", "1", "--dev-size", "300", "--budget", "8", "--gepa-max-new-tokens", "4",
            "--metrics", str(metrics), "--seed", "1"]
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "spent" in result.output
    templates = read_records(out, Template)
    assert templates[0].template_id == "t0" and len(templates[0].dev_ids) == 2  # half of 4 hard problems
    assert (tmp_path / "templates.jsonl.state.json").is_file()
    lines = [orjson.loads(line) for line in metrics.read_bytes().splitlines()]
    assert lines[-1]["gepa/spent"] >= 8

    assignments = tmp_path / "assignments.jsonl"
    result = runner.invoke(app, ["assign", "--templates", str(out), "--hard", str(hard), "--k", "3",
                                 "--out", str(assignments)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert len(read_records(assignments, Assignment)) == 4

    # A missing API key is a usage error that names the variable, before any model loads.
    monkeypatch.delenv("MOONSHOT_API_KEY", raising=False)
    result = runner.invoke(app, ["gepa", "--hard", str(hard), "--model", str(tmp_path / "absent"),
                                 "--reflector", "kimi", "--out", str(tmp_path / "k.jsonl")])
    assert result.exit_code == 2 and "MOONSHOT_API_KEY" in result.output
    monkeypatch.setenv("MOONSHOT_API_KEY", "sk-do-not-print-me")
    result = runner.invoke(app, ["gepa", "--hard", str(hard), "--model", str(tmp_path / "absent"),
                                 "--reflector", "kimi", "--out", str(tmp_path / "k.jsonl")])
    assert result.exit_code == 2 and "sk-do-not-print-me" not in result.output


def test_live_view_renders_the_front() -> None:
    import io

    from rich.console import Console

    from p2o_cli.gepa.view import front_table

    seen: list[GepaProgress] = []
    run(make_hard(), config(budget=40), on_iteration=seen.append)
    console = Console(file=io.StringIO(), width=120)
    console.print(front_table(seen[-1]))
    text = console.file.getvalue()
    assert "GEPA iteration" in text and "use" in text
    from p2o_cli.gepa.view import progress_line

    line = progress_line(seen[-1], 75.0)
    spent = seen[-1].metrics["gepa/spent"]
    assert line.startswith(
        f"GEPA iteration {seen[-1].iteration}: budget {spent}/40 rollouts spent ({max(40 - spent, 0)} left)"
    )
    assert line.endswith("elapsed 1:15")


def test_off_a_terminal_each_iteration_is_one_timestamped_line(capsys) -> None:
    from p2o_cli.gepa.view import live_front

    with live_front(False) as hook:
        run(make_hard(), config(budget=40), on_iteration=hook)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) >= 2
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d GEPA iteration \d+: budget \d+/40", ln) for ln in lines), lines
