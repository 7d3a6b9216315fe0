from __future__ import annotations

from dataclasses import dataclass

import pytest
from transformers import AutoTokenizer

from p2o_cli.data.prompts import render
from p2o_cli.engines import Completion
from p2o_cli.files.records import Assignment, Problem, Template
from p2o_cli.rollout.generate import RolloutConfig, check_assignments, generate_rollouts


@dataclass
class Result:
    reward: float
    pred: str | None
    components: dict | None = None


class ExactScorer:
    """Reward 1 when the response is the gold answer in a box (stands in for math-verify here)."""

    def score(self, responses, problems):
        return [Result(float(r == f"\\boxed{{{p['answer']}}}"), r) for r, p in zip(responses, problems)]


class EchoEngine:
    """Answers correctly only when the prompt holds the word MAGIC; records its calls."""

    def __init__(self, answers: dict[str, str]):
        self.answers = answers
        self.calls: list[tuple[int, int]] = []

    def generate(self, prompts, n=1, temperature=0.6, top_p=1.0, max_new_tokens=16, seed=0, progress=None):
        self.calls.append((len(prompts), n))
        out = []
        for p in prompts:
            question = next(q for q in self.answers if q in p)
            text = f"\\boxed{{{self.answers[question]}}}" if "MAGIC" in p else "\\boxed{0}"
            out.append([Completion(text=text, n_tokens=4, finish_reason="stop") for _ in range(n)])
        return out


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


PROBLEMS = [Problem("a", "What is 1+1?", "2"), Problem("b", "What is 2+2?", "4")]
TEMPLATES = {
    "t0": Template("t0", ""),
    "magic": Template("magic", "Say MAGIC first."),
    "dud": Template("dud", "Hurry."),
}


def test_unassigned_problems_share_one_request_with_n_k(tokenizer) -> None:
    engine = EchoEngine({p.problem: p.answer for p in PROBLEMS})
    out = generate_rollouts(engine, tokenizer, PROBLEMS, RolloutConfig(k=3), ExactScorer())
    assert engine.calls == [(2, 3)]
    assert [(r.id, r.k) for r in out] == [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1), ("b", 2)]
    assert all(r.template_id is None and r.original_prompt is None for r in out)
    assert all(r.reward == 0.0 and r.problem and r.answer for r in out)
    assert out[0].prompt == render(tokenizer, "What is 1+1?")


def test_assigned_problem_gets_one_template_per_rollout(tokenizer) -> None:
    engine = EchoEngine({p.problem: p.answer for p in PROBLEMS})
    assignments = {"a": Assignment("a", ["magic", "dud", "t0", "magic"])}
    cfg = RolloutConfig(k=4, policy_version=5)
    out = generate_rollouts(engine, tokenizer, PROBLEMS, cfg, ExactScorer(), assignments, TEMPLATES)
    a = [r for r in out if r.id == "a"]
    assert [r.template_id for r in a] == ["magic", "dud", "t0", "magic"]
    assert [r.reward for r in a] == [1.0, 0.0, 0.0, 1.0]
    plain = render(tokenizer, "What is 1+1?")
    assert a[0].prompt == render(tokenizer, "What is 1+1?", "Say MAGIC first.")
    assert a[0].original_prompt == plain and a[0].template == "Say MAGIC first."
    # The empty template is the plain prompt.
    assert a[2].prompt == plain
    assert all(r.policy_version == 5 for r in out)
    assert [r.template_id for r in out if r.id == "b"] == [None] * 4
    assert all(r.plain_rewards is None for r in out)  # the assignment carried none


def test_templated_rollouts_carry_the_plain_rewards_that_made_them_hard(tokenizer) -> None:
    engine = EchoEngine({p.problem: p.answer for p in PROBLEMS})
    assignments = {"a": Assignment("a", ["magic", "dud"], plain_rewards=[0.0, 0.0, 1.0])}
    out = generate_rollouts(engine, tokenizer, PROBLEMS, RolloutConfig(k=2), ExactScorer(), assignments, TEMPLATES)
    assert [(r.id, r.plain_rewards) for r in out] == [("a", [0.0, 0.0, 1.0])] * 2 + [("b", None)] * 2


def test_unknown_template_in_assignment() -> None:
    with pytest.raises(ValueError, match="unknown template 'nope'"):
        check_assignments({"a": Assignment("a", ["nope"])}, TEMPLATES)
    with pytest.raises(ValueError, match="no template ids"):
        check_assignments({"a": Assignment("a", [])}, TEMPLATES)
