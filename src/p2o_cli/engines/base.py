"""The engine protocol: what p2o needs from anything that samples a model."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ..config import MAX_NEW_TOKENS, TEMPERATURE

if TYPE_CHECKING:  # only for the annotation: importing torch costs seconds at start-up
    import torch

# Called after each finished chunk with (completions newly finished, tokens newly generated).
ProgressFn = Callable[[int, int], None]


def request_seed(seed: int | None, index: int) -> int | None:
    """The seed of a call's ``index``-th prompt for a server that seeds each request.

    Prompt ``index``'s samples then depend on (seed, index), not on what else is queued with it.
    """
    return None if seed is None else seed * 1_000_003 + index


@dataclass
class Completion:
    text: str
    n_tokens: int
    finish_reason: str  # "stop" (end of turn) or "length" (hit max_new_tokens)
    token_ids: list[int] | None = None
    # Per-token sampling log-probs, where the engine can give them.
    logprobs: list[float] | None = None


@runtime_checkable
class Engine(Protocol):
    def generate(
        self,
        prompts: Sequence[str],
        n: int = 1,
        temperature: float = TEMPERATURE,
        top_p: float = 1.0,
        max_new_tokens: int = MAX_NEW_TOKENS,
        seed: int | None = 0,
        progress: ProgressFn | None = None,
    ) -> list[list[Completion]]:
        """``n`` completions for each rendered prompt, in order. temperature 0 = greedy."""
        ...

    def update_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Load new policy weights in place (no restart)."""
        ...

    def close(self) -> None: ...
