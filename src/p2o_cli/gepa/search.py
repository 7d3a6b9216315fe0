"""GEPA's evolutionary loop over the hard set, counted in rollouts and resumable.

The hard set is split into hard-train (minibatches the reflector learns from) and dev (where
kept children are scored; dev-score vectors define the Pareto front). One iteration:

1. select up to W parents from the front (:func:`pareto.select_parents`);
2. give each parent a minibatch of B hard-train problems and evaluate all parents in ONE
   batched engine call (W·B prompts) — the engine is far faster on one big batch;
3. ask the reflector for W children at once (feedback = the parent's responses, extracted
   answers, correctness and the gold answers);
4. drop children that are malformed, duplicates, or that contain a gold answer of their
   minibatch (that would leak answers into training prompts);
5. evaluate the remaining children on their parents' minibatches (one batched call) and keep
   those that beat their parent; score the kept children on all of dev (one batched call).

Budget: every generated completion is one rollout, counted exactly — |dev| for the seed,
B per parent evaluation, B per child evaluation, |dev| per kept child. The budget is checked
before each proposal, so a run overshoots by at most one iteration's worth.

State (templates, spent, iteration, the RNG's state and the minibatch sampler) is written
atomically after every iteration; ``resume=True`` continues to the same result.
"""

from __future__ import annotations

import hashlib
import random
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from ..prompts import PromptConfig, render
from ..records import Hard, Template, append_jsonl, from_dict, write_json
from .pareto import (
    SELECTION_FLOOR,
    dev_coverage,
    front_templates,
    mean_score,
    select_parents,
)
from .reflect import FeedbackRecord, ReflectionRequest, Reflector

if TYPE_CHECKING:
    from ..engines import Engine
    from ..reward import RewardScorer

STATE_SCHEMA = "gepa-state@1"
SEED_TEMPLATE_ID = "t0"


@dataclass
class GepaConfig:
    width: int = 16  # W: parents per iteration
    minibatch: int = 3  # B: hard-train problems per proposal
    dev_size: int = 300  # half the hard set instead when it has fewer than 1.5× this
    budget: int = 11_000  # rollouts
    seed: int = 0
    eval_temperature: float = 0.0  # GEPA evaluates the current policy greedily
    eval_top_p: float = 1.0
    eval_max_new_tokens: int = 1024
    max_iterations: int | None = None
    selection_floor: float = SELECTION_FLOOR
    prompt: PromptConfig = field(default_factory=PromptConfig)

    def __post_init__(self) -> None:
        for name in ("width", "minibatch", "dev_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.budget < 0:
            raise ValueError(f"budget must be non-negative, got {self.budget}")


@dataclass
class GepaResult:
    templates: list[Template]  # the seed template first, then every kept child in order
    spent: int  # rollouts generated, exactly
    iterations: int
    rejected_leaks: int  # children refused for containing a gold answer of their minibatch
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


@dataclass
class _State:
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


# ---------------------------------------------------------------- helpers (pure)


def split_sizes(n: int, dev_size: int) -> int:
    """How many of ``n`` hard problems go to dev: ``dev_size``, or half when n < 1.5·dev_size."""
    if n < 2:
        raise ValueError(f"GEPA needs at least 2 hard problems (one for train, one for dev), got {n}")
    return dev_size if n >= 1.5 * dev_size else n // 2


_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


def _normalize(text: str) -> str:
    return _THOUSANDS.sub("", text)


def leaked_answer(text: str, golds: Iterable[str]) -> str | None:
    """The first gold answer that appears in ``text`` as a whole token, else None.

    "Whole token" keeps a gold of 12 from matching 120, 3.12 or x12, while still catching
    "the answer is 12" or "=12."; thousands separators are ignored on both sides.
    """
    haystack = _normalize(text)
    for gold in golds:
        needle = _normalize(gold.strip().strip("$").strip())
        if not needle:
            continue
        pattern = rf"(?<![0-9A-Za-z.]){re.escape(needle)}(?![0-9A-Za-z])(?!\.\d)"
        if re.search(pattern, haystack):
            return gold
    return None


def _call_seed(seed: int, iteration: int, kind: int) -> int:
    """A distinct engine seed per (run seed, iteration, call kind) so reruns and resumes agree."""
    return (seed * 100_003 + iteration * 7 + kind) % (2**31)


def _fingerprint(hard: Sequence[Hard], cfg: GepaConfig) -> dict[str, Any]:
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
        "eval_temperature": cfg.eval_temperature,
        "eval_top_p": cfg.eval_top_p,
        "eval_max_new_tokens": cfg.eval_max_new_tokens,
        "prompt": asdict(cfg.prompt),
    }


def _rng_to_json(rng: random.Random) -> list[Any]:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def _rng_from_json(obj: list[Any]) -> random.Random:
    rng = random.Random()
    rng.setstate((obj[0], tuple(obj[1]), obj[2]))
    return rng


def _state_to_json(state: _State, rng: random.Random) -> dict[str, Any]:
    state.rng = _rng_to_json(rng)
    return {"schema": STATE_SCHEMA, **asdict(state)}


