"""Scoring in a process pool: batched, with a per-item timeout, crash isolation and a cache.

math-verify hands answers to sympy, which can spend hours on ``9^{9^{9^{9^9}}}``, and a user's
reward function can hang, raise, crash its process or allocate without bound; here no response
can hang or crash training. ``math`` keeps its own fast path (answers extracted here, judgements
cached, each item timed as it runs); every other reward is called on batches of responses with
a time limit of its per-item limit times the batch's size, and a batch that fails is split so
that only the responses that fail alone score 0.
"""

from __future__ import annotations

import functools
import itertools
import logging
import multiprocessing as mp
import os
import queue as queue_module
import resource
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import P2OError, one_line
from .lifeline import die_with
from .qwen import KEEP_UNITS
from .registry import leak_strings
from .specs import Component, load_reward
from .values import Failure, Judgement, OutOfRange, judged, weighted_total
from .verify import _CACHE_LIMIT, RewardResult, _final_answer, _judge, answers_match, check_grader

if TYPE_CHECKING:
    from .config import RewardConfig

MATH = Component("math", "math", "math")
# A reward function's first batch is this small, so one that fails everywhere stops a command in
# seconds (exit 2), even when it hangs on every response.
FIRST_BATCH = 16
Problem = Mapping[str, Any]


class RewardError(P2OError):
    """A reward function that is broken, not merely wrong on some responses: the command stops."""


# --- worker side ---------------------------------------------------------------------------

_barrier = None
_progress = None
_functions: dict[Component, Callable[..., Any] | Exception] = {}  # loaded, or why it would not load


def _init_worker(barrier, progress, parent: int, memory_mb: int | None = None,
                 components: Sequence[Component] = ()) -> None:
    global _barrier, _progress
    _barrier, _progress = barrier, progress
    die_with(parent)  # a kill -9 of p2o must not leave the pool running (see lifeline.py)
    if memory_mb:
        # Private writable memory (the heap, not mapped libraries): past it an allocation raises
        # MemoryError in this worker instead of waking the machine's OOM killer.
        resource.setrlimit(resource.RLIMIT_DATA, (memory_mb << 20, memory_mb << 20))
    for component in components:
        # Loaded here, before any item's clock starts: a reward module may import a model.
        try:
            _functions[component] = load_reward(component.target)
        except Exception as err:  # noqa: BLE001 - reported on every item it is asked to score
            _functions[component] = err
    # math-verify warns that its timeouts are off; the scorer enforces them instead.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    answers_match("1/2", "0.5")  # pay sympy's first-call costs before any timed item (integers skip sympy)


def _await_siblings() -> None:
    # Each worker holds one of these tasks until all have one, so every worker is started
    # and initialised before timed items arrive (process start-up must not eat into timeouts).
    _barrier.wait(timeout=60)


def _verify_job(pred: str, gold: str, grader: str = "strict", bench: str | None = None) -> float:
    try:
        return 1.0 if _judge(pred, gold, grader, bench) else 0.0
    except Exception:  # noqa: BLE001 - a judge error is a wrong answer, never a failed batch
        return 0.0


def _verify_batch(job: int, items: list[tuple[str, str, str, str | None]]) -> list[float]:
    """Judge items in order, reporting each result as it lands: the parent times every item."""
    results = []
    for n, item in enumerate(items):
        results.append(_verify_job(*item))
        _progress.put((job, n, results[-1]))
    return results


def _reward_batch(component: Component, job: int, items: list[tuple[str, Problem]]) -> list[tuple[Judgement, Any]]:
    """A reward function on a batch, each result reported as it lands; if the batch call fails,
    each item is called alone, so only the items that fail by themselves fail. Never raises."""
    results: list[tuple[Judgement, Any]] = []

    def report(result: tuple[Judgement, Any]) -> None:
        results.append(result)
        _progress.put((job, len(results) - 1, result))

    function = _functions[component]
    try:
        if isinstance(function, Exception):
            raise function
        batch = _call_reward(function, component, items)
    except (Exception, SystemExit) as err:  # noqa: BLE001 - the user's code: sys.exit() fails an item too
        if len(items) == 1 or isinstance(function, Exception):
            for _ in items:
                report((_failure(err), None))
            return results
        for item in items:
            try:
                report(_call_reward(function, component, [item])[0])
            except (Exception, SystemExit) as alone:  # noqa: BLE001
                report((_failure(alone), None))
        return results
    for result in batch:
        report(result)
    return results


