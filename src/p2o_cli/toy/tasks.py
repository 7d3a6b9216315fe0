"""Toy arithmetic tasks: sums of two-digit numbers, as math questions with gold answers.

``easy`` = 2 operands, ``hard`` = 4 operands (all two-digit), asked as "What is 23 + 45?".
The step-by-step solution writes the running partial sums one per line, then the boxed
answer; the direct answer is the boxed sum alone. A tiny model can add two numbers in one
written step but not four at a glance, so on hard problems the direct answer is almost
always wrong and the step-by-step one mostly right.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..errors import P2OError
from ..files.records import Problem

KINDS: dict[str, int] = {"easy": 2, "hard": 4}  # operands per problem
LOW, HIGH = 10, 99  # two-digit operands
SOURCE = "toy"


@dataclass(frozen=True)
class Task:
    kind: str
    operands: tuple[int, ...]

    @property
    def answer(self) -> int:
        return sum(self.operands)

    @property
    def question(self) -> str:
        return question_text(self.operands)


def question_text(operands: Sequence[int]) -> str:
    return "What is " + " + ".join(str(x) for x in operands) + "?"


def gold(operands: Sequence[int]) -> str:
    return str(sum(operands))


def step_solution(operands: Sequence[int]) -> str:
    """Running partial sums, one per line, then the boxed answer."""
    lines = []
    total = operands[0]
    for x in operands[1:]:
        lines.append(f"{total} + {x} = {total + x}")
        total += x
    lines.append(f"The answer is \\boxed{{{total}}}.")
    return "\n".join(lines)


def direct_solution(operands: Sequence[int], error: int = 0) -> str:
    """The answer without working: the sum, off by ``error`` (a guess at a glance)."""
    return f"\\boxed{{{sum(operands) + error}}}"


def has_steps(response: str) -> bool:
    """Does a response show intermediate results (a line with an ``=``)?"""
    return any("=" in line for line in response.splitlines())


def starts_with_step(response: str) -> bool:
    """Does a response open with a step line (``a + b = …``) rather than an answer?"""
    first = response.lstrip().split("\n", 1)[0]
    return bool(first[:1].isdigit()) and "+" in first


def random_task(rng: random.Random, kind: str, n_operands: int | None = None) -> Task:
    n = n_operands or KINDS[kind]
    return Task(kind, tuple(rng.randint(LOW, HIGH) for _ in range(n)))


def problem_id(kind: str, index: int) -> str:
    return f"toy-{kind}-{index:06d}"


def make_problems(seed: int, kind: str, n: int) -> list[Problem]:
    """``n`` distinct problems of one kind, ids ``toy-{kind}-000000`` on; a prefix of a longer draw.

    ``make_problems(s, k, n)`` is the first ``n`` of ``make_problems(s, k, m)`` for ``m > n``,
    so the world's splits are stable ranges of one sequence.
    """
    rng = random.Random(f"p2o-toy-problems:{seed}:{kind}")
    seen: set[tuple[int, ...]] = set()
    out: list[Problem] = []
    while len(out) < n:
        task = random_task(rng, kind)
        if task.operands in seen:
            continue
        seen.add(task.operands)
        out.append(to_problem(task, problem_id(kind, len(out))))
    return out


def to_problem(task: Task, pid: str) -> Problem:
    return Problem(
        id=pid,
        problem=task.question,
        answer=gold(task.operands),
        source=SOURCE,
        meta={"kind": task.kind, "operands": list(task.operands)},
    )


def operands_of(problem: Problem | str) -> tuple[int, ...]:
    """Parse the operands back out of a toy question."""
    text = problem.problem if isinstance(problem, Problem) else problem
    body = text.strip()
    if not (body.startswith("What is ") and body.endswith("?")):
        raise P2OError(f"not a toy question: {text!r}")
    return tuple(int(x) for x in body[len("What is ") : -1].split(" + "))


def operand_keys(problems: Iterable[Problem]) -> set[tuple[int, ...]]:
    return {operands_of(p) for p in problems}
