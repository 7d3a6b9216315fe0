"""The toy world's offline reflector: proposes lexicon-phrase templates from feedback alone.

It knows the public lexicon but not which phrases are triggers, and sees only what any
reflector sees: each request's parent template and its feedback (problem, response, extracted
answer, correct?, gold). Its one piece of "insight" is reading the responses:

- no response shows intermediate steps (no ``=`` line): the parent's phrases do nothing, so
  it *explores*: a fresh template of phrases the parent (and every other step-less parent in
  the same batch) did not use, or the parent with one phrase replaced;
- some responses show steps: the parent holds something that works, so it *exploits*: keeps
  the parent and adds a phrase, or replaces / drops one of its phrases;
- *recombination*: with parents of the same batch whose responses showed steps, it sometimes
  joins one of their phrases with one of the parent's.

Children are 1-3 lexicon phrases joined by a space (they contain no digits, so never a gold
answer). Proposals are deterministic: each request's random stream is seeded from the
reflector's seed, the request's ``seed`` and its parent text, so a resumed search asks and
gets exactly what the uninterrupted one did.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from typing import Any, Protocol

from .lexicon import LEXICON, MAX_PHRASES, join_phrases, split_phrases
from .tasks import has_steps


class Feedback(Protocol):
    """What the toy reflector reads of one feedback item (``gepa.reflect.FeedbackRecord``)."""

    problem: str
    response: str
    pred: str | None
    correct: bool


class Request(Protocol):
    """What it reads of one request (``gepa.reflect.ReflectionRequest``; ``seed`` if present)."""

    parent_text: str
    feedback: Sequence[Feedback]


def _gold(record: Any) -> str | None:
    value = getattr(record, "gold", None)
    return value if value is not None else getattr(record, "answer", None)


class ToyReflector:
    """``propose(requests)`` -> one child template per request (see the module docstring)."""

    def __init__(
        self,
        seed: int = 0,
        lexicon: Sequence[str] = LEXICON,
        p_fresh: float = 0.6,
        p_recombine: float = 0.3,
    ):
        self.seed = seed
        self.lexicon = list(dict.fromkeys(lexicon))
        self.p_fresh = p_fresh
        self.p_recombine = p_recombine
        self.stats = {"explore": 0, "exploit": 0, "recombine": 0, "none": 0}

    def __repr__(self) -> str:
        return f"ToyReflector(seed={self.seed})"

    # ------------------------------------------------------------ helpers

    def _rng(self, request: Request, slot: int) -> random.Random:
        key = f"{self.seed}|{getattr(request, 'seed', 0)}|{slot}|{request.parent_text}"
        return random.Random(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big"))

    @staticmethod
    def shows_steps(request: Request) -> bool:
        return any(has_steps(f.response) for f in request.feedback)

    def _pick(self, rng: random.Random, avoid: set[str], k: int) -> list[str]:
        pool = [p for p in self.lexicon if p not in avoid] or list(self.lexicon)
        return rng.sample(pool, min(k, len(pool)))

    # ------------------------------------------------------------ operators

    def explore(self, rng: random.Random, parent: list[str], tabu: set[str]) -> list[str]:
        """The parent's phrases do nothing: try phrases not yet seen failing."""
        if not parent or rng.random() < self.p_fresh:
            return self._pick(rng, tabu | set(parent), rng.choice((1, 2, 2, 3, 3)))
        child = list(parent)
        i = rng.randrange(len(child))
        if len(child) > 1 and rng.random() < 0.25:
            del child[i]
            child += self._pick(rng, tabu | set(parent), 1)
        else:
            child[i] = self._pick(rng, tabu | set(parent), 1)[0]
        return child

    def exploit(self, rng: random.Random, parent: list[str]) -> list[str]:
        """The parent unlocks something: keep it, vary the other phrase(s)."""
        child = list(parent)
        if not child:
            return self._pick(rng, set(), 1)
        if len(child) < MAX_PHRASES and rng.random() < 0.6:
            child.insert(rng.randrange(len(child) + 1), self._pick(rng, set(child), 1)[0])
        elif len(child) > 1 and rng.random() < 0.5:
            del child[rng.randrange(len(child))]
        else:
            child[rng.randrange(len(child))] = self._pick(rng, set(child), 1)[0]
        return child

    def recombine(self, rng: random.Random, parent: list[str], donors: list[list[str]]) -> list[str]:
        donor = rng.choice(donors)
        take = rng.sample(donor, rng.randint(1, min(2, len(donor))))
        keep = [p for p in parent if p not in take]
        child = take + (rng.sample(keep, min(len(keep), MAX_PHRASES - len(take))) if keep else [])
        rng.shuffle(child)
        return child[:MAX_PHRASES]

    # ------------------------------------------------------------ protocol

    def propose(self, requests: Sequence[Request]) -> list[str | None]:
        parents = [split_phrases(r.parent_text) for r in requests]
        stepped = [self.shows_steps(r) for r in requests]
        # Phrases of parents whose responses showed no steps: evidence they are not what works.
        tabu = {p for phrases, s, r in zip(parents, stepped, requests) if not s and r.feedback for p in phrases}
        donors = [phrases for phrases, s in zip(parents, stepped) if s and phrases]
        out: list[str | None] = []
        for slot, (request, parent, steps) in enumerate(zip(requests, parents, stepped)):
            rng = self._rng(request, slot)
            golds = {g for g in (_gold(f) for f in request.feedback) if g}
            child: list[str] = []
            for _attempt in range(8):
                others = [d for d in donors if d != parent]
                if others and rng.random() < self.p_recombine:
                    op, child = "recombine", self.recombine(rng, parent, others)
                elif steps:
                    op, child = "exploit", self.exploit(rng, parent)
                else:
                    op, child = "explore", self.explore(rng, parent, tabu)
                child = list(dict.fromkeys(child))[:MAX_PHRASES]
                text = join_phrases(child)
                if child and text != request.parent_text and not any(g in text.split() for g in golds):
                    self.stats[op] += 1
                    out.append(text)
                    break
            else:
                self.stats["none"] += 1
                out.append(None)
        return out


def toy_reflector(name: str, cfg: Any, context: Any) -> ToyReflector:
    """The ``toy`` reflector's factory, offered to GEPA through the ``p2o.reflectors`` entry point
    (pyproject.toml), exactly as a third-party package would offer its own."""
    return ToyReflector(seed=context.seed)
