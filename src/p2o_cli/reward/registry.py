"""Reward functions by name: the one signature, the registry, and the optional hooks.

A reward function scores a batch::

    def my_reward(responses: list[str], problems: list[dict]) -> list[float | None]: ...

``problems[i]`` is the problem record that ``responses[i]`` answers, with every field of its row
(:func:`p2o_cli.files.records.problem_fields`). It returns one value per response: a number in
[0, 1], or None for "could not judge". Two optional attributes refine it:

- ``fn.leaks(problem) -> list[str]``: the strings that would give the answer away if GEPA put
  them in a template (default: the gold ``answer``);
- ``fn.extract(response, problem) -> str | None``: the answer as shown in records (``pred``).

p2o's built-ins register here in code (:mod:`.builtins`, :mod:`.code`); installed packages add
theirs under the entry-point group ``p2o.rewards``. :mod:`.specs` turns a ``--reward SPEC`` into
one of them, or into the user's own function.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from ..plugins import Registry


class RewardFn(Protocol):
    def __call__(self, responses: Sequence[str], problems: Sequence[Mapping[str, Any]]) -> Sequence[float | None]:
        """One value in [0, 1] (or None: could not judge) per response."""
        ...


# The built-ins register in .builtins and .code, which .specs imports.
REWARDS: Registry[Callable[..., Sequence[float | None]]] = Registry(
    "reward", "p2o.rewards", builtin=("math", "exact", "choice", "regex", "code"))
register_reward = REWARDS.register


def leak_strings(function: Any, problem: Mapping[str, Any], options: Mapping[str, Any]) -> list[str]:
    """What would leak the answer of ``problem`` under this reward (its ``leaks`` hook, else the gold)."""
    hook = getattr(function, "leaks", None)
    if hook is None:
        return [str(problem["answer"])]
    return [str(s) for s in hook(problem, **options) if str(s).strip()]
