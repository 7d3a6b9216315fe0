from __future__ import annotations

import pytest

from p2o_cli.files.records import Rollout
from p2o_cli.rollout.mining import group_rollouts, mine_hard


def rollouts(pid: str, rewards: list[float]) -> list[Rollout]:
    return [
        Rollout(id=pid, k=k, prompt="p", response=f"r{k}", reward=r, pred=str(k), finish_reason="stop",
                n_tokens=3, problem=f"question {pid}", answer="7")
        for k, r in enumerate(rewards)
    ]


def test_default_tau_is_at_most_one_of_six() -> None:
    data = (
        rollouts("none", [0] * 6)
        + rollouts("one", [0, 0, 1, 0, 0, 0])
        + rollouts("two", [1, 0, 1, 0, 0, 0])
        + rollouts("all", [1] * 6)
    )
    hard = mine_hard(data)
    assert [h.id for h in hard] == ["none", "one"]
    one = hard[1]
    assert one.rewards == [0, 0, 1, 0, 0, 0]
    assert one.mean_reward == pytest.approx(1 / 6)
    assert [f.response for f in one.failures] == ["r0", "r1", "r3", "r4", "r5"]
    assert one.problem == "question one" and one.answer == "7"


def test_tau_and_failure_cap() -> None:
    data = rollouts("a", [1, 0, 0, 0]) + rollouts("b", [1, 1, 0, 0])
    assert [h.id for h in mine_hard(data, tau=0.5)] == ["a"]
    assert [h.id for h in mine_hard(data, tau=0.51)] == ["a", "b"]
    assert len(mine_hard(data, tau=1.0, max_failures=1)[0].failures) == 1


def test_groups_sorted_by_k_in_first_seen_order() -> None:
    data = rollouts("x", [0, 1]) + rollouts("y", [1])
    shuffled = [data[1], data[2], data[0]]
    groups = group_rollouts(shuffled)
    assert list(groups) == ["x", "y"]
    assert [r.k for r in groups["x"]] == [0, 1]


def test_rollouts_without_problem_text_are_rejected() -> None:
    data = rollouts("a", [0, 0])
    for r in data:
        r.problem = None
    with pytest.raises(ValueError, match="carry no problem"):
        mine_hard(data)


def test_graded_rewards_fail_below_full_marks_and_carry_the_problem_fields() -> None:
    # A format bonus of 0.1 on a wrong answer is not a solution: the reflector sees that response.
    data = rollouts("g", [0.09, 1.0, 0.0, 0.5, 0.09, 0.09])
    for r in data:
        r.meta, r.source = {"tests": ["assert f() == 1"]}, "mbpp"
    [hard] = mine_hard(data, tau=0.5)
    assert [f.response for f in hard.failures] == ["r0", "r2", "r3", "r4", "r5"]
    assert hard.meta == {"tests": ["assert f() == 1"]} and hard.source == "mbpp"
