"""Silent surprises made loud: checks that return a warning (or raise) instead of carrying on.

Each function is pure: it looks at what the command is about to do and says what is likely
not what the user meant. Commands print the warnings (``p2o: warning: …``) and go on; what
cannot be right raises ValueError (exit status 2).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..config import TEMPERATURE
from ..errors import P2OError
from ..files.records import Hard, Rollout


def schedule_warning(train_step: int, total_steps: int, lr: float) -> str | None:
    """A warning when the ``train_step``-th (0-based) step runs past the schedule or at LR 0.

    Chained ``train-step``s keep the first call's ``--total-steps`` (default 1000): a short
    chain then trains at a tiny warmup LR, and a long one past the end at the cosine floor.
    """
    if train_step >= total_steps:
        return (f"train step {train_step + 1} is past --total-steps {total_steps}: the schedule has ended "
                f"(LR {lr:.3g}); pass a larger --total-steps to the first train-step of the chain")
    if lr == 0:
        return f"train step {train_step + 1} runs at LR 0 (warmup start or cosine floor): the weights will not change"
    return None


def warmup_warning(train_step: int, warmup: int, total_steps: int, lr: float, peak_lr: float) -> str | None:
    """A warning when the ``train_step``-th (0-based) step runs in warmup on a schedule left at its default length.

    A chained ``train-step`` without ``--total-steps`` spans the default schedule: its first
    5% of 1000 steps are warmup, so a short chain never trains at its ``--lr``.
    """
    if train_step >= warmup:
        return None
    return (f"train step {train_step + 1} is still in the LR warmup (LR {lr:.3g} of --lr {peak_lr:g}; warmup lasts "
            f"{warmup} steps) because --total-steps was not given: the schedule spans the default {total_steps} "
            "steps. Pass the chain's length as --total-steps to its first train-step")


def sampling_temperature(rollouts: Iterable[Rollout]) -> float | None:
    """The one temperature the rollouts record (None when none records it).

    Raises ValueError when they record several: one train step has one logit temperature.
    """
    seen = sorted({r.temperature for r in rollouts if r.temperature is not None})
    if len(seen) > 1:
        raise P2OError(f"the rollouts were sampled at several temperatures ({', '.join(f'{t:g}' for t in seen)}); "
                         "train on one temperature at a time")
    return seen[0] if seen else None


def resolve_train_temperature(
    given: float | None, rollouts: Sequence[Rollout], default: float = TEMPERATURE
) -> tuple[float, str | None]:
    """(temperature to train with, warning or None) from ``--temperature`` and the rollouts' own.

    Not given: the rollouts' sampling temperature, else ``default``. Given and different from
    the rollouts': used as asked, with a warning (the trained distribution is then not the
    sampled one, so the PPO ratio is off from the first token).
    """
    sampled = sampling_temperature(rollouts)
    if given is None:
        if sampled is None:
            return default, None
        if sampled <= 0:
            raise P2OError("the rollouts were sampled greedily (temperature 0); pass --temperature to train on them")
        return sampled, None
    if sampled is not None and abs(sampled - given) > 1e-9:
        return given, (f"--temperature {given:g} differs from the temperature the rollouts were sampled at "
                       f"({sampled:g}); the log-probs will not match the sampling distribution")
    return given, None


# p2o gepa warns when its response limit is this many times the one the hard set's rollouts had.
MUCH_LONGER = 2


def gepa_budget_warning(hard: Iterable[Hard], max_new_tokens: int) -> str | None:
    """A warning when GEPA's response limit is far from the one the hard set's rollouts were sampled under.

    Hard records keep each failed response's length and how it ended. Failures cut at the
    response limit (finish reason "length") show that limit: when ``--gepa-max-new-tokens`` is at
    least ``MUCH_LONGER`` times it, problems that failed for lack of tokens may look solved by any
    template. Failures that ended on their own but ran longer than ``max_new_tokens`` would be cut
    by GEPA's evaluations. Files written before failures recorded this give no warning.
    """
    ended = [(f.n_tokens, f.finish_reason) for h in hard for f in h.failures if f.n_tokens is not None]
    cut = [n for n, reason in ended if reason == "length"]
    if cut and max_new_tokens >= MUCH_LONGER * max(cut):
        return (f"{len(cut)} of the hard set's failed rollouts were cut at {max(cut):,} tokens (their "
                f"--max-new-tokens), but --gepa-max-new-tokens is {max_new_tokens:,}: problems that failed for lack "
                "of tokens may look solved by any template; pass the rollouts' --max-new-tokens (p2o run does)")
    longer = [n for n, reason in ended if reason != "length" and n > max_new_tokens]
    if longer:
        return (f"{len(longer)} of the hard set's failed rollouts ended on their own after more than "
                f"--gepa-max-new-tokens {max_new_tokens:,} tokens (up to {max(longer):,}): GEPA's evaluations will "
                "cut such responses; pass the rollouts' --max-new-tokens (p2o run does)")
    return None


def model_of_hard(records: Iterable[Any]) -> str | None:
    """The model a hard set names (its ``model`` field), if all that name one agree."""
    models = {r.model for r in records if getattr(r, "model", None)}
    if len(models) > 1:
        raise P2OError(f"the hard set names several models ({', '.join(sorted(models))}); pass --model")
    return models.pop() if models else None
