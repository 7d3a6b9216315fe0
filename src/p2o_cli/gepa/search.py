"""GEPA's evolutionary loop over the hard set, counted in rollouts and resumable.

The hard set is split into hard-train (minibatches the reflector learns from) and dev (where
kept children are scored; dev-score vectors define the Pareto front). One iteration:

1. select up to W parents from the front (:func:`pareto.select_parents`);
2. give each parent a minibatch of B hard-train problems and evaluate all parents in ONE
   batched engine call (W·B prompts) — the engine is far faster on one big batch;
3. ask the reflector for W children at once (feedback = the parent's responses, extracted
   answers, correctness and the gold answers);
4. drop children that are malformed, duplicates, or that would leak an answer of their
   minibatch into training prompts (what leaks is each reward's ``leaks`` hook: the gold
   answer for math, exact and choice, the expected outputs for code);
5. evaluate the remaining children on their parents' minibatches (one batched call) and keep
   those that beat their parent; score the kept children on all of dev (one batched call).

Every proposed child, kept or not, is recorded with its outcome (``SearchState.proposals``), so
the search can be inspected afterwards (``p2o report --html``).

Budget: every generated completion is one rollout, counted exactly — |dev| for the seed,
B per parent evaluation, B per child evaluation, |dev| per kept child. The budget is checked
before each proposal, so a run overshoots by at most one iteration's worth.

State (templates, proposals, spent, iteration, the RNG's state and the minibatch sampler) is written
atomically after every iteration; ``resume=True`` continues to the same result.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..data.prompts import render
from ..errors import P2OError
from ..files.faults import fault
from ..files.records import MAX_TEMPLATE_CHARS, Hard, Template, append_jsonl, problem_fields, write_json
from ..reward.values import solved
from .acceptance import failed_proposals, failure_streak, leaked_answer
from .config import GepaConfig
from .pareto import dev_coverage, front_templates, mean_score, select_parents
from .reflect import FeedbackRecord, ReflectionRequest, Reflector
from .state import (
    Proposal,
    SearchState,
    add_solved,
    call_seed,
    check_budget,
    fingerprint,
    load_state,
    next_minibatch,
    proposal,
    rng_from_json,
    state_to_json,
)

if TYPE_CHECKING:
    from ..engines import Engine
    from ..reward.pool import RewardScorer

SEED_TEMPLATE_ID = "t0"


@dataclass
class GepaResult:
    templates: list[Template]  # the seed template first, then every kept child in order
    spent: int  # rollouts generated, exactly
    iterations: int
    rejected_leaks: int  # children refused for giving away an answer of their minibatch
    proposals: int  # parent minibatch evaluations
    reflections: int  # children asked of the reflector
    kept: int
    skipped: int  # the reflector gave no usable answer
    duplicates: int  # the child repeated an existing template's text
    perfect: int  # the parent solved its whole minibatch: nothing to reflect on
    dev_ids: list[str]
    train_ids: list[str]
    front: list[str]  # template ids on the final Pareto front
    stop_reason: str  # "budget" or "max_iterations"


@dataclass
class GepaProgress:
    """What ``on_iteration`` sees after each iteration (and once after the seed is scored)."""

    iteration: int
    metrics: dict[str, Any]
    templates: list[Template]
    front: list[Template]
    budget: int


# ---------------------------------------------------------------- helpers (pure)


# ---------------------------------------------------------------- the loop


class _Search:
    def __init__(
        self,
        hard: Sequence[Hard],
        engine: Engine,
        tokenizer: Any,
        reflector: Reflector,
        scorer: RewardScorer,
        cfg: GepaConfig,
    ):
        self.by_id = {h.id: h for h in hard}
        if len(self.by_id) != len(hard):
            raise P2OError("hard problems have duplicate ids")
        self.fields = {h.id: problem_fields(h) for h in hard}  # what the reward reads of each problem
        self.engine, self.tokenizer, self.reflector, self.scorer, self.cfg = engine, tokenizer, reflector, scorer, cfg

    def evaluate(self, jobs: Sequence[tuple[str, str]], seed: int) -> list[tuple[str, float, str | None]]:
        """(response, reward, pred) for each (template text, hard id), in one engine call."""
        if not jobs:
            return []
        prompts = [render(self.tokenizer, self.by_id[pid].problem, text, self.cfg.prompt) for text, pid in jobs]
        outputs = self.engine.generate(
            prompts,
            n=1,
            temperature=self.cfg.gepa_temperature,
            top_p=self.cfg.gepa_top_p,
            max_new_tokens=self.cfg.gepa_max_new_tokens,
            seed=seed,
        )
        if len(outputs) != len(prompts):
            raise RuntimeError(f"engine returned {len(outputs)} results for {len(prompts)} prompts")
        responses = [out[0].text for out in outputs]
        results = self.scorer.score(responses, [self.fields[pid] for _, pid in jobs])
        return [(resp, float(r.reward), r.pred) for resp, r in zip(responses, results)]

    def score_on_dev(self, templates: Sequence[Template], dev_ids: list[str], seed: int) -> None:
        jobs = [(t.text, pid) for t in templates for pid in dev_ids]
        results = self.evaluate(jobs, seed)
        for i, template in enumerate(templates):
            template.dev_ids = list(dev_ids)
            template.dev_scores = [r for _, r, _ in results[i * len(dev_ids) : (i + 1) * len(dev_ids)]]


@dataclass
class _Iteration:
    """One GEPA iteration as it unfolds: each phase below fills in its part."""

    number: int
    slots: list[tuple[Template, list[str]]]  # (parent, its minibatch of hard-train ids)
    parent_scores: list[float] = field(default_factory=list)
    requests: list[tuple[int, ReflectionRequest]] = field(default_factory=list)
    children: list[tuple[int, str]] = field(default_factory=list)  # (slot, template text)
    child_scores: dict[int, float] = field(default_factory=dict)
    kept: list[Template] = field(default_factory=list)
    leaks: int = 0
    proposals: dict[int, Proposal] = field(default_factory=dict)  # slot -> what became of its child


def run_gepa(
    hard: Sequence[Hard],
    engine: Engine,
    tokenizer: Any,
    reflector: Reflector,
    scorer: RewardScorer,
    cfg: GepaConfig,
    state_path: str | Path | None = None,
    metrics_path: str | Path | None = None,
    on_iteration: Callable[[GepaProgress], None] | None = None,
    resume: bool = False,
    save: bool = True,
) -> GepaResult:
    """Evolve templates on ``hard``; see the module docstring. Resumes from ``state_path`` if asked.

    ``save=False`` reads ``state_path`` to resume but writes neither it nor ``metrics_path``: a
    rank other than 0 running the same search beside it.
    """
    search = _Search(hard, engine, tokenizer, reflector, scorer, cfg)
    saved_to = (state_path, metrics_path) if save else (None, None)
    if resume and state_path is not None and Path(state_path).is_file():
        state, rng = _resumed(hard, cfg, state_path)
    else:
        state, rng = _seeded(search, hard, cfg)
        _checkpoint(state, rng, *saved_to, on_iteration, cfg, _metrics(state, cfg, {}, 0.0))
    failure_streak = 0
    while (stop_reason := _stop_reason(state, cfg)) is None:
        started = time.perf_counter()
        it = _Iteration(state.iteration + 1, _plan(state, rng, cfg))
        _score_parents(search, state, it, cfg)
        failure_streak = _propose(search, state, it, cfg, failure_streak)
        _score_children(search, state, it, cfg)
        metrics = _metrics(state, cfg, _iteration_metrics(it), time.perf_counter() - started)
        _checkpoint(state, rng, *saved_to, on_iteration, cfg, metrics)
    return _result(state, stop_reason)


def _resumed(hard: Sequence[Hard], cfg: GepaConfig, state_path: str | Path) -> tuple[SearchState, random.Random]:
    state = load_state(state_path)
    expected = fingerprint(hard, cfg)
    if state.fingerprint != expected:
        changed = sorted(k for k in expected if state.fingerprint.get(k) != expected[k])
        raise P2OError(
            f"{state_path}: the saved search used different {', '.join(changed)}; "
            "resume with the same inputs or start afresh without --resume"
        )
    return state, rng_from_json(state.rng)


def _seeded(search: _Search, hard: Sequence[Hard], cfg: GepaConfig) -> tuple[SearchState, random.Random]:
    """A fresh search: the dev/train split and the empty seed template scored on dev."""
    rng = random.Random(cfg.seed)
    ids = [h.id for h in hard]
    n_dev = check_budget(len(ids), cfg)
    shuffled = list(ids)
    rng.shuffle(shuffled)
    dev_ids, train_ids = shuffled[:n_dev], shuffled[n_dev:]
    state = SearchState(fingerprint(hard, cfg), dev_ids, train_ids, [], None, list(train_ids), len(train_ids))
    seed_template = Template(SEED_TEMPLATE_ID, "", parent_id=None, iteration=0)
    search.score_on_dev([seed_template], dev_ids, call_seed(cfg.seed, 0, 0))
    state.templates.append(seed_template)
    state.spent = len(dev_ids)
    return state, rng


def _stop_reason(state: SearchState, cfg: GepaConfig) -> str | None:
    if state.spent >= cfg.budget:
        return "budget"
    if cfg.max_iterations is not None and state.iteration >= cfg.max_iterations:
        return "max_iterations"
    return None


def _plan(state: SearchState, rng: random.Random, cfg: GepaConfig) -> list[tuple[Template, list[str]]]:
    """Up to W parents from the front, each with a minibatch; the budget is checked before each
    proposal (one costs at most 2B rollouts before dev scoring)."""
    slots: list[tuple[Template, list[str]]] = []
    planned = state.spent
    for parent in select_parents(state.templates, cfg.width, rng, cfg.selection_floor):
        if planned >= cfg.budget:
            break
        batch = next_minibatch(state, rng, cfg.minibatch)
        slots.append((parent, batch))
        planned += 2 * len(batch)
    return slots


def _score_parents(search: _Search, state: SearchState, it: _Iteration, cfg: GepaConfig) -> None:
    """All parents on their minibatches in one engine call; a reflection request per imperfect parent."""
    jobs = [(parent.text, pid) for parent, batch in it.slots for pid in batch]
    results = search.evaluate(jobs, call_seed(cfg.seed, it.number, 1))
    fault("gepa")  # reliability tests: killed mid-iteration
    state.spent += len(jobs)
    state.counters["proposals"] += len(it.slots)
    offset = 0
    for slot, (parent, batch) in enumerate(it.slots):
        mine = results[offset : offset + len(batch)]
        offset += len(batch)
        rewards = [r for _, r, _ in mine]
        it.parent_scores.append(sum(rewards))
        add_solved(parent, [pid for pid, r in zip(batch, rewards) if solved(r)])
        if all(solved(r) for r in rewards):
            # Nothing failed, and a child cannot beat a perfect score: save the reflection.
            state.counters["perfect"] += 1
            continue
        feedback = [
            FeedbackRecord(pid, search.by_id[pid].problem, resp, pred, solved(reward), search.by_id[pid].answer)
            for pid, (resp, reward, pred) in zip(batch, mine)
        ]
        seed = call_seed(cfg.seed, it.number, 10 + slot)
        it.requests.append((slot, ReflectionRequest(parent.template_id, parent.text, feedback, seed)))


def _propose(search: _Search, state: SearchState, it: _Iteration, cfg: GepaConfig, streak: int) -> int:
    """The reflector's children, all at once; unusable, duplicate and answer-leaking ones dropped.
    Returns the run of proposals in a row that got no reply (ReflectorError at the limit)."""
    reflector = search.reflector
    failed_before = failed_proposals(reflector)
    answers = reflector.propose([req for _, req in it.requests]) if it.requests else []
    if len(answers) != len(it.requests):
        raise RuntimeError(f"reflector returned {len(answers)} answers for {len(it.requests)} requests")
    streak = failure_streak(streak, failed_proposals(reflector) - failed_before, len(it.requests),
                             cfg.max_reflector_failures, reflector)
    state.counters["reflections"] += len(it.requests)
    known = {t.text.strip() for t in state.templates}
    for (slot, _), answer in zip(it.requests, answers):
        text = answer.strip() if isinstance(answer, str) else ""
        parent, batch = it.slots[slot]
        if not text or len(text) > MAX_TEMPLATE_CHARS:  # over-long: refused before any evaluation
            state.counters["skipped"] += 1
            outcome = "unusable"
        elif text in known:
            state.counters["duplicates"] += 1
            outcome = "duplicate"
        elif leaked_answer(text, [s for pid in batch for s in search.scorer.leaks(search.fields[pid])]):
            it.leaks += 1
            outcome = "leaks_answer"
        else:
            known.add(text)
            it.children.append((slot, text))
            outcome = "not_better"  # until its minibatch score says otherwise
        it.proposals[slot] = proposal(it.number, parent, text, outcome, batch)
        it.proposals[slot].parent_score = it.parent_scores[slot]
    state.counters["rejected_leaks"] += it.leaks
    return streak


def _score_children(search: _Search, state: SearchState, it: _Iteration, cfg: GepaConfig) -> None:
    """Children on their parents' minibatches (one call); those that beat their parent on all of dev."""
    jobs = [(text, pid) for slot, text in it.children for pid in it.slots[slot][1]]
    results = search.evaluate(jobs, call_seed(cfg.seed, it.number, 2))
    state.spent += len(jobs)
    offset = 0
    for slot, text in it.children:
        parent, batch = it.slots[slot]
        rewards = [r for _, r, _ in results[offset : offset + len(batch)]]
        offset += len(batch)
        it.child_scores[slot] = it.proposals[slot].child_score = sum(rewards)
        if it.child_scores[slot] > it.parent_scores[slot]:
            child = Template(f"g{it.number}-{slot}", text, parent_id=parent.template_id, iteration=it.number)
            add_solved(child, [pid for pid, r in zip(batch, rewards) if solved(r)])
            it.kept.append(child)
            it.proposals[slot].outcome, it.proposals[slot].template_id = "kept", child.template_id
    search.score_on_dev(it.kept, state.dev_ids, call_seed(cfg.seed, it.number, 3))
    state.spent += len(it.kept) * len(state.dev_ids)
    state.templates.extend(it.kept)
    state.proposals.extend(it.proposals[slot] for slot in sorted(it.proposals))
    state.counters["kept"] += len(it.kept)
    state.iteration = it.number


