"""What a reward value means: the range it lies in, when a response counts as solved, and how
several rewards combine into one.

Pure functions with no imports beyond the standard library, so every room that reads rewards
(mining, GEPA, evaluation, the report) agrees on them.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

# Full marks. A response is *solved* when its reward reaches it: for the binary rewards this is
# the same as "reward > 0", and for graded rewards (a share of unit tests passed, a weighted sum
# with a format bonus) partial credit does not count as solving the problem.
FULL_MARKS = 1.0


def solved(reward: float) -> bool:
    """Whether a reward is full marks (what mining, GEPA's coverage and eval accuracy count)."""
    return reward >= FULL_MARKS


def weighted_total(values: Sequence[float], weights: Sequence[float]) -> float:
    """The weighted mean of component rewards: in [0, 1] whenever they are.

    Weights are normalised to sum to 1 (TRL sums weighted rewards instead, which would leave
    [0, 1] and break mining's τ). All components at full marks give exactly 1.0: numerator and
    denominator are the same sum, computed in the same order.
    """
    total = sum(w * v for w, v in zip(weights, values))
    return min(1.0, max(0.0, total / sum(weights)))


@dataclass(frozen=True)
class Failure:
    """A reward function's failure on one response: it raised, hung, crashed or returned junk."""

    message: str
    timed_out: bool = False


@dataclass(frozen=True)
class OutOfRange:
    """A number outside [0, 1]: a bug in the reward (a raw count, a missing scale), never a score."""

    value: float


Judgement = float | None | Failure | OutOfRange


def judged(value: object) -> Judgement:
    """A reward function's return value for one response, classified.

    A number in [0, 1] (bools count as 0/1) is a score; None means "could not judge"; NaN or a
    value that is not a number is a failure of the function on this item; a number outside
    [0, 1] is an :class:`OutOfRange`.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return float(value)
    try:  # a float, an int, a NumPy scalar, a 0-d tensor
        number = float(value) if isinstance(value, numbers.Real) or hasattr(value, "__float__") else None
    except (TypeError, ValueError):
        number = None
    if number is None:
        return Failure(f"returned {type(value).__name__} {value!r:.60}, not a number")
    if math.isnan(number):
        return Failure("returned NaN")
    if not 0.0 <= number <= 1.0:
        return OutOfRange(number)
    return number