def _call_reward(function: Callable[..., Any], component: Component, items: list[tuple[str, Problem]]
                 ) -> list[tuple[Judgement, Any]]:
    options = dict(component.options)
    values = list(function([r for r, _ in items], [p for _, p in items], **options))
    if len(values) != len(items):
        raise ValueError(f"returned {len(values)} values for {len(items)} responses")
    extract = getattr(function, "extract", None)
    return [(judged(value), _extracted(extract, item, options)) for value, item in zip(values, items)]


def _extracted(extract: Callable[..., Any] | None, item: tuple[str, Problem], options: dict[str, Any]) -> Any:
    if extract is None:
        return None
    try:
        pred = extract(*item, **options)
    except Exception:  # noqa: BLE001 - the answer as shown is a courtesy; the value stands without it
        return None
    return None if pred is None else str(pred)


def _failure(err: BaseException) -> Failure:
    return Failure(one_line(f"{type(err).__name__}: {err}", 300))


# --- main side -----------------------------------------------------------------------------

_POLL_S = 0.02  # how often a waiting scorer looks at finished batches and deadlines


# (prediction as judged, raw gold, grader, benchmark whose rules apply or None)
_Key = tuple[str, str, str, str | None]


@dataclass
class _Job:
    """A batch on a worker: ``keys[done]`` is running since ``clock`` (the previous result's arrival)."""

    future: Future
    keys: list[Hashable]
    clock: float
    done: int = 0


@dataclass(frozen=True)
class _Task:
    """What the workers run on a batch of keys, and how long an item may take.

    ``streamed``: the worker reports each item as it finishes (math), so each item has
    ``item_s``; otherwise the whole rest of a batch arrives at once and has ``item_s`` per item.
    ``failed``: the result of an item that timed out or crashed its worker.
    """

    fn: Callable[..., Any]
    item_s: float
    streamed: bool
    failed: Any
    payload: Callable[[Hashable], Any] | None = None

    def limit(self, job: _Job) -> float:
        return self.item_s if self.streamed else self.item_s * (len(job.keys) - job.done)


@dataclass
class _Outcome:
    results: dict[Hashable, Any] = field(default_factory=dict)
    timed_out: set[Hashable] = field(default_factory=set)
    crashed: set[Hashable] = field(default_factory=set)  # alone on a worker that died, twice


