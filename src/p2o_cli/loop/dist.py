"""`p2o run` on N ranks (``accelerate launch`` / ``torchrun``): who does what, and the collectives.

Every rank runs the same loop on the same state. Engine calls and reward scoring are the
only work split between ranks; everything else is computed identically everywhere, so the
ranks never need to agree on anything but the results gathered here:

- :class:`ShardedEngine` cuts each ``generate`` call into fixed chunks of prompts (their size
  depends on the call only, never on the number of ranks), seeds each chunk from the call's
  seed and its index, deals whole chunks round-robin to the ranks and gathers the completions
  back in prompt order. A prompt's completions are therefore the same on 1 rank or 8.
- :class:`ShardedScorer` scores a contiguous share of the responses per rank and gathers.
- :class:`MainReflector` asks the reflector on rank 0 only and broadcasts its answers.
- :meth:`Dist.on_main` runs file reads (state, hard sets, templates) on rank 0 and broadcasts
  what it read, or the error it raised, so no rank races rank 0's writes.

Only rank 0 writes files, logs metrics and prints.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ..config import MAX_NEW_TOKENS, TEMPERATURE
from ..errors import P2OError

T = TypeVar("T")

# The reward pool needs few processes: one answer check takes 1-2 ms.
MAX_SCORER_WORKERS = 8


def has_gpu() -> bool:
    import torch

    xpu = getattr(torch, "xpu", None)
    return torch.cuda.is_available() or bool(xpu is not None and xpu.is_available())


def available_cores() -> int:
    """Cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def launched_world_size() -> int:
    """How many ranks ``accelerate launch`` / ``torchrun`` started this process among (1 if neither)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


@dataclass
class _Failure:
    """An exception raised on one rank, in a form every rank can unpickle and raise."""

    rank: int
    usage: bool  # a P2OError (bad input): every rank reports it as such
    message: str


class Dist:
    """This process's place in the run: rank, world size, and the object collectives."""

    def __init__(self, rank: int = 0, world_size: int = 1, local_world_size: int = 1):
        self.rank, self.world_size, self.local_world_size = rank, world_size, local_world_size

    @classmethod
    def from_env(cls) -> Dist:
        """One process unless launched by accelerate/torchrun; then join (or form) their group.

        ``cpu=True`` without GPUs is what makes accelerate join ``--multi_gpu`` CPU processes
        over gloo; the trainer's ``Accelerator`` later shares this same state.
        """
        if launched_world_size() <= 1:
            return cls()
        from accelerate import PartialState

        state = PartialState(cpu=not has_gpu())
        local = int(os.environ.get("LOCAL_WORLD_SIZE", state.num_processes))
        dist = cls(state.process_index, state.num_processes, max(local, 1))
        if state.device.type == "cpu":
            import torch

            # N ranks on one machine share its cores: each takes its share for intra-op threads.
            torch.set_num_threads(dist.cores_per_rank())
        return dist

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def cores_per_rank(self) -> int:
        return max(1, available_cores() // self.local_world_size)

    def scorer_workers(self) -> int:
        """Reward processes for this rank: its share of the cores, so N scorers do not oversubscribe."""
        return max(1, min(self.cores_per_rank(), MAX_SCORER_WORKERS))

    # ------------------------------------------------------------ collectives

    def gather(self, local: T) -> list[T]:
        """Every rank's ``local``, in rank order, on every rank."""
        if self.world_size == 1:
            return [local]
        import torch.distributed as tdist

        out: list[Any] = [None] * self.world_size
        tdist.all_gather_object(out, local)
        return out

    def broadcast(self, value: T) -> T:
        """Rank 0's ``value`` on every rank."""
        if self.world_size == 1:
            return value
        import torch.distributed as tdist

        box = [value if self.is_main else None]
        tdist.broadcast_object_list(box, src=0)
        return box[0]  # type: ignore[return-value]

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as tdist

            tdist.barrier()

    def on_main(self, fn: Callable[[], T]) -> T:
        """``fn()`` on rank 0, its result (or its error) on every rank."""
        if self.world_size == 1:
            return fn()
        try:
            value: Any = fn() if self.is_main else None
        except Exception as err:
            self.broadcast(_failure(self.rank, err))
            raise
        value = self.broadcast(value)
        if isinstance(value, _Failure):
            _raise(value)
        return value

    def all_run(self, fn: Callable[[], T]) -> list[T]:
        """``fn()`` on every rank, gathered; if any rank failed, every rank raises its error.

        Without this a rank that fails mid-phase would leave the others waiting forever in the
        next collective.
        """
        try:
            local: Any = fn()
        except Exception as err:
            if self.world_size > 1:
                self.gather(_failure(self.rank, err))  # the other ranks raise it too
            raise
        results = self.gather(local)
        failures = [r for r in results if isinstance(r, _Failure)]
        if failures:
            _raise(failures[0])
        return results

    def close(self) -> None:
        if self.world_size > 1:
            import torch.distributed as tdist

            if tdist.is_initialized():
                tdist.barrier()
                tdist.destroy_process_group()


def _failure(rank: int, err: Exception) -> _Failure:
    return _Failure(rank, isinstance(err, P2OError), str(err) or type(err).__name__)


def _raise(failure: _Failure) -> None:
    if failure.usage:
        raise P2OError(failure.message)
    raise RuntimeError(f"rank {failure.rank} failed: {failure.message}")


# ---------------------------------------------------------------- sharded work


# torch seeds are 64-bit; a run seed times GEPA's and the chunk's factors can pass that.
SEED_MODULUS = 2**63 - 1


def chunk_seed(seed: int, chunk: int) -> int:
    """The seed of chunk ``chunk`` of a call seeded ``seed``: a function of the two alone."""
    return (seed * 100_019 + chunk) % SEED_MODULUS


def plan_chunks(n_prompts: int, n: int, chunk_sequences: int) -> list[range]:
    """Consecutive prompt ranges of ``chunk_sequences // n`` prompts (at least one) each."""
    per = max(1, chunk_sequences // max(n, 1))
    return [range(start, min(start + per, n_prompts)) for start in range(0, n_prompts, per)]


class ShardedEngine:
    """An engine whose ``generate`` is split over the ranks in world-size-independent chunks.

    Chunked the same way on one rank too, so a 1-process run samples exactly what an N-process
    run samples. Everything else (weights, sleep, close) goes to the wrapped engine.
    """

    def __init__(self, engine: Any, dist: Dist, chunk_sequences: int):
        self.engine, self.dist, self.chunk_sequences = engine, dist, chunk_sequences

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    def generate(self, prompts: Sequence[str], n: int = 1, temperature: float = TEMPERATURE, top_p: float = 1.0,
                 max_new_tokens: int = MAX_NEW_TOKENS, seed: int | None = 0, progress: Any = None) -> list[list[Any]]:
        chunks = plan_chunks(len(prompts), n, self.chunk_sequences)
        rank, world = self.dist.rank, self.dist.world_size

        def mine() -> list[tuple[int, list[list[Any]]]]:
            return [
                (c, self.engine.generate([prompts[i] for i in chunk], n=n, temperature=temperature, top_p=top_p,
                                         max_new_tokens=max_new_tokens,
                                         seed=None if seed is None else chunk_seed(seed, c),
                                         progress=progress if self.dist.is_main else None))
                for c, chunk in enumerate(chunks) if c % world == rank
            ]

        results: list[Any] = [None] * len(prompts)
        for share in self.dist.all_run(mine):
            for c, outputs in share:
                for i, row in zip(chunks[c], outputs):
                    results[i] = row
        return results


class ShardedScorer:
    """A reward scorer whose ``score`` calls are split into one contiguous share per rank.

    Its ``counters()`` (reward errors, timeouts, unjudged) add up every rank's.
    """

    def __init__(self, scorer: Any, dist: Dist):
        self.scorer, self.dist = scorer, dist
        self._counts: dict[str, int] = dict.fromkeys(scorer.counters(), 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.scorer, name)

    def score(self, responses: Sequence[str], problems: Sequence[Any], **options: Any) -> list[Any]:
        world, rank = self.dist.world_size, self.dist.rank
        bounds = [len(responses) * r // world for r in range(world + 1)]
        lo, hi = bounds[rank], bounds[rank + 1]

        def share() -> tuple[list[Any], dict[str, int]]:
            before = self.scorer.counters()
            results = list(self.scorer.score(responses[lo:hi], problems[lo:hi], **options))
            return results, {k: v - before[k] for k, v in self.scorer.counters().items()}

        shares = self.dist.all_run(share)
        for _, counts in shares:
            for key, value in counts.items():
                self._counts[key] += value
        return [result for results, _ in shares for result in results]

    def counters(self) -> dict[str, int]:
        return dict(self._counts)


class MainReflector:
    """The reflector asked on rank 0 only; its answers (and give-up count) broadcast to all ranks.

    The reflector itself is built lazily by ``make`` on rank 0: an API client or a second
    model is never opened on the other ranks.
    """

    def __init__(self, make: Callable[[], Any], dist: Dist):
        self.make, self.dist = make, dist
        self.failed_proposals = 0
        self.last_failure = "none"

    def propose(self, requests: Sequence[Any]) -> list[str | None]:
        def ask() -> tuple[list[str | None], int, str, str | None]:
            reflector = self.make()
            answers = reflector.propose(requests)
            return (list(answers), int(getattr(reflector, "failed_proposals", 0)),
                    str(getattr(reflector, "last_failure", "none")), getattr(reflector, "base_url", None))

        answers, self.failed_proposals, self.last_failure, base_url = self.dist.on_main(ask)
        if base_url is not None:
            self.base_url = base_url  # named in the give-up error
        return answers