def _iteration_metrics(it: _Iteration) -> dict[str, Any]:
    sizes = [max(len(batch), 1) for _, batch in it.slots]
    parent_scores = [s / n for s, n in zip(it.parent_scores, sizes)]
    child_scores = [it.child_scores[i] / n if i in it.child_scores else None for i, n in enumerate(sizes)]
    scored = [s for s in child_scores if s is not None]
    return {
        "gepa/proposals": len(it.slots),
        "gepa/parent_ids": [p.template_id for p, _ in it.slots],
        "gepa/parent_scores": parent_scores,
        "gepa/child_scores": child_scores,
        "gepa/kept": len(it.kept),
        "gepa/kept_ids": [t.template_id for t in it.kept],
        "gepa/rejected_leaks": it.leaks,
        "gepa/parent_score_mean": sum(parent_scores) / len(it.slots) if it.slots else None,
        "gepa/child_score_mean": sum(scored) / len(scored) if scored else None,
    }


def _result(state: SearchState, stop_reason: str) -> GepaResult:
    counters = state.counters
    return GepaResult(
        templates=state.templates, spent=state.spent, iterations=state.iteration,
        rejected_leaks=counters["rejected_leaks"], proposals=counters["proposals"],
        reflections=counters["reflections"], kept=counters["kept"], skipped=counters["skipped"],
        duplicates=counters["duplicates"], perfect=counters["perfect"], dev_ids=state.dev_ids,
        train_ids=state.train_ids, front=[t.template_id for t in front_templates(state.templates)],
        stop_reason=stop_reason,
    )