class RewardScorer:
    """Batched scoring in a process pool with a per-item timeout and a result cache.

    Items go to workers in batches (one IPC round trip per batch, each gold parsed once per
    worker); a worker streams each item's result back as it lands, which starts the next item's
    clock. Items running longer than ``timeout_s`` score 0: the pool is killed and rebuilt and the
    other items in flight are re-run. An item whose worker dies also scores 0 (after one solo
    retry, so a neighbour of the culprit is not blamed). Safe to call from any thread.

    ``rewards``: the components to score (default: ``math`` alone), combined by their weighted
    mean. A component that fails on every response of its first batch, or returns a number
    outside [0, 1], raises :class:`RewardError`; other failures score 0 and are counted
    (``n_errors``, ``n_timeouts``; ``n_unjudged`` for None).
    """

    def __init__(self, timeout_s: float = 5.0, workers: int = 2, strict_format: bool = False,
                 grader: str = "strict", batch_size: int = 64, rewards: Sequence[Component] | None = None,
                 memory_mb: int | None = None) -> None:
        self.timeout_s = timeout_s
        self.workers = max(1, workers)
        self.batch_size = max(1, batch_size)  # items per job sent to a worker
        self.memory_mb = memory_mb
        self._job_ids = itertools.count()
        self._progress: Any = None
        self.strict_format = strict_format
        self.grader = check_grader(grader)  # the default; score() may name another
        self.rewards = list(rewards) if rewards else [MATH]
        self._math_only = [c.target for c in self.rewards] == ["math"]  # today's reward: its own path, unchanged
        self._functions = {c: load_reward(c.target) for c in self.rewards}  # their hooks, on this side
        self._loaded = [c for c in self.rewards if c.target != "math"]  # what each worker loads on start
        self._tried: set[Component] = set()  # components past their first batch
        self.cache: dict[_Key, float] = {}
        self.n_jobs = 0  # verifications sent to the pool (cache misses), for tests and logs
        self.n_timeouts = 0
        self.n_errors = 0  # a reward raised, crashed its worker or returned junk on a response
        self.n_unjudged = 0  # a reward returned None ("could not judge")
        self.seconds = 0.0  # wall-clock spent in score(), for the loop's timing/reward
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        methods = mp.get_all_start_methods()
        # Not fork: forking a process that runs torch's thread pools can deadlock the child.
        self._ctx = mp.get_context("forkserver" if "forkserver" in methods else "spawn")
        if self._ctx.get_start_method() == "forkserver":
            # Workers are forked from a server that has math-verify imported already, so
            # replacing a killed pool costs milliseconds, not an import (no-op if it is running).
            self._ctx.set_forkserver_preload(["__main__", __name__])

    def score(self, responses: Sequence[str], problems: Sequence[str | Problem], *, grader: str | None = None,
              bench: str | None = None) -> list[RewardResult]:
        """One result per response. ``problems``: the problem records the responses answer (see
        :func:`p2o_cli.files.records.problem_fields`), or just their gold answers. ``grader``
        overrides the scorer's; ``bench`` names the benchmark for the qwen grader's
        per-benchmark rules (minerva_math keeps units)."""
        if len(responses) != len(problems):
            raise ValueError(f"{len(responses)} responses but {len(problems)} golds")
        start = time.perf_counter()
        try:
            grader = check_grader(grader or self.grader)
            if self._math_only:
                return self._score(responses, _golds(problems), grader, bench)
            return self._score_components(responses, problems, grader, bench)
        finally:
            self.seconds += time.perf_counter() - start

    def leaks(self, problem: Problem) -> list[str]:
        """What a template must not contain for ``problem``: every component's ``leaks`` (default: the gold)."""
        found = (s for c in self.rewards for s in leak_strings(self._functions[c], problem, dict(c.options)))
        return list(dict.fromkeys(found))

    def counters(self) -> dict[str, int]:
        return {"reward/errors": self.n_errors, "reward/timeouts": self.n_timeouts, "reward/unjudged": self.n_unjudged}

    # ------------------------------------------------------------ math

    def _score(self, responses: Sequence[str], golds: Sequence[str], grader: str, bench: str | None
               ) -> list[RewardResult]:
        # Only the qwen grader reads the benchmark, and only to know whether units are kept.
        rules = bench if grader == "qwen" and bench in KEEP_UNITS else None
        finals = [_final_answer(r, self.strict_format, grader, bench) for r in responses]
        keys = [(pred, str(gold), grader, rules) for (_, pred, _), gold in zip(finals, golds)]
        with self._lock:
            if len(self.cache) > _CACHE_LIMIT:
                self.cache.clear()
            judge = (key for key, (_, _, judgeable) in zip(keys, finals) if judgeable)
            todo = list(dict.fromkeys(key for key in judge if key not in self.cache))
            if todo:
                # Same gold side by side, so a batch re-uses its worker's parsed gold.
                outcome = self._run(sorted(todo, key=lambda key: key[1]),
                                   _Task(_verify_batch, self.timeout_s, streamed=True, failed=0.0))
                self.n_timeouts += len(outcome.timed_out)
                self.n_errors += len(outcome.crashed)
                self.cache.update(outcome.results)
            return [
                RewardResult(self.cache[key] if judgeable else 0.0, shown)
                for key, (shown, _, judgeable) in zip(keys, finals)
            ]

    # ------------------------------------------------------------ every other reward

    def _score_components(self, responses: Sequence[str], problems: Sequence[str | Problem], grader: str,
                          bench: str | None) -> list[RewardResult]:
        views = [p if isinstance(p, Mapping) else {"answer": p} for p in problems]
        values: list[list[float]] = []
        preds: list[Any] = [None] * len(responses)
        shows = next((c for c in self.rewards if hasattr(self._functions[c], "extract")), None)
        for component in self.rewards:
            if component.target == "math":
                results = self._score(responses, _golds(problems), grader, bench)
                scores, shown = [r.reward for r in results], [r.pred for r in results]
            else:
                scores, shown = self._score_function(component, responses, views)
            values.append(scores)
            if component is shows:
                preds = shown
        weights = [c.weight for c in self.rewards]
        several = len(self.rewards) > 1
        return [
            RewardResult(weighted_total(row, weights), pred,
                         {c.name: v for c, v in zip(self.rewards, row)} if several else None)
            for row, pred in zip(zip(*values), preds)
        ]

    def _score_function(self, component: Component, responses: Sequence[str], views: Sequence[Problem]
                        ) -> tuple[list[float], list[Any]]:
        task = _Task(functools.partial(_reward_batch, component), component.time_limit, streamed=False,
                     failed=(Failure(f"timed out after {component.time_limit:g}s per response", timed_out=True), None),
                     payload=lambda i: (responses[i], views[i]))
        keys = list(range(len(responses)))
        first = [] if component in self._tried else keys[:FIRST_BATCH]
        results: dict[Hashable, Any] = {}
        with self._lock:
            if first:
                results.update(self._run_function(component, first, task, views))
                self._check_first_batch(component, [results[k][0] for k in first])
                self._tried.add(component)
            results.update(self._run_function(component, keys[len(first):], task, views))
        scores = [results[k][0] if isinstance(results[k][0], float) else 0.0 for k in keys]
        return scores, [results[k][1] for k in keys]

    def _run_function(self, component: Component, keys: list[int], task: _Task, views: Sequence[Problem]
                      ) -> dict[Hashable, Any]:
        outcome = self._run(keys, task) if keys else _Outcome()
        for key in outcome.crashed:
            outcome.results[key] = (Failure("its worker process died"), None)
        for key in keys:
            value = outcome.results[key][0]
            if isinstance(value, OutOfRange):
                raise RewardError(f"reward {component.spec!r} returned {value.value:g} for problem "
                                  f"{views[key].get('id', key)!r}; rewards lie in [0, 1] (scale or clip it in "
                                  "the function)")
            if isinstance(value, Failure):
                self.n_timeouts += value.timed_out
                self.n_errors += not value.timed_out
            elif value is None:
                self.n_unjudged += 1
        return outcome.results

    @staticmethod
    def _check_first_batch(component: Component, values: list[Judgement]) -> None:
        failures = [v for v in values if isinstance(v, Failure)]
        if values and len(failures) == len(values):
            raise RewardError(f"reward {component.spec!r} failed on every response of its first batch "
                              f"({len(values)}): {failures[-1].message}")

    # ------------------------------------------------------------ the pool

    def _run(self, todo: list[Hashable], task: _Task) -> _Outcome:
        out = _Outcome()
        results = out.results
        queue = deque(todo)
        suspects: set[Hashable] = set()  # were running when a worker died: each runs alone, nothing beside it
        solo: set[Hashable] = set()  # were in a batch that ran out of time: each gets a time limit of its own
        inflight: dict[int, _Job] = {}
        size = max(1, min(self.batch_size, -(-len(todo) // (4 * self.workers))))
        while queue or inflight:
            broken = not self._submit(queue, inflight, suspects, solo, size, task)
            crashed: list[_Job] = []
            expired: list[_Job] = []
            if inflight and not broken:
                self._collect(inflight, results, task)
                for job_id, job in list(inflight.items()):
                    if job.future.done():
                        try:
                            results.update(zip(job.keys, job.future.result()))
                            del inflight[job_id]
                        except BrokenProcessPool:
                            crashed.append(job)
                expired = self._expire(inflight, out, solo, task)
            if crashed or broken:
                self._blame(inflight, out, suspects, task)
            if crashed or broken or expired:
                for job in inflight.values():  # killing the pool takes every running batch along
                    queue.extendleft(reversed(job.keys[job.done :]))
                inflight.clear()
                self._kill_pool()
        return out

    @staticmethod
    def _expire(inflight: dict[int, _Job], out: _Outcome, solo: set, task: _Task) -> list[_Job]:
        """The jobs past their time: a streamed item (or a lone one) scores 0, a batch is split."""
        now = time.monotonic()
        expired = [job for job in inflight.values() if job.done < len(job.keys) and now - job.clock >= task.limit(job)]
        for job in expired:
            rest = job.keys[job.done :]
            if task.streamed or len(rest) == 1:  # the item running past its time scores 0
                out.results[rest[0]] = task.failed
                out.timed_out.add(rest[0])
                job.done += 1
            else:  # a batch past its time: each of its items runs again alone
                solo.update(rest)
        return expired

    @staticmethod
    def _blame(inflight: dict[int, _Job], out: _Outcome, suspects: set, task: _Task) -> None:
        """A worker died, and everything still running died with it: the running items become
        suspects (or, one already a suspect, the culprit); the ones after them simply run again."""
        for job in (job for job in inflight.values() if job.done < len(job.keys)):
            running = job.keys[job.done : job.done + 1] if task.streamed else job.keys[job.done :]
            if len(running) == 1 and running[0] in suspects:
                out.results[running[0]] = task.failed
                out.crashed.add(running[0])
                job.done += 1
            else:
                suspects.update(running)

    def _submit(self, queue: deque, inflight: dict[int, _Job], suspects: set, solo: set, size: int,
                task: _Task) -> bool:
        """Start batches until every worker has one; False if the pool turned out broken."""
        # At most one batch per worker, so an item's clock starts when it really starts running.
        # A suspect runs alone so that a second crash identifies it.
        while queue and len(inflight) < self.workers:
            alone = queue[0] in suspects or any(k in suspects for job in inflight.values() for k in job.keys)
            if alone and inflight:
                break
            if alone or queue[0] in solo:
                n = 1
            else:
                n = next((i for i, k in enumerate(itertools.islice(queue, size)) if k in suspects or k in solo), size)
            keys = [queue.popleft() for _ in range(min(max(n, 1), len(queue)))]
            job_id = next(self._job_ids)
            payloads = keys if task.payload is None else [task.payload(k) for k in keys]
            try:
                future = self._get_pool().submit(task.fn, job_id, payloads)
            except BrokenProcessPool:  # a worker died since the last look
                queue.extendleft(reversed(keys))
                return False
            inflight[job_id] = _Job(future, keys, time.monotonic())
            self.n_jobs += len(keys)
        return True

    def _collect(self, inflight: dict[int, _Job], results: dict, task: _Task) -> None:
        """Take streamed item results until one arrives late enough to matter, or the next deadline."""
        deadline = min(job.clock + task.limit(job) for job in inflight.values())
        wait_s = max(0.0, min(deadline - time.monotonic(), _POLL_S))
        while True:
            try:
                job_id, n, value = self._progress.get(timeout=wait_s)
            except queue_module.Empty:
                return
            job = inflight.get(job_id)
            if job is not None and n >= job.done:
                results[job.keys[n]] = value
                job.done, job.clock = n + 1, time.monotonic()
            wait_s = 0.0  # drain what is there, then look at the futures and clocks

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            barrier = self._ctx.Barrier(self.workers)
            # A fresh queue per pool: a worker killed while writing could leave the old one locked.
            self._progress = self._ctx.Queue()
            self._pool = ProcessPoolExecutor(self.workers, mp_context=self._ctx, initializer=_init_worker,
                                             initargs=(barrier, self._progress, os.getpid(), self.memory_mb,
                                                       self._loaded))
            try:
                warmups = [self._pool.submit(_await_siblings) for _ in range(self.workers)]
                wait(warmups, timeout=120)
                failed = [f.exception(0) for f in warmups if f.done()]
                started = not any(isinstance(e, BrokenProcessPool) for e in failed)
            except BrokenProcessPool:
                started = False
            if not started:
                self._kill_pool()
                raise RuntimeError(
                    "reward worker processes died on start-up; is the scorer created outside an "
                    "`if __name__ == '__main__':` guard in the main script?"
                )
        return self._pool

    def _kill_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        # ProcessPoolExecutor cannot cancel a running call (Python < 3.14 has no
        # terminate_workers()), so kill its processes directly.
        procs = list((pool._processes or {}).values())
        for p in procs:
            p.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            p.join(timeout=5)

    def close(self) -> None:
        with self._lock:
            self._kill_pool()  # idle workers lose nothing, and a stuck one cannot block exit

    def __enter__(self) -> RewardScorer:  # noqa: PYI034 - typing.Self needs Python 3.11
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _golds(problems: Sequence[str | Problem]) -> list[str]:
    return [p["answer"] if isinstance(p, Mapping) else p for p in problems]


def score_many(responses: Sequence[str], golds: Sequence[str], **kw) -> list[RewardResult]:
    """One-off batch scoring with a temporary RewardScorer (kw: timeout_s, workers, strict_format, grader)."""
    with RewardScorer(**kw) as scorer:
        return scorer.score(responses, golds)


def open_scorer(cfg: RewardConfig, workers: int | None = None) -> RewardScorer:
    """The process-pool scorer a command uses, with its reward options (``workers``: the
    pool's size, None for the scorer's default)."""
    extra = {} if workers is None else {"workers": workers}
    return RewardScorer(timeout_s=cfg.reward_timeout, strict_format=cfg.strict_format, rewards=cfg.components(),
                        memory_mb=cfg.reward_memory or None, **extra)