def load_state(path: str | Path) -> _State:
    obj = orjson.loads(Path(path).read_bytes())
    if obj.get("schema") != STATE_SCHEMA:
        raise ValueError(f"{path}: not a GEPA state file (schema {obj.get('schema')!r})")
    obj.pop("schema")
    obj["templates"] = [from_dict(Template, t) for t in obj["templates"]]
    return _State(**obj)


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
            raise ValueError("hard problems have duplicate ids")
        self.engine, self.tokenizer, self.reflector, self.scorer, self.cfg = engine, tokenizer, reflector, scorer, cfg

    def evaluate(self, jobs: Sequence[tuple[str, str]], seed: int) -> list[tuple[str, float, str | None]]:
        """(response, reward, pred) for each (template text, hard id), in one engine call."""
        if not jobs:
            return []
        prompts = [render(self.tokenizer, self.by_id[pid].problem, text, self.cfg.prompt) for text, pid in jobs]
        outputs = self.engine.generate(
            prompts,
            n=1,
            temperature=self.cfg.eval_temperature,
            top_p=self.cfg.eval_top_p,
            max_new_tokens=self.cfg.eval_max_new_tokens,
            seed=seed,
        )
        if len(outputs) != len(prompts):
            raise RuntimeError(f"engine returned {len(outputs)} results for {len(prompts)} prompts")
        responses = [out[0].text for out in outputs]
        results = self.scorer.score(responses, [self.by_id[pid].answer for _, pid in jobs])
        return [(resp, float(r.reward), r.pred) for resp, r in zip(responses, results)]

    def score_on_dev(self, templates: Sequence[Template], dev_ids: list[str], seed: int) -> None:
        jobs = [(t.text, pid) for t in templates for pid in dev_ids]
        results = self.evaluate(jobs, seed)
        for i, template in enumerate(templates):
            template.dev_ids = list(dev_ids)
            template.dev_scores = [r for _, r, _ in results[i * len(dev_ids) : (i + 1) * len(dev_ids)]]


def _minibatch(state: _State, rng: random.Random, size: int) -> list[str]:
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


