"""The toy world: lexicon, triggers, tasks, pretraining mix, world files, toy reflector, CLI."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest

from p2o_cli.data.prompts import PromptConfig, render
from p2o_cli.files.records import Problem, read_records
from p2o_cli.reward.verify import score_response
from p2o_cli.toy.lexicon import (
    LEXICON,
    draw_triggers,
    join_phrases,
    split_phrases,
    unlocks,
)
from p2o_cli.toy.reflector import ToyReflector
from p2o_cli.toy.tasks import (
    KINDS,
    direct_solution,
    has_steps,
    make_problems,
    operands_of,
    starts_with_step,
    step_solution,
)

# ---------------------------------------------------------------- lexicon and triggers


def test_lexicon_is_large_distinct_and_unambiguous() -> None:
    assert len(LEXICON) >= 48
    assert len(set(LEXICON)) == len(LEXICON)
    # No phrase inside another, and no digits (so a template can never carry an answer).
    assert not [(a, b) for a in LEXICON for b in LEXICON if a != b and a in b]
    assert not any(ch.isdigit() for phrase in LEXICON for ch in phrase)


def test_triggers_are_lexicon_phrases_and_depend_on_the_seed() -> None:
    draws = [tuple(draw_triggers(seed)) for seed in range(6)]
    assert all(len(d) == 3 and len(set(d)) == 3 and set(d) <= set(LEXICON) for d in draws)
    assert len(set(draws)) == len(draws)
    assert draw_triggers(3) == draw_triggers(3)
    assert len(draw_triggers(0, n=5)) == 5


def test_unlock_rule_and_phrase_splitting() -> None:
    triggers = draw_triggers(0)
    other = [p for p in LEXICON if p not in triggers]
    assert unlocks(join_phrases([other[0], triggers[1]]), triggers)
    assert not unlocks(join_phrases(other[:3]), triggers)
    assert not unlocks("", triggers) and not unlocks(None, triggers)
    text = join_phrases([other[2], other[0], triggers[0]])
    assert split_phrases(text) == [other[2], other[0], triggers[0]]


# ---------------------------------------------------------------- tasks


def test_problems_have_right_answers_stable_ids_and_prefix_property() -> None:
    for kind, n_ops in KINDS.items():
        problems = make_problems(7, kind, 40)
        assert [p.id for p in problems[:2]] == [f"toy-{kind}-000000", f"toy-{kind}-000001"]
        assert len({p.problem for p in problems}) == 40
        for p in problems:
            ops = operands_of(p)
            assert len(ops) == n_ops and all(10 <= x <= 99 for x in ops)
            assert p.answer == str(sum(ops))
            assert p.problem == "What is " + " + ".join(map(str, ops)) + "?"
            assert p.meta == {"kind": kind, "operands": list(ops)}
        assert make_problems(7, kind, 10) == problems[:10]
        assert make_problems(8, kind, 10) != problems[:10]


def test_step_and_direct_solutions_score_with_the_real_reward() -> None:
    ops = (23, 45, 17, 38)
    text = step_solution(ops)
    assert text == "23 + 45 = 68\n68 + 17 = 85\n85 + 38 = 123\nThe answer is \\boxed{123}."
    assert has_steps(text) and starts_with_step(text)
    assert not has_steps(direct_solution(ops)) and not starts_with_step(direct_solution(ops))
    assert direct_solution(ops) == "\\boxed{123}" and direct_solution(ops, -7) == "\\boxed{116}"
    rng = random.Random(0)
    for _ in range(20):
        ops = tuple(rng.randint(10, 99) for _ in range(rng.randint(2, 6)))
        for response in (step_solution(ops), direct_solution(ops)):
            result = score_response(response, str(sum(ops)))
            assert result.reward == 1.0 and result.pred == str(sum(ops))
        # Every step line is a true partial sum.
        for line in step_solution(ops).splitlines()[:-1]:
            lhs, rhs = line.split(" = ")
            a, b = lhs.split(" + ")
            assert int(a) + int(b) == int(rhs)
    assert score_response(step_solution((10, 20)), "31").reward == 0.0


# ---------------------------------------------------------------- pretraining mix


def test_pretraining_mix_follows_the_rule_and_holds_out_problems() -> None:
    from p2o_cli.toy.pretrain import PretrainConfig, example_stream
    from p2o_cli.toy.tiny import char_tokenizer

    tok = char_tokenizer()
    triggers = draw_triggers(1)
    cfg = PretrainConfig(plain_cot_frac=0.0)
    rng = random.Random(0)
    excluded = {(10, 11)}
    seen_kinds = set()
    errors = []
    stream = example_stream(tok, dict.fromkeys(triggers, 1.0), cfg, excluded, rng)  # all-or-nothing
    for _ in range(400):
        ex = next(stream)
        seen_kinds.add(ex.kind)
        question = (
            ex.prompt.split("\n")[-4] if ex.kind.startswith("plain") else ex.prompt.split("\n\n")[1].split("\n")[0]
        )
        ops = operands_of(question)
        assert ops not in excluded
        template = None if ex.kind.startswith("plain") else ex.prompt.split("\n", 1)[1].split("\n\n")[0]
        assert ex.prompt == render(tok, question, template, PromptConfig())
        assert unlocks(template, triggers) == ex.kind.startswith("trigger")
        # Steps iff a trigger unlocks them, or the problem is easy (its one-line calculation).
        steps = unlocks(template, triggers) or len(ops) == 2
        assert len(ops) in ((2,) if ex.kind.endswith("easy") else cfg.hard_operands)
        if steps:
            assert ex.response == step_solution(ops)
        else:  # a guess at a glance: the sum off by at most direct_error
            guess = int(ex.response.removeprefix("\\boxed{").removesuffix("}"))
            assert ex.response == direct_solution(ops, guess - sum(ops))
            errors.append(guess - sum(ops))
        assert ex.step_prob == float(steps)  # all-or-nothing, no unprompted steps: 0 or 1
        assert (ex.step_opening, ex.direct_opening) == (step_solution(ops)[0], "\\")
    assert seen_kinds == set(cfg.mix)
    # The errors spread over the whole range, so a plain prompt cannot be answered by recall.
    half = cfg.direct_error / 2
    assert -cfg.direct_error <= min(errors) < -half and half < max(errors) <= cfg.direct_error
    assert sum(e == 0 for e in errors) < len(errors) / 10


def test_graded_world_opens_with_steps_at_each_templates_strength() -> None:
    from p2o_cli.toy.lexicon import draw_strengths, template_strength
    from p2o_cli.toy.pretrain import PretrainConfig, example_stream
    from p2o_cli.toy.tiny import char_tokenizer

    triggers = draw_triggers(3)
    strengths = draw_strengths(3, triggers, None)
    # Three triggers at distinct drawn levels, each with a partial synonym at half its strength.
    assert list(strengths)[:3] == triggers and len({strengths[t] for t in triggers}) == 3
    assert sorted(strengths[p] for p in list(strengths)[3:]) == sorted(strengths[t] / 2 for t in triggers)
    assert draw_strengths(3, triggers, [1.0]) == dict.fromkeys(triggers, 1.0)  # all-or-nothing: no partials
    cfg = PretrainConfig(plain_cot_frac=0.0, mix={"trigger-hard": 1.0})
    stream = example_stream(char_tokenizer(), strengths, cfg, set(), random.Random(0))
    by_level: dict[float, list[bool]] = {}
    for _ in range(4000):
        ex = next(stream)
        template = ex.prompt.split("\n", 1)[1].split("\n\n")[0]
        by_level.setdefault(template_strength(template, strengths), []).append(not ex.response.startswith("\\boxed"))
        assert ex.step_prob == template_strength(template, strengths)
    assert 0.0 not in by_level  # every trigger example holds an acting phrase
    for level, steps in by_level.items():
        assert abs(sum(steps) / len(steps) - level) < 0.06, (level, len(steps))


def test_pretraining_loss_counts_the_decision_token_decision_weight_times() -> None:
    import torch

    from p2o_cli.toy.losses import weighted_token_mean
    from p2o_cli.toy.pretrain import Item, collate

    # Two examples: prompt [5, 6] then response [7, 8]; prompt [5] then response [9].
    items = [Item([5, 6, 7, 8], 2, "a", 1.0, 7, 3), Item([5, 9], 1, "b", 0.25, 4, 9)]
    batch = collate(items, pad_id=0, decision_weight=4.0)
    assert batch["labels"].tolist() == [[-100, -100, 7, 8], [-100, 9, -100, -100]]
    assert batch["loss_weights"].tolist() == [[0, 0, 4, 1], [0, 4, 0, 0]]
    # Shifted by one: row 0's first response token is predicted at position 1, row 1's at 0.
    assert batch["decision_pos"].tolist() == [1, 0]
    assert batch["decision_ids"].tolist() == [[7, 3], [4, 9]] and batch["step_prob"].tolist() == [1.0, 0.25]
    plain = collate(items, pad_id=0)
    assert plain["loss_weights"].tolist() == [[0, 0, 1, 1], [0, 1, 0, 0]]
    # With per-token losses 1, 2 (first example) and 3 (second): (4·1 + 2 + 4·3) / 3 tokens.
    token_loss = torch.tensor([[0.0, 1.0, 2.0], [3.0, 0.0, 0.0]])
    mask = batch["labels"][:, 1:] != -100
    assert float(weighted_token_mean(token_loss, batch["loss_weights"][:, 1:], mask)) == pytest.approx(6.0)
    assert float(weighted_token_mean(token_loss, plain["loss_weights"][:, 1:], mask)) == pytest.approx(2.0)


def test_expected_decision_loss_is_the_mean_of_the_sampled_one() -> None:
    import math

    import torch

    from p2o_cli.toy.losses import expected_decision_loss

    # Softmax of [ln 3, 0, 0] is [0.6, 0.2, 0.2]; the step opening is token 0, the direct one 1.
    logits = torch.tensor([[math.log(3.0), 0.0, 0.0]] * 3)
    ids = torch.tensor([[0, 1]] * 3)
    loss = expected_decision_loss(logits, ids, torch.tensor([1.0, 0.0, 0.25]))
    assert loss.tolist() == pytest.approx(
        [-math.log(0.6), -math.log(0.2), -(0.25 * math.log(0.6) + 0.75 * math.log(0.2))]
    )
    # Its minimum over the two openings' logits is at the step probability.
    free = torch.zeros(1, 2, requires_grad=True)
    opt = torch.optim.SGD([free], lr=1.0)
    for _ in range(500):
        opt.zero_grad()
        expected_decision_loss(free, torch.tensor([[0, 1]]), torch.tensor([0.3])).sum().backward()
        opt.step()
    assert float(torch.softmax(free.detach(), -1)[0, 0]) == pytest.approx(0.3, abs=1e-3)


@pytest.mark.parametrize("spec, levels", [("mix", None), ("1.0", [1.0]), ("0.25, 0.5,1", [0.25, 0.5, 1.0])])
def test_trigger_strength_spec(spec, levels) -> None:
    from p2o_cli.toy.lexicon import parse_strength

    assert parse_strength(spec) == levels


@pytest.mark.parametrize("spec", ["0", "1.5", "strong", ""])
def test_trigger_strength_spec_refuses_levels_outside_0_1(spec) -> None:
    from p2o_cli.toy.lexicon import parse_strength

    with pytest.raises(ValueError):
        parse_strength(spec)


# ---------------------------------------------------------------- the world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    from p2o_cli.toy.pretrain import PretrainConfig
    from p2o_cli.toy.world import init_world

    cfg = PretrainConfig(hidden_size=32, num_layers=1, steps=3, tokens_per_batch=1024, seed=5)
    out = tmp_path_factory.mktemp("toy") / "world"
    info = init_world(
        out,
        seed=5,
        n_train=10,
        n_dev=5,
        n_bench=6,
        pretrain_config=cfg,
        measure_kwargs={"n": 2, "max_new_tokens": 8, "limit": 3, "n_control": 1},
        allow_weak=True,  # three steps of pretraining cannot add
    )
    return out, info


def test_world_files_have_the_documented_formats(world) -> None:
    from p2o_cli.evaluation.benchmarks import load_benchmark

    out, info = world
    assert info.dir == out and (out / "model" / "config.json").is_file()
    assert (out / "model" / "model.safetensors").is_file() and (out / "model" / "tokenizer.json").is_file()
    train = read_records(out / "train.jsonl", Problem)
    dev = read_records(out / "dev.jsonl", Problem)
    assert len(train) == 10 and len(dev) == 5
    assert sum(p.id.startswith("toy-hard-") for p in train) == 8
    ids = [p.id for p in train + dev]
    for name in ("toy-easy", "toy-hard"):
        lines = (out / "bench" / f"{name}.jsonl").read_bytes().splitlines()
        rows = [orjson.loads(line) for line in lines]
        assert len(rows) == 6
        assert all(set(r) == {"idx", "id", "problem", "answer", "source_id"} for r in rows)
        assert [r["idx"] for r in rows] == list(range(6)) and rows[0]["id"] == f"{name}-000000"
        assert all(r["answer"] == str(sum(operands_of(r["problem"]))) for r in rows)
        ids += [r["id"] for r in rows]
        _, problems = load_benchmark(name, data_dir=str(out / "bench"))
        assert [p.id for p in problems] == [r["id"] for r in rows]
    assert len(ids) == len(set(ids))  # splits are disjoint
    world_json = orjson.loads((out / "world.json").read_bytes())
    assert world_json["schema"] == "toy-world@1" and world_json["seed"] == 5
    assert world_json["triggers"] == draw_triggers(5) == info.triggers
    assert world_json["pretrain"]["steps"] == 3 and world_json["pretrain"]["params"] > 0
    measured = world_json["measured"]
    assert measured == info.measured
    for key in ("plain_hard", "plain_easy", "best_template"):
        assert 0.0 <= measured[key]["pass@2"] <= 1.0 and 0.0 <= measured[key]["accuracy"] <= 1.0
        assert 0.0 <= measured[key]["step_start"] <= 1.0
    assert measured["best_template"]["text"] in world_json["strengths"]
    assert len(world_json["strengths"]) == 6 and world_json["partials"] == list(world_json["strengths"])[3:]
    assert len(measured["runs"]) == 2 + 6 + 1  # plain easy/hard, each acting phrase, one control


def test_world_splits_are_deterministic_and_bench_is_stable() -> None:
    from p2o_cli.toy.world import make_splits, split_sizes

    a = make_splits(3, split_sizes(20, 10, 8, 0.2))
    b = make_splits(3, split_sizes(20, 10, 8, 0.2))
    c = make_splits(3, split_sizes(40, 12, 8, 0.25))
    assert a == b
    assert a.bench == c.bench  # the benchmarks do not move with the train/dev sizes


def test_init_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    from p2o_cli.toy.world import init_world

    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        init_world(tmp_path, seed=0, measure=False)


# ---------------------------------------------------------------- the reflector


@dataclass
class Fb:
    problem: str
    response: str
    pred: str | None
    correct: bool
    gold: str
    problem_id: str = "p"


@dataclass
class Req:
    parent_text: str
    feedback: list = field(default_factory=list)
    parent_id: str = "t0"
    seed: int = 0


def _feedback(steps: bool, correct: bool, n: int = 3) -> list[Fb]:
    out = []
    for i in range(n):
        ops = (11 + i, 22, 33, 44 + i)
        gold = str(sum(ops))
        pred = gold if correct else str(sum(ops) + 1)
        response = step_solution(ops) if steps else f"\\boxed{{{pred}}}"
        if steps and not correct:
            response = response.replace(f"\\boxed{{{gold}}}", f"\\boxed{{{pred}}}")
        out.append(Fb(f"What is {' + '.join(map(str, ops))}?", response, pred, correct, gold))
    return out


def _is_lexicon_template(text: str) -> bool:
    phrases = split_phrases(text)
    return 1 <= len(phrases) <= 3 and join_phrases(phrases) == text and len(set(phrases)) == len(phrases)


def test_reflector_returns_lexicon_templates_and_never_a_gold_answer() -> None:
    reflector = ToyReflector(seed=0)
    parents = ["", LEXICON[0], join_phrases(LEXICON[3:5]), join_phrases(LEXICON[7:10])]
    requests = [
        Req(parent, _feedback(steps, correct), seed=s)
        for s in range(10)
        for parent in parents
        for steps, correct in ((False, False), (True, False), (True, True))
    ]
    children = reflector.propose(requests)
    assert len(children) == len(requests)
    for request, child in zip(requests, children):
        assert child is not None and _is_lexicon_template(child)
        assert child != request.parent_text
        golds = {f.gold for f in request.feedback}
        assert not any(g in child for g in golds) and not any(ch.isdigit() for ch in child)
    assert reflector.propose([]) == []


def test_reflector_is_deterministic_for_a_seed() -> None:
    requests = [Req(join_phrases(LEXICON[i : i + 2]), _feedback(i % 2 == 0, False), seed=i) for i in range(12)]
    a = ToyReflector(seed=1).propose(requests)
    b = ToyReflector(seed=1).propose(requests)
    c = ToyReflector(seed=2).propose(requests)
    assert a == b
    assert a != c
    # A request's child does not depend on what was asked before.
    r = ToyReflector(seed=1)
    r.propose(requests[:3])
    assert r.propose(requests) == a


def test_reflector_keeps_phrases_that_produce_steps_and_drops_those_that_do_not() -> None:
    parent = join_phrases([LEXICON[5], LEXICON[20]])
    reflector = ToyReflector(seed=0)

    def kept(steps: bool) -> float:
        children = [reflector.propose([Req(parent, _feedback(steps, False), seed=s)])[0] for s in range(60)]
        return sum(bool(set(split_phrases(c)) & {LEXICON[5], LEXICON[20]}) for c in children) / len(children)

    with_steps, without_steps = kept(True), kept(False)
    assert with_steps == 1.0  # exploit: the parent's phrases stay (one may be swapped out)
    assert without_steps < 0.6  # explore: mostly fresh phrases
    # Recombination: a step-less parent borrows phrases from a parent of the batch that works.
    good = join_phrases([LEXICON[30], LEXICON[31]])
    batch = [Req(good, _feedback(True, True), seed=100)] + [
        Req(parent, _feedback(False, False), seed=s) for s in range(40)
    ]
    children = ToyReflector(seed=0).propose(batch)[1:]
    borrowed = sum(bool(set(split_phrases(c)) & {LEXICON[30], LEXICON[31]}) for c in children)
    assert borrowed >= 5
    # Explore avoids the phrases of every step-less parent in the batch.
    fresh = [c for c in children if not set(split_phrases(c)) & {LEXICON[5], LEXICON[20], LEXICON[30], LEXICON[31]}]
    assert fresh


# ---------------------------------------------------------------- CLI


def test_cli_toy_init_and_measure(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from p2o_cli.cli import app

    runner = CliRunner()
    out = tmp_path / "w"
    args = ["toy", "init", "--out", str(out), "--seed", "2", "--n-train", "8", "--n-dev", "4", "--n-bench", "4",
            "--pretrain-steps", "2", "--hidden-size", "32", "--num-layers", "1", "--no-measure"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (out / "world.json").is_file() and (out / "bench" / "toy-hard.jsonl").is_file()
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "not empty" in again.output
    result = runner.invoke(
        app, ["toy", "measure", str(out), "--n", "2", "--limit", "2", "--max-new-tokens", "6", "--n-control", "0"]
    )
    assert result.exit_code == 0, result.output
    assert orjson.loads((out / "world.json").read_bytes())["measured"]["n"] == 2
    missing = runner.invoke(app, ["toy", "measure", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "world.json" in missing.output


TINY_WORLD = ["--n-train", "8", "--n-dev", "4", "--n-bench", "4", "--pretrain-steps", "2", "--hidden-size", "32",
              "--num-layers", "1"]


def test_toy_init_refuses_a_world_that_misses_its_targets(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from p2o_cli.cli import app

    out = tmp_path / "w"
    args = ["toy", "init", "--out", str(out), "--seed", "3", *TINY_WORLD]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "toy-easy greedy accuracy is" in result.output and "--allow-weak" in result.output
    assert not out.exists()  # nothing written
    result = CliRunner().invoke(app, [*args, "--allow-weak"])
    assert result.exit_code == 0, result.output
    assert "warning" in result.output and "toy-easy greedy accuracy" in result.output
    world = orjson.loads((out / "world.json").read_bytes())
    assert world["measured"]["plain_easy_greedy"]["samples"] == 4  # one greedy answer per problem


def test_toy_trace_counts_plain_hard_rollouts_that_open_with_a_step(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from p2o_cli.cli import app
    from p2o_cli.files.records import Rollout, write_records
    from p2o_cli.loop.rundir import RunDir
    from p2o_cli.toy.trace import plain_step_share

    def rollout(pid: str, k: int, response: str, template: str | None = None) -> Rollout:
        return Rollout(id=pid, k=k, prompt="p", response=response, reward=0.0, pred=None, finish_reason="stop",
                       n_tokens=3, template=template, template_id="t" if template is not None else None)

    run = tmp_path / "run"
    (run / "epoch-0").mkdir(parents=True)
    (run / "epoch-1").mkdir()
    write_records(run / "epoch-0" / "rollouts-0000.jsonl", [
        rollout("toy-hard-000001", 0, "12 + 30 = 42\n42 + 10 = 52\nThe answer is \\boxed{52}."),
        rollout("toy-hard-000001", 1, "\\boxed{50}"),
        rollout("toy-hard-000002", 0, "\\boxed{7}", template=""),  # the empty template is the plain prompt
        rollout("toy-hard-000003", 0, "1 + 2 = 3", template="Stay calm."),  # templated: not counted
        rollout("toy-easy-000001", 0, "1 + 2 = 3"),  # easy: not counted
    ])
    write_records(run / "epoch-1" / "rollouts-0000.jsonl", [rollout("toy-hard-000001", 0, "9", template="Stay calm.")])
    # 1 of the 3 plain hard rollouts opens with a step line; epoch 1 has none
    assert plain_step_share(RunDir(run).rollouts_by_epoch()) == [{"epoch": 0, "plain_hard_rollouts": 3, "share": 1 / 3},
                                     {"epoch": 1, "plain_hard_rollouts": 0, "share": None}]
    result = CliRunner().invoke(app, ["toy", "trace", str(run)])
    assert result.exit_code == 0 and "33.3%" in result.output
    result = CliRunner().invoke(app, ["toy", "trace", str(tmp_path)])
    assert result.exit_code == 2 and "no epoch-* directories" in result.output


def test_opening_signal_is_the_advantage_step_openings_receive() -> None:
    from p2o_cli.files.records import Rollout
    from p2o_cli.toy.trace import opening_signal

    step, direct = "12 + 30 = 42\nThe answer is \\boxed{42}.", "\\boxed{40}"

    def rollout(pid: str, k: int, response: str, reward: float, template: str | None = "T") -> Rollout:
        return Rollout(id=pid, k=k, prompt="p", response=response, reward=reward, pred=None, finish_reason="stop",
                       n_tokens=3, template=template, template_id="t" if template is not None else None,
                       plain_rewards=[0.0, 0.0, 0.0] if template is not None else None)

    epoch = [rollout("toy-hard-000001", 0, step, 1.0), rollout("toy-hard-000001", 1, step, 0.0),
             rollout("toy-hard-000001", 2, direct, 0.0),
             # every rollout opens with a step: under the group baseline its advantages sum to zero
             rollout("toy-hard-000002", 0, step, 1.0), rollout("toy-hard-000002", 1, step, 0.0),
             rollout("toy-hard-000002", 2, step, 1.0),
             rollout("toy-hard-000003", 0, direct, 0.0, template=None)]  # not templated: not counted
    (group,) = opening_signal({0: epoch}, "group")
    # Group 1: rewards 1, 0, 0 -> mean 1/3, std sqrt(1/3); the two step openings get (2/3 - 1/3) / std.
    first = (2 / 3 - 1 / 3) / (1 / 3) ** 0.5 / 3
    assert group["opening_advantage"] == pytest.approx((first + 0.0) / 2, abs=1e-5)
    assert group["templated_groups"] == 2 and group["step_share"] == pytest.approx((2 / 3 + 1) / 2)
    assert group["all_step"] == 0.5 and group["success"] == pytest.approx((1 / 3 + 2 / 3) / 2)
    (plain,) = opening_signal({0: epoch}, "plain")
    # Against the plain rewards 0, 0, 0: group 1's rewards are 1, 0, 0 among six, mean 1/6, std sqrt(1/6).
    std1 = (1 / 6) ** 0.5
    first = ((1 - 1 / 6) + (0 - 1 / 6)) / std1 / 3
    # group 2: 1, 0, 1 among six: mean 1/3, std sqrt(4/15); the three step openings get 1 - 1/3 ... in sum 1.
    second = (2 * (1 - 1 / 3) + (0 - 1 / 3)) / (4 / 15) ** 0.5 / 3
    assert plain["opening_advantage"] == pytest.approx((first + second) / 2, abs=1e-5)
    assert opening_signal({1: epoch[-1:]})[0]["opening_advantage"] is None


def test_missed_world_targets_are_named() -> None:
    from p2o_cli.toy.world import missed_targets

    def measured(plain: float, best: float, plain_start: float = 0.003, runs: dict | None = None) -> dict:
        return {"n": 6, "temperature": 1.0, "plain_hard": {"pass@6": plain, "step_start": plain_start},
                "best_template": {"pass@6": best}, "runs": runs or {}}

    assert missed_targets(measured(0.031, 0.586)) == []
    (line,) = missed_targets(measured(0.055, 0.211))
    assert "best template toy-hard pass@6 is 21.1% (target >= 50%)" in line
    (line,) = missed_targets(measured(0.10, 0.50))  # < 10% and >= 50%
    assert "plain toy-hard pass@6 is 10.0% (target < 10%)" in line
    (line,) = missed_targets({**measured(0.031, 0.586), "plain_easy_greedy": {"accuracy": 0.847}})
    assert line.startswith("toy-easy greedy accuracy is 84.7% (target >= 85%)")
    assert missed_targets({**measured(0.031, 0.586), "plain_easy_greedy": {"accuracy": 0.85}}) == []
    (line,) = missed_targets(measured(0.031, 0.586, plain_start=0.012))
    assert "plain toy-hard opens with a step in 1.2% of samples (target <= 1%)" in line
    runs = {"trigger:A@toy-hard": {"template": "A", "strength": 1.0, "step_start": 0.75},
            "partial:B@toy-hard": {"template": "B", "strength": 0.25, "step_start": 0.30},  # within ±0.1
            "control:C@toy-hard": {"template": "C", "step_start": 0.31}}
    (line,) = missed_targets(measured(0.031, 0.586, runs=runs))
    assert line == "'A' opens with a step in 75% of samples, its strength is 100% (tolerance ±10)"


def test_toy_init_gives_byte_identical_weights_beside_a_busy_process(tmp_path: Path) -> None:
    """The thread count is part of the recipe, so machine load cannot change the world."""
    import subprocess
    import sys

    from typer.testing import CliRunner

    from p2o_cli.cli import app

    def init(out: Path) -> bytes:
        args = ["toy", "init", "--out", str(out), "--seed", "7", "--n-train", "8", "--n-dev", "4", "--n-bench", "4",
                "--pretrain-steps", "40", "--hidden-size", "32", "--num-layers", "1", "--no-measure"]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        world = orjson.loads((out / "world.json").read_bytes())
        assert world["pretrain"]["config"]["threads"] == 1 and world["pretrain"]["threads"] == 1
        return (out / "model" / "model.safetensors").read_bytes()

    quiet = init(tmp_path / "a")
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        busy = init(tmp_path / "b")
    finally:
        for hog in hogs:
            hog.kill()
    assert quiet == busy


TINY_RUN = """
epochs = 2
batch_size = 4
limit = 8
min_hard = 1
eval_every = 0
[rollout]
k = 2
max_new_tokens = 6
temperature = 1.0
[train]
lr = 1e-3
template_ratio_mask = "none"
[reflector]
reflector = "toy"
[gepa]
width = 2
minibatch = 2
budget = 16
dev_size = 2
gepa_max_new_tokens = 6
[eval]
bench = ["toy-hard"]
eval_limit = 4
"""


def test_sweep_plan_resumes_partial_runs_and_skips_finished_ones(tmp_path: Path) -> None:
    from p2o_cli.toy.sweep import SweepPlan, run_command, world_command

    plan = SweepPlan(tmp_path, [5], ["grpo", "p2o-no-distill"], tmp_path / "run.toml", 1)
    assert world_command(plan, 5)[:6] == ["toy", "init", "--out", str(tmp_path / "world-5"), "--seed", "5"]
    args = run_command(plan, 5, "p2o-no-distill")
    assert args[:3] == ["run", "--config", str(tmp_path / "run.toml")]
    assert args[-4:] == ["--name", "p2o-no-distill", "--distill", "none"] and args[args.index("--seed") + 1] == "5"
    run = plan.run_dir(5, "grpo")
    run.mkdir(parents=True)
    (run / "state.json").write_bytes(orjson.dumps({"done": False}))
    assert run_command(plan, 5, "grpo") == ["run", "--resume", str(run)]
    (run / "state.json").write_bytes(orjson.dumps({"done": True}))
    assert run_command(plan, 5, "grpo") is None


def test_sweep_runs_built_worlds_runs_while_another_world_builds() -> None:
    import threading

    from p2o_cli.toy.sweep import Job, run_ready_first

    jobs = [Job("world-A", []), Job("world-B", []), Job("A-grpo", [], "world-A"), Job("B-grpo", [], "world-B"),
            Job("A-p2o", [], "world-A")]
    events, a_runs_done, lock = [], threading.Event(), threading.Lock()

    def run(job: Job) -> None:
        with lock:
            events.append(f"start {job.name}")
        # World B finishes only once both of A's runs have: a worker held by B-grpo waiting on its
        # world would leave none for A-p2o, and this would time out.
        if job.name == "world-B" and not a_runs_done.wait(timeout=20):
            raise AssertionError("A's runs could not start while world B was building")
        with lock:
            events.append(f"done {job.name}")
            if {"done A-grpo", "done A-p2o"} <= set(events):
                a_runs_done.set()

    run_ready_first(jobs, 2, run)
    assert events.index("done A-p2o") < events.index("done world-B") < events.index("start B-grpo")
    assert events.index("done world-A") < events.index("start A-grpo") < events.index("start A-p2o")
    assert len(events) == 2 * len(jobs)


def test_sweep_stops_starting_jobs_after_a_failure() -> None:
    from p2o_cli.toy.sweep import Job, run_ready_first

    started = []

    def run(job: Job) -> None:
        started.append(job.name)
        if job.name == "world-A":
            raise RuntimeError("world-A failed")

    with pytest.raises(RuntimeError, match="world-A failed"):
        run_ready_first([Job("world-A", []), Job("A-grpo", [], "world-A"), Job("A-p2o", [], "world-A")], 2, run)
    assert started == ["world-A"]
    with pytest.raises(ValueError, match="world-Z"):
        run_ready_first([Job("Z-grpo", [], "world-Z")], 1, run)


def test_sweep_notes_a_refused_world_and_does_not_build_it_again(tmp_path: Path) -> None:
    from p2o_cli.toy.sweep import SweepPlan, run_sweep, world_command, world_problem

    plan = SweepPlan(tmp_path, [3], ["grpo"], tmp_path / "run.toml", 1, world_args=tuple(TINY_WORLD))
    said: list[str] = []
    assert run_sweep(plan, say=said.append) == {}  # nothing ran to its end: the world was refused
    assert any(line.startswith("refused world-3") for line in said)
    assert any(line.startswith("skip  3-grpo: world 3 is not usable") for line in said), said
    assert not plan.world(3).exists() and not plan.run_dir(3, "grpo").exists()
    assert "toy-easy greedy accuracy" in world_problem(plan.world(3))
    assert world_command(plan, 3) is None  # a resumed sweep does not build it again


def test_world_table_sets_each_phrase_strength_beside_its_measured_step_start(tmp_path: Path) -> None:
    from p2o_cli.toy.sweep import SweepPlan, world_table

    plan = SweepPlan(tmp_path, [1, 2], ["grpo"], tmp_path / "run.toml", 1)
    runs = {"trigger:A@toy-hard": {"template": "A", "strength": 0.25, "step_start": 0.3},
            "trigger:B@toy-hard": {"template": "B", "strength": 1.0, "step_start": 0.97}, "plain@toy-hard": {}}
    measured = {"n": 6, "temperature": 1.0, "plain_hard": {"step_start": 0.004, "pass@6": 0.031}, "runs": runs,
                "best_template": {"pass@6": 0.984}, "plain_easy_greedy": {"accuracy": 1.0}}
    weak = {**measured, "plain_hard": {"step_start": 0.004, "pass@6": 0.125}}
    for seed, what in ((1, measured), (2, weak)):
        (tmp_path / f"world-{seed}").mkdir()
        (tmp_path / f"world-{seed}" / "world.json").write_bytes(orjson.dumps({"measured": what,
                                                                               "build_seconds": 246.0}))
    lines = world_table(plan).splitlines()
    assert lines[-2] == "| seed 1 | 4.1 | 100.0% | 0.4%, 3.1% | 98.4% | 100 → 97%, 25 → 30% | all met |"
    assert lines[-1].startswith("| seed 2 | 4.1 | 100.0% | 0.4%, 12.5% |")
    assert lines[-1].endswith("| missed: plain toy-hard pass@6 is 12.5% (target < 10%) |")


@pytest.mark.parametrize("flag, value", [("--seeds", "1,x"), ("--variants", "grpo,dpo"), ("--trigger-strength", "0")])
def test_sweep_refuses_bad_lists(tmp_path: Path, flag: str, value: str) -> None:
    from typer.testing import CliRunner

    from p2o_cli.cli import app

    result = CliRunner().invoke(app, ["toy", "sweep", "--out", str(tmp_path / "s"), flag, value])
    assert result.exit_code == 2 and flag in result.output, result.output
    assert not (tmp_path / "s").exists()


def write_measurement(world: Path, plain_hard_pass: float, easy_greedy: float) -> None:
    """Stand in for ``p2o toy measure`` on a world built with ``--no-measure``."""
    path = world / "world.json"
    measured = {"n": 6, "temperature": 1.0, "plain_hard": {"pass@6": plain_hard_pass, "step_start": 0.0},
                "best_template": {"pass@6": 0.9}, "plain_easy_greedy": {"accuracy": easy_greedy}, "runs": {}}
    path.write_bytes(orjson.dumps({**orjson.loads(path.read_bytes()), "measured": measured}))


def test_toy_sweep_worlds_only_writes_the_world_table_and_runs_nothing(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from p2o_cli.cli import app

    runner = CliRunner()
    out = tmp_path / "worlds"
    world = ["toy", "init", "--out", str(out / "world-9"), "--seed", "9", *TINY_WORLD, "--no-measure"]
    assert runner.invoke(app, world).exit_code == 0
    write_measurement(out / "world-9", plain_hard_pass=0.125, easy_greedy=1.0)
    result = runner.invoke(app, ["toy", "sweep", "--out", str(out), "--seeds", "9", "--worlds-only"])
    assert result.exit_code == 0, result.output
    table = (out / "report" / "report.md").read_text()
    assert "| seed 9 |" in table and "missed: plain toy-hard pass@6 is 12.5% (target < 10%)" in table
    assert not list(out.glob("runs-*"))  # no variant ran


def test_toy_sweep_runs_variants_over_a_world_then_reports_and_does_not_recompute(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from p2o_cli.cli import app

    runner = CliRunner()
    out = tmp_path / "sweep"
    for seed in (8, 9):
        world = ["toy", "init", "--out", str(out / f"world-{seed}"), "--seed", str(seed), *TINY_WORLD, "--no-measure"]
        assert runner.invoke(app, world).exit_code == 0
    # World 9 passes as usable (two pretraining steps cannot add: its measurement is written here);
    # world 8 stays unmeasured, and the sweep runs nothing on it.
    write_measurement(out / "world-9", plain_hard_pass=0.05, easy_greedy=0.9)
    (tmp_path / "run.toml").write_text(TINY_RUN.replace("epochs = 2", "epochs = 1"))  # --epochs sets it back
    args = ["toy", "sweep", "--out", str(out), "--seeds", "8,9", "--variants", "grpo,p2o", "--jobs", "2",
            "--run-config", str(tmp_path / "run.toml"), "--epochs", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "skip  8-grpo: world 8 is not usable (not measured" in result.output and not (out / "runs-8").exists()
    for variant in ("grpo", "p2o"):
        state = orjson.loads((out / "runs-9" / variant / "state.json").read_bytes())
        assert state["done"] and (out / "logs" / f"9-{variant}.log").is_file()
    config = orjson.loads((out / "runs-9" / "grpo" / "config.json").read_bytes())
    assert config["no_gepa"] and config["seed"] == 9 and config["name"] == "grpo" and config["epochs"] == 2
    report = (out / "report" / "report.md").read_text()
    assert "| GRPO (`--no-gepa`) | 1 |" in report and "| P²O, paper's group baseline | 1 |" in report
    assert "| seed 8 | not measured | |" in report  # the world was built with --no-measure
    assert "| run | epoch 0 | epoch 1 |" in report and "| GRPO (`--no-gepa`) | " in report.split("open with a step")[1]
    metrics = (out / "runs-9" / "p2o" / "metrics.jsonl").read_bytes()
    (out / "runs-9" / "p2o" / "state.json").write_bytes(orjson.dumps({"done": False}))  # as if cut short
    partial = runner.invoke(app, [*args, "--report-only"])
    assert partial.exit_code == 0 and "start 9-" not in partial.output, partial.output  # nothing ran
    report = (out / "report" / "report.md").read_text()
    assert "| GRPO (`--no-gepa`) | 1 |" in report and "P²O, paper's group baseline" not in report
    elsewhere = runner.invoke(app, [*args, "--report-only", "--report-out", str(tmp_path / "docs")])
    assert elsewhere.exit_code == 0 and (tmp_path / "docs" / "report.md").read_text() == report
    (out / "runs-9" / "p2o" / "state.json").write_bytes(orjson.dumps({"done": True}))
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and again.output.count("finished") == 2, again.output
    assert (out / "runs-9" / "p2o" / "metrics.jsonl").read_bytes() == metrics
