"""GEPA's saved search: its state, the dev/train split, the minibatch sampler, resumable as JSON."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..errors import P2OError, shown
from ..files.records import MAX_TEMPLATE_CHARS, Hard, Template, from_dict, read_json_object
from .config import GepaConfig

STATE_SCHEMA = "gepa-state@1"
# What became of a proposed child: kept (it beat its parent on the minibatch), or why not.
OUTCOMES = ("kept", "not_better", "duplicate", "leaks_answer", "unusable")


@dataclass
class Proposal:
    """A child the reflector proposed at one iteration and what became of it. Kept children are
    also templates; the others exist only here, so the search can be inspected afterwards."""

    iteration: int
    parent_id: str
    text: str  # cut to MAX_TEMPLATE_CHARS when the reflector sent more (then it is "unusable")
    outcome: str
    minibatch: list[str] = field(default_factory=list)
    parent_score: float | None = None  # problems of the minibatch the parent solved
    child_score: float | None = None  # ... and the child (None: refused before evaluation)
    template_id: str | None = None  # the kept child's id


def proposal(iteration: int, parent: Template, text: str, outcome: str, minibatch: list[str]) -> Proposal:
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}")
    return Proposal(iteration, parent.template_id, text[:MAX_TEMPLATE_CHARS], outcome, list(minibatch))


@dataclass
class SearchState:
    fingerprint: dict[str, Any]
    dev_ids: list[str]
    train_ids: list[str]
    templates: list[Template]
    rng: Any  # random.Random.getstate(), as JSON
    train_order: list[str]
    train_pos: int = 0
    iteration: int = 0
    spent: int = 0
    counters: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("proposals", "reflections", "kept", "skipped", "duplicates", "perfect", "rejected_leaks"), 0
        )
    )
    # Every child proposed so far, kept or not, in order (states saved before it existed load as []).
    proposals: list[Proposal] = field(default_factory=list)


def split_sizes(n: int, dev_size: int) -> int:
    """How many of ``n`` hard problems go to dev: ``dev_size``, or half when n < 1.5·dev_size."""
    if n < 2:
        raise P2OError(f"GEPA needs at least 2 hard problems (one for train, one for dev), got {n}")
    return dev_size if n >= 1.5 * dev_size else n // 2


def check_budget(n_hard: int, cfg: GepaConfig) -> int:
    """The dev-set size for ``n_hard`` problems; ValueError when the budget cannot even score the seed."""
    n_dev = split_sizes(n_hard, cfg.dev_size)
    if cfg.budget < n_dev:
        raise P2OError(
            f"a GEPA budget of {cfg.budget} rollouts cannot score the seed template on {n_dev} dev problems; "
            f"give at least {n_dev}"
        )
    return n_dev


def call_seed(seed: int, iteration: int, kind: int) -> int:
    """A distinct engine seed per (run seed, iteration, call kind) so reruns and resumes agree."""
    return (seed * 100_003 + iteration * 7 + kind) % (2**31)


def fingerprint(hard: Sequence[Hard], cfg: GepaConfig) -> dict[str, Any]:
    digest = hashlib.sha256()
    for h in hard:
        digest.update(orjson.dumps([h.id, h.problem, h.answer]))
    return {
        "hard": digest.hexdigest()[:16],
        "n_hard": len(hard),
        "width": cfg.width,
        "minibatch": cfg.minibatch,
        "dev_size": cfg.dev_size,
        "seed": cfg.seed,
        "eval_temperature": cfg.gepa_temperature,
        "eval_top_p": cfg.gepa_top_p,
        "eval_max_new_tokens": cfg.gepa_max_new_tokens,
        "prompt": asdict(cfg.prompt),
    }


def _rng_to_json(rng: random.Random) -> list[Any]:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def rng_from_json(obj: list[Any]) -> random.Random:
    rng = random.Random()
    rng.setstate((obj[0], tuple(obj[1]), obj[2]))
    return rng


def state_to_json(state: SearchState, rng: random.Random) -> dict[str, Any]:
    state.rng = _rng_to_json(rng)
    return {"schema": STATE_SCHEMA, **asdict(state)}


def load_state(path: str | Path) -> SearchState:
    """The saved search; ValueError naming the file on anything malformed."""
    obj = read_json_object(path)
    if obj.get("schema") != STATE_SCHEMA:
        raise P2OError(f"{path}: not a GEPA state file (schema {shown(obj.get('schema'))})")
    obj.pop("schema")
    try:
        state = from_dict(SearchState, obj)
        if not all(isinstance(v, int) and v >= 0 for v in state.counters.values()):
            raise P2OError("counters must be non-negative integers")
        if state.spent < 0 or state.iteration < 0 or not 0 <= state.train_pos <= len(state.train_order):
            raise P2OError("spent, iteration and train_pos are out of range")
        if not state.templates:
            raise P2OError("no templates")
        rng_from_json(state.rng)
    except (ValueError, TypeError, IndexError, KeyError, OverflowError) as err:
        raise P2OError(f"{path}: corrupt GEPA state ({err}); start afresh without --resume") from None
    return state


def next_minibatch(state: SearchState, rng: random.Random, size: int) -> list[str]:
    """The next ``size`` hard-train ids: epochs of shuffled hard-train, no repeats inside one draw."""
    size = min(size, len(state.train_ids))
    if state.train_pos + size > len(state.train_order):
        # Start a new epoch rather than straddle two (which could repeat a problem in one draw).
        state.train_order = list(state.train_ids)
        rng.shuffle(state.train_order)
        state.train_pos = 0
    batch = state.train_order[state.train_pos : state.train_pos + size]
    state.train_pos += size
    return batch


def add_solved(template: Template, ids: Iterable[str]) -> None:
    for pid in ids:
        if pid not in template.train_solved:
            template.train_solved.append(pid)
