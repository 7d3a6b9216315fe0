"""User reward functions in the worker pool: one that raises, hangs, kills its process, allocates
without bound, returns junk or a value outside [0, 1]. Each bad item scores 0 and is counted;
a function that fails on its whole first batch, or leaves [0, 1], stops the command (RewardError)."""

from __future__ import annotations

import re
import textwrap

import pytest

from p2o_cli.errors import P2OError
from p2o_cli.reward.config import RewardConfig
from p2o_cli.reward.pool import RewardError, RewardScorer

REWARDS = textwrap.dedent("""
    import os, time

    def _each(responses, trigger, act):
        out = []
        for response in responses:
            if response == trigger:
                act()
            out.append(1.0)
        return out

    def _raise():
        raise ValueError("cannot read this one")

    def _allocate():
        hoard = []
        while True:
            hoard.append(bytearray(64 << 20))

    def raises(responses, problems): return _each(responses, "raise", _raise)
    def hangs(responses, problems): return _each(responses, "hang", lambda: time.sleep(3600))
    def exits(responses, problems): return _each(responses, "exit", lambda: os._exit(3))
    def allocates(responses, problems): return _each(responses, "alloc", _allocate)
    def unsure(responses, problems): return [None if r == "?" else 1.0 for r in responses]
    def quits(responses, problems): return _each(responses, "quit", lambda: exit(1))
    def nan_once(responses, problems): return [float("nan") if r == "nan" else 1.0 for r in responses]

    def seven(responses, problems): return [7 if r == "7" else 0.5 for r in responses]
    def always_nan(responses, problems): return [float("nan") for r in responses]
    def broken(responses, problems): raise KeyError("tests")
    def short(responses, problems): return [1.0] * (len(responses) - 1)
    def hangs_always(responses, problems): time.sleep(3600)
    # A slow import (a model, say), longer than the 1 s per response: workers load it before
    # any response is timed.
    time.sleep(1.2)

    def late_failure(responses, problems):
        if any(p["id"].startswith("late") for p in problems):
            raise RuntimeError("only on later batches")
        return [1.0 for _ in responses]
""")


@pytest.fixture(scope="module")
def reward_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("rewards") / "my_rewards.py"
    path.write_text(REWARDS)
    return str(path)


def scorer(reward_file: str, *names: str, timeout_s: float = 1.0) -> RewardScorer:
    cfg = RewardConfig(reward=[f"{reward_file}:{n}" for n in names], reward_timeout=timeout_s, reward_memory=512)
    return RewardScorer(timeout_s=timeout_s, workers=2, rewards=cfg.components(), memory_mb=512)


def problems(n: int, prefix: str = "q") -> list[dict]:
    return [{"id": f"{prefix}{i}", "problem": "?", "answer": "1"} for i in range(n)]


@pytest.mark.timeout(120)
def test_each_misbehaving_item_scores_zero_and_is_counted(reward_file) -> None:
    names = ("raises", "hangs", "exits", "allocates", "unsure", "nan_once", "quits")
    responses = ["fine", "raise", "hang", "exit", "alloc", "?", "nan", "quit", "also fine"]
    with scorer(reward_file, *names, timeout_s=3.0) as s:  # a busy machine must not time out the good items
        results = s.score(responses, problems(len(responses)))
        broken_by = {"raise": "raises", "hang": "hangs", "exit": "exits", "alloc": "allocates", "?": "unsure",
                     "nan": "nan_once", "quit": "quits"}
        for response, result in zip(responses, results):
            expected = {name: 0.0 if broken_by.get(response) == name else 1.0 for name in names}
            assert result.components == expected, response
            assert result.reward == pytest.approx(sum(expected.values()) / len(names))
        # raise, exit, alloc, NaN and exit() are errors; the hang a timeout; None is "could not judge"
        assert s.counters() == {"reward/errors": 5, "reward/timeouts": 1, "reward/unjudged": 1}
        # The pool is whole again: the next batch scores normally.
        again = s.score(["fine", "raise"], problems(2))
        assert [r.reward for r in again] == [1.0, pytest.approx(6 / 7)]
        assert s.counters()["reward/errors"] == 6


@pytest.mark.timeout(60)
def test_a_value_outside_the_unit_interval_stops_the_command(reward_file) -> None:
    with scorer(reward_file, "seven") as s, pytest.raises(RewardError) as err:
        s.score(["0.5", "7"], problems(2))
    assert isinstance(err.value, P2OError)  # the command line's exit status 2
    assert "returned 7 for problem 'q1'; rewards lie in [0, 1]" in str(err.value)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "name, message",
    [
        ("broken", "failed on every response of its first batch (3): KeyError: 'tests'"),
        ("always_nan", "failed on every response of its first batch (3): returned NaN"),
        ("short", "failed on every response of its first batch (3): ValueError: returned 0 values for 1 responses"),
        ("hangs_always", "failed on every response of its first batch (3): timed out after 1s per response"),
    ],
)
def test_a_function_failing_on_its_whole_first_batch_stops_the_command(reward_file, name, message) -> None:
    with scorer(reward_file, name) as s, pytest.raises(RewardError, match=re.escape(message)):
        s.score(["a", "b", "c"], problems(3))


@pytest.mark.timeout(60)
def test_failures_after_the_first_batch_are_counted_not_fatal(reward_file) -> None:
    with scorer(reward_file, "late_failure") as s:
        assert [r.reward for r in s.score(["a", "b"], problems(2))] == [1.0, 1.0]
        assert [r.reward for r in s.score(["a", "b"], problems(2, prefix="late"))] == [0.0, 0.0]
        assert s.counters()["reward/errors"] == 2