def _metrics(state: SearchState, cfg: GepaConfig, per_iteration: dict[str, Any], seconds: float) -> dict[str, Any]:
    front = front_templates(state.templates)
    return {
        "gepa/iteration": state.iteration,
        **per_iteration,
        "gepa/spent": state.spent,
        "gepa/budget": cfg.budget,
        "gepa/templates": len(state.templates),
        "gepa/front_size": len(front),
        "gepa/best_dev_mean": max(mean_score(t) for t in state.templates),
        "gepa/dev_coverage": dev_coverage(state.templates),
        "gepa/rejected_leaks_total": state.counters["rejected_leaks"],
        "gepa/seconds": round(seconds, 3),
    }


def _checkpoint(
    state: SearchState,
    rng: random.Random,
    state_path: str | Path | None,
    metrics_path: str | Path | None,
    on_iteration: Callable[[GepaProgress], None] | None,
    cfg: GepaConfig,
    metrics: dict[str, Any],
) -> None:
    """Metrics line, then the state (atomically), then the caller's hook (which may stop the run)."""
    if metrics_path is not None:
        append_jsonl(metrics_path, metrics)
    if state_path is not None:
        write_json(state_path, state_to_json(state, rng))
    if on_iteration is not None:
        on_iteration(
            GepaProgress(state.iteration, metrics, state.templates, front_templates(state.templates), cfg.budget)
        )
