"""Rewards as plug-ins: SPECs, the built-ins (exact, choice, regex), weights, and the registry's
entry-point group. The pool's handling of misbehaving functions is in test_reward_functions.py."""

from __future__ import annotations

import math
import sys
import textwrap

import pytest

from p2o_cli import plugins
from p2o_cli.errors import P2OError
from p2o_cli.reward.builtins import (
    choice_reward,
    chosen_letter,
    exact_reward,
    gold_letter,
    math_reward,
    normalize_text,
    regex_answer,
    regex_reward,
)
from p2o_cli.reward.config import RewardConfig
from p2o_cli.reward.pool import RewardScorer
from p2o_cli.reward.registry import REWARDS, leak_strings
from p2o_cli.reward.specs import component_name, load_reward, split_spec
from p2o_cli.reward.values import Failure, OutOfRange, judged, solved, weighted_total

# --- values -----------------------------------------------------------------------------------


def test_weighted_total_is_a_mean_in_the_unit_interval() -> None:
    assert weighted_total([1.0, 0.0], [1.0, 0.1]) == pytest.approx(1 / 1.1)
    assert weighted_total([0.0, 1.0], [1.0, 0.1]) == pytest.approx(0.1 / 1.1)
    assert weighted_total([1.0, 1.0], [0.1, 0.2]) == 1.0  # exactly: full marks stay full marks
    assert weighted_total([0.5], [3.0]) == 0.5


def test_solved_means_full_marks() -> None:
    assert solved(1.0) and not solved(0.999) and not solved(0.0)


def test_judged_classifies_what_a_function_returns() -> None:
    assert judged(1) == 1.0 and judged(True) == 1.0 and judged(0.25) == 0.25
    assert judged(None) is None
    assert judged(7) == OutOfRange(7.0) and judged(-0.5) == OutOfRange(-0.5)
    assert isinstance(judged(math.nan), Failure) and "NaN" in judged(math.nan).message
    assert isinstance(judged("1"), Failure) and isinstance(judged([1.0]), Failure)

    class Scalar:  # a NumPy scalar or a 0-d tensor: not a float, but convertible
        def __float__(self) -> float:
            return 0.5

    assert judged(Scalar()) == 0.5


# --- SPECs ------------------------------------------------------------------------------------


def test_split_spec(tmp_path) -> None:
    (tmp_path / "fmt.py").write_text("def fmt(responses, problems):\n    return [1.0 for _ in responses]\n")
    assert split_spec("math") == ("math", {})
    assert split_spec("regex:Answer: (?P<answer>\\d+)") == ("regex", {"pattern": "Answer: (?P<answer>\\d+)"})
    assert split_spec("pkg.mod:fn") == ("pkg.mod:fn", {})
    assert split_spec(f"{tmp_path}/fmt.py:fmt") == (f"{tmp_path.resolve()}/fmt.py:fmt", {})
    with pytest.raises(P2OError, match="no such file"):
        split_spec(f"{tmp_path}/missing.py:fmt")
    with pytest.raises(P2OError, match="give the argument"):
        split_spec("regex:")
    with pytest.raises(P2OError, match="expected NAME"):
        split_spec("mod:not an identifier")
    assert component_name("math") == "math" and component_name("/x/fmt.py:fmt") == "fmt"


def test_load_reward_names_what_is_missing(tmp_path) -> None:
    (tmp_path / "broken.py").write_text("raise RuntimeError('no import for you')\n")
    (tmp_path / "empty.py").write_text("x = 1\n")
    assert load_reward("math") is math_reward
    with pytest.raises(P2OError, match="unknown reward 'nonesuch'; known: .*choice, code, exact, math, regex"):
        load_reward("nonesuch")
    with pytest.raises(P2OError, match="RuntimeError: no import for you"):
        load_reward(f"{tmp_path}/broken.py:fn")
    with pytest.raises(P2OError, match="has no function 'fn'"):
        load_reward(f"{tmp_path}/empty.py:fn")
    with pytest.raises(P2OError, match="cannot import it"):
        load_reward("no_such_module_anywhere:fn")


def test_config_components_names_weights_and_limits(tmp_path) -> None:
    (tmp_path / "fmt.py").write_text("def fmt(responses, problems):\n    return [1.0 for _ in responses]\n")
    cfg = RewardConfig(reward=["math", f"{tmp_path}/fmt.py:fmt", "regex:(?P<answer>x)", "regex:(?P<answer>y)",
                               "code"], reward_weights="1,0.1,1,1,2", reward_timeout=3.0, code_timeout=7.0)
    parts = cfg.components()
    assert [c.name for c in parts] == ["math", "fmt", "regex", "regex-2", "code"]
    assert [c.weight for c in parts] == [1.0, 0.1, 1.0, 1.0, 2.0]
    assert parts[4].options == (("memory_mb", 512), ("timeout", 7.0)) and parts[4].time_limit == 10.0
    assert parts[0].time_limit == 3.0


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"reward": ["math", "exact"], "reward_weights": "1"}, "gives 1 weights for 2"),
        ({"reward": ["math"], "reward_weights": "x"}, "numbers separated by commas"),
        ({"reward": ["math", "exact"], "reward_weights": "1,-1"}, "non-negative"),
        ({"reward": ["math"], "reward_weights": "0"}, "positive sum"),
        ({"reward": ["regex:(\\d+)"]}, "group named answer"),
        ({"reward": ["regex:(?P<answer>"]}, "not a valid regular expression"),
        ({"reward": []}, "at least one reward"),
    ],
)
def test_bad_reward_options_are_config_errors(kw, message) -> None:
    with pytest.raises(P2OError, match=message):
        RewardConfig(**kw).check()