def _add_solved(template: Template, ids: Iterable[str]) -> None:
    for pid in ids:
        if pid not in template.train_solved:
            template.train_solved.append(pid)


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
) -> GepaResult:
    """Evolve templates on ``hard``; see the module docstring. Resumes from ``state_path`` if asked."""
    search = _Search(hard, engine, tokenizer, reflector, scorer, cfg)
    fingerprint = _fingerprint(hard, cfg)
    B = cfg.minibatch

    if resume and state_path is not None and Path(state_path).is_file():
        state = load_state(state_path)
        if state.fingerprint != fingerprint:
            changed = sorted(k for k in fingerprint if state.fingerprint.get(k) != fingerprint[k])
            raise ValueError(
                f"{state_path}: the saved search used different {', '.join(changed)}; "
                "resume with the same inputs or start afresh without --resume"
            )
        rng = _rng_from_json(state.rng)
    else:
        rng = random.Random(cfg.seed)
        ids = [h.id for h in hard]
        n_dev = split_sizes(len(ids), cfg.dev_size)
        shuffled = list(ids)
        rng.shuffle(shuffled)
        dev_ids, train_ids = shuffled[:n_dev], shuffled[n_dev:]
        state = _State(fingerprint, dev_ids, train_ids, [], None, list(train_ids), len(train_ids))
        seed_template = Template(SEED_TEMPLATE_ID, "", parent_id=None, iteration=0)
        search.score_on_dev([seed_template], dev_ids, _call_seed(cfg.seed, 0, 0))
        state.templates.append(seed_template)
        state.spent = len(dev_ids)
        _checkpoint(state, rng, state_path, metrics_path, on_iteration, cfg, _metrics(state, cfg, {}, 0.0))

    stop_reason = "budget"
    while True:
        if state.spent >= cfg.budget:
            stop_reason = "budget"
            break
        if cfg.max_iterations is not None and state.iteration >= cfg.max_iterations:
            stop_reason = "max_iterations"
            break
        started = time.perf_counter()
        it = state.iteration + 1
        parents = select_parents(state.templates, cfg.width, rng, cfg.selection_floor)

        # Budget is checked before each proposal: a proposal costs at most 2B rollouts here.
        slots: list[tuple[Template, list[str]]] = []
        planned = state.spent
        for parent in parents:
            if planned >= cfg.budget:
                break
            batch = _minibatch(state, rng, B)
            slots.append((parent, batch))
            planned += 2 * len(batch)

        # 1. All parents on their minibatches: one engine call of W·B prompts.
        jobs = [(parent.text, pid) for parent, batch in slots for pid in batch]
        results = search.evaluate(jobs, _call_seed(cfg.seed, it, 1))
        state.spent += len(jobs)
        state.counters["proposals"] += len(slots)
        parent_scores: list[float] = []
        requests: list[tuple[int, ReflectionRequest]] = []
        offset = 0
        for slot, (parent, batch) in enumerate(slots):
            mine = results[offset : offset + len(batch)]
            offset += len(batch)
            rewards = [r for _, r, _ in mine]
            parent_scores.append(sum(rewards))
            _add_solved(parent, [pid for pid, r in zip(batch, rewards) if r > 0])
            if all(r > 0 for r in rewards):
                # Nothing failed, and a child cannot beat a perfect score: save the reflection.
                state.counters["perfect"] += 1
                continue
            feedback = [
                FeedbackRecord(pid, search.by_id[pid].problem, resp, pred, reward > 0, search.by_id[pid].answer)
                for pid, (resp, reward, pred) in zip(batch, mine)
            ]
            seed = _call_seed(cfg.seed, it, 10 + slot)
            requests.append((slot, ReflectionRequest(parent.template_id, parent.text, feedback, seed, iteration=it)))

        # 2. The reflector proposes all children of this iteration at once.
        answers = reflector.propose([req for _, req in requests]) if requests else []
        if len(answers) != len(requests):
            raise RuntimeError(f"reflector returned {len(answers)} answers for {len(requests)} requests")
        state.counters["reflections"] += len(requests)
        known = {t.text.strip() for t in state.templates}
        children: list[tuple[int, str]] = []
        leaks = 0
        for (slot, _), answer in zip(requests, answers):
            text = answer.strip() if isinstance(answer, str) else ""
            parent, batch = slots[slot]
            if not text:
                state.counters["skipped"] += 1
            elif text in known:
                state.counters["duplicates"] += 1
            elif leaked_answer(text, [search.by_id[pid].answer for pid in batch]) is not None:
                leaks += 1
            else:
                known.add(text)
                children.append((slot, text))
        state.counters["rejected_leaks"] += leaks

        # 3. Children on their parents' minibatches: one engine call.
        child_jobs = [(text, pid) for slot, text in children for pid in slots[slot][1]]
        child_results = search.evaluate(child_jobs, _call_seed(cfg.seed, it, 2))
        state.spent += len(child_jobs)
        kept: list[Template] = []
        child_scores: dict[int, float] = {}
        offset = 0
        for index, (slot, text) in enumerate(children):
            parent, batch = slots[slot]
            rewards = [r for _, r, _ in child_results[offset : offset + len(batch)]]
            offset += len(batch)
            child_scores[slot] = sum(rewards)
            if child_scores[slot] > parent_scores[slot]:
                child = Template(f"g{it}-{slot}", text, parent_id=parent.template_id, iteration=it)
                _add_solved(child, [pid for pid, r in zip(batch, rewards) if r > 0])
                kept.append(child)

        # 4. Kept children on all of dev: one engine call.
        search.score_on_dev(kept, state.dev_ids, _call_seed(cfg.seed, it, 3))
        state.spent += len(kept) * len(state.dev_ids)
        state.templates.extend(kept)
        state.counters["kept"] += len(kept)
        state.iteration = it

        per_iteration = {
            "gepa/proposals": len(slots),
            "gepa/parent_ids": [p.template_id for p, _ in slots],
            "gepa/parent_scores": [s / max(len(b), 1) for s, (_, b) in zip(parent_scores, slots)],
            "gepa/child_scores": [
                child_scores[i] / max(len(b), 1) if i in child_scores else None for i, (_, b) in enumerate(slots)
            ],
            "gepa/kept": len(kept),
            "gepa/kept_ids": [t.template_id for t in kept],
            "gepa/rejected_leaks": leaks,
        }
        scored = [s for s in per_iteration["gepa/child_scores"] if s is not None]
        per_iteration["gepa/parent_score_mean"] = (
            sum(per_iteration["gepa/parent_scores"]) / len(slots) if slots else None
        )
        per_iteration["gepa/child_score_mean"] = sum(scored) / len(scored) if scored else None
        metrics = _metrics(state, cfg, per_iteration, time.perf_counter() - started)
        _checkpoint(state, rng, state_path, metrics_path, on_iteration, cfg, metrics)

    front = front_templates(state.templates)
    return GepaResult(
        templates=state.templates,
        spent=state.spent,
        iterations=state.iteration,
        rejected_leaks=state.counters["rejected_leaks"],
        proposals=state.counters["proposals"],
        reflections=state.counters["reflections"],
        kept=state.counters["kept"],
        skipped=state.counters["skipped"],
        duplicates=state.counters["duplicates"],
        perfect=state.counters["perfect"],
        dev_ids=state.dev_ids,
        train_ids=state.train_ids,
        front=[t.template_id for t in front],
        stop_reason=stop_reason,
    )


def _metrics(state: _State, cfg: GepaConfig, per_iteration: dict[str, Any], seconds: float) -> dict[str, Any]:
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
    state: _State,
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
        write_json(state_path, _state_to_json(state, rng))
    if on_iteration is not None:
        on_iteration(GepaProgress(state.iteration, metrics, state.templates, front_templates(state.templates), cfg.budget))
