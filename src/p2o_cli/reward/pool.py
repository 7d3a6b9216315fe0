"""Scoring in a process pool: batched, with a per-item timeout, crash isolation and a cache.

math-verify hands answers to sympy, which can spend hours on ``9^{9^{9^{9^9}}}``; here no
response can hang or crash training.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing as mp
import queue as queue_module
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .qwen import KEEP_UNITS
from .verify import _CACHE_LIMIT, RewardResult, _final_answer, _judge, answers_match, check_grader

if TYPE_CHECKING:
    from .verify import RewardConfig


# --- worker side ---------------------------------------------------------------------------

_barrier = None
_progress = None


def _init_worker(barrier, progress) -> None:
    global _barrier, _progress
    _barrier, _progress = barrier, progress
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


# --- main side -----------------------------------------------------------------------------

_POLL_S = 0.02  # how often a waiting scorer looks at finished batches and deadlines


# (prediction as judged, raw gold, grader, benchmark whose rules apply or None)
_Key = tuple[str, str, str, str | None]


@dataclass
class _Job:
    """A batch on a worker: ``keys[done]`` is running since ``clock`` (the previous result's arrival)."""

    future: Future
    keys: list[_Key]
    clock: float
    done: int = 0





class RewardScorer:
    """Batched scoring in a process pool with a per-item timeout and a result cache.

    Items go to workers in batches (one IPC round trip per batch, each gold parsed once per
    worker); a worker streams each item's result back as it lands, which starts the next item's
    clock. Items running longer than ``timeout_s`` score 0: the pool is killed and rebuilt and the
    other items in flight are re-run. An item whose worker dies also scores 0 (after one solo
    retry, so a neighbour of the culprit is not blamed). Safe to call from any thread.
    """

    def __init__(self, timeout_s: float = 5.0, workers: int = 2, strict_format: bool = False,
                 grader: str = "strict", batch_size: int = 64) -> None:
        self.timeout_s = timeout_s
        self.workers = max(1, workers)
        self.batch_size = max(1, batch_size)  # items per job sent to a worker
        self._job_ids = itertools.count()
        self._progress: Any = None
        self.strict_format = strict_format
        self.grader = check_grader(grader)  # the default; score() may name another
        self.cache: dict[_Key, float] = {}
        self.n_jobs = 0  # verifications sent to the pool (cache misses), for tests and logs
        self.n_timeouts = 0
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

    def score(
        self, responses: Sequence[str], golds: Sequence[str], *, grader: str | None = None, bench: str | None = None
    ) -> list[RewardResult]:
        """One result per response. ``grader`` overrides the scorer's; ``bench`` names the
        benchmark for the qwen grader's per-benchmark rules (minerva_math keeps units)."""
        if len(responses) != len(golds):
            raise ValueError(f"{len(responses)} responses but {len(golds)} golds")
        start = time.perf_counter()
        try:
            return self._score(responses, golds, check_grader(grader or self.grader), bench)
        finally:
            self.seconds += time.perf_counter() - start

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
                self.cache.update(self._run(todo))
            return [
                RewardResult(self.cache[key] if judgeable else 0.0, shown)
                for key, (shown, _, judgeable) in zip(keys, finals)
            ]

    def _run(self, todo: list[_Key]) -> dict[_Key, float]:
        results: dict[_Key, float] = {}
        # Same gold side by side, so a batch re-uses its worker's parsed gold.
        queue = deque(sorted(todo, key=lambda key: key[1]))
        suspects: set[_Key] = set()  # were running when a worker died
        inflight: dict[int, _Job] = {}
        size = max(1, min(self.batch_size, -(-len(todo) // (4 * self.workers))))
        while queue or inflight:
            broken = not self._submit(queue, inflight, suspects, size)
            crashed: list[_Job] = []
            expired: list[_Job] = []
            if inflight and not broken:
                self._collect(inflight, results)
                for job_id, job in list(inflight.items()):
                    if job.future.done():
                        try:
                            results.update(zip(job.keys, job.future.result()))
                            del inflight[job_id]
                        except BrokenProcessPool:
                            crashed.append(job)
                now = time.monotonic()
                expired = [job for job in inflight.values()
                           if job.done < len(job.keys) and now - job.clock >= self.timeout_s]
                for job in expired:  # the item running past its time scores 0; the rest run again
                    results[job.keys[job.done]] = 0.0
                    self.n_timeouts += 1
                    job.done += 1
            if crashed or broken:
                # Everything still running died with the worker too: the running item becomes a
                # suspect (or, already one, the culprit), the ones after it simply run again.
                for job in (job for job in inflight.values() if job.done < len(job.keys)):
                    key = job.keys[job.done]
                    if key in suspects:
                        results[key] = 0.0
                        job.done += 1
                    else:
                        suspects.add(key)
            if crashed or broken or expired:
                for job in inflight.values():  # killing the pool takes every running batch along
                    queue.extendleft(reversed(job.keys[job.done :]))
                inflight.clear()
                self._kill_pool()
        return results

    def _submit(self, queue: deque, inflight: dict[int, _Job], suspects: set, size: int) -> bool:
        """Start batches until every worker has one; False if the pool turned out broken."""
        # At most one batch per worker, so an item's clock starts when it really starts running.
        # A suspect runs alone so that a second crash identifies it.
        while queue and len(inflight) < self.workers:
            solo = queue[0] in suspects or any(k in suspects for job in inflight.values() for k in job.keys)
            if solo and inflight:
                break
            n = 1 if solo else next((i for i, k in enumerate(itertools.islice(queue, size)) if k in suspects), size)
            keys = [queue.popleft() for _ in range(min(max(n, 1), len(queue)))]
            job_id = next(self._job_ids)
            try:
                future = self._get_pool().submit(_verify_batch, job_id, list(keys))
            except BrokenProcessPool:  # a worker died since the last look
                queue.extendleft(reversed(keys))
                return False
            inflight[job_id] = _Job(future, keys, time.monotonic())
            self.n_jobs += len(keys)
        return True

    def _collect(self, inflight: dict[int, _Job], results: dict) -> None:
        """Take streamed item results until one arrives late enough to matter, or the next deadline."""
        deadline = min(job.clock for job in inflight.values()) + self.timeout_s
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
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=self._ctx, initializer=_init_worker, initargs=(barrier, self._progress)
            )
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


def score_many(responses: Sequence[str], golds: Sequence[str], **kw) -> list[RewardResult]:
    """One-off batch scoring with a temporary RewardScorer (kw: timeout_s, workers, strict_format, grader)."""
    with RewardScorer(**kw) as scorer:
        return scorer.score(responses, golds)


def open_scorer(cfg: RewardConfig, workers: int | None = None) -> RewardScorer:
    """The process-pool scorer a command uses, with its reward options (``workers``: the
    pool's size, None for the scorer's default)."""
    extra = {} if workers is None else {"workers": workers}
    return RewardScorer(timeout_s=cfg.reward_timeout, strict_format=cfg.strict_format, **extra)