# --- built-ins --------------------------------------------------------------------------------


def test_exact() -> None:
    assert normalize_text("  The  Eiffel\nTower. ") == "the eiffel tower"
    assert normalize_text("$\\text{Paris}$") == "paris"
    problems = [{"answer": "Paris"}] * 4
    responses = ["It is \\boxed{paris}.", "Paris", "\\boxed{Lyon} or Paris", "Paris, France"]
    assert exact_reward(responses, problems) == [1.0, 1.0, 0.0, 0.0]
    assert exact_reward.extract("so \\boxed{ Paris }", {}) == "Paris"


def test_choice() -> None:
    problem = {"answer": "C", "options": ["red", "green", "blue", "black"]}
    assert chosen_letter("Thinking... the answer is (B). No wait, the answer is C.") == "C"
    assert chosen_letter("Answer: D") == "D"
    assert chosen_letter("answer is (b)") is None  # options are capital letters
    assert chosen_letter("First \\boxed{A}, then the answer is (B)") == "B"
    assert chosen_letter("the answer is (B); final: \\boxed{\\text{(C)}}") == "C"
    assert chosen_letter("The answer is (F).", problem) is None  # not an option of this problem
    assert chosen_letter("nothing here") is None
    assert gold_letter(problem) == "C"
    assert gold_letter({"answer": "blue", "options": ["red", "green", "blue"]}) == "C"
    assert gold_letter({"answer": "(B)"}) == "B"
    assert gold_letter({"answer": "cyan", "options": {"A": "red", "B": "blue"}}) is None
    responses = ["the answer is (C)", "\\boxed{C}", "the answer is A", "I refuse"]
    assert choice_reward(responses, [problem] * 4) == [1.0, 1.0, 0.0, 0.0]
    assert choice_reward(["the answer is A"], [{"answer": "cyan"}]) == [None]


def test_regex() -> None:
    pattern = r"Final answer: (?P<answer>\S+)"
    text = "Final answer: 3\nHmm, no.\nFinal answer: 4"
    assert regex_answer(text, pattern=pattern) == "4"
    assert regex_reward([text, text, "no match"], [{"answer": "4"}, {"answer": "3"}, {"answer": "4"}],
                        pattern=pattern) == [1.0, 0.0, 0.0]


def test_leak_hooks() -> None:
    choice = {"answer": "B", "options": ["one", "the Nile", "three"]}
    assert leak_strings(choice_reward, choice, {}) == ["(B)", "answer is B", "\\boxed{B}", "the Nile"]
    assert leak_strings(math_reward, {"answer": "42"}, {}) == ["42"]
    code = load_reward("code")
    tests = ["assert add(2, 3) == 5", "assert greet('Bo') == 'Hi Bo'", "assert ok(1) == True"]
    assert leak_strings(code, {"answer": "def add(a, b): ...", "tests": tests}, {}) == \
        ["def add(a, b): ...", "5", "Hi Bo"]


# --- the registry and its entry-point group ---------------------------------------------------


def test_a_reward_can_ship_in_its_own_package(tmp_path, monkeypatch, request) -> None:
    """An installed distribution offers ``plugged`` under ``p2o.rewards``: found by name, run in the pool."""
    (tmp_path / "plugged_rewards.py").write_text(textwrap.dedent("""
        def length_reward(responses, problems):
            return [min(len(r), 10) / 10 for r in responses]
        length_reward.leaks = lambda problem: ["never say " + problem["answer"]]
    """))
    info = tmp_path / "plugged_rewards-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: plugged-rewards\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[p2o.rewards]\nplugged = plugged_rewards:length_reward\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(REWARDS, "_entry_points", None)
    plugins._installed.cache_clear()  # entry points are read once per process: read them again
    request.addfinalizer(plugins._installed.cache_clear)  # and once more without this package
    monkeypatch.setattr(REWARDS, "_table", dict(REWARDS._table))
    assert "plugged" in REWARDS.names()
    cfg = RewardConfig(reward=["plugged", "math"])
    with RewardScorer(workers=1, rewards=cfg.components()) as scorer:
        results = scorer.score(["abc", "\\boxed{7} and more"], [{"id": "a", "answer": "7"}] * 2)
        assert [r.components for r in results] == [{"plugged": 0.3, "math": 0.0}, {"plugged": 1.0, "math": 1.0}]
        assert [r.reward for r in results] == [pytest.approx(0.15), 1.0]
        assert scorer.leaks({"answer": "7"}) == ["never say 7", "7"]
    assert "plugged_rewards" in sys.modules
