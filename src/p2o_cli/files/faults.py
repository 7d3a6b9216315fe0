"""Fault injection for the reliability tests: ``P2O_FAULT=point:N[:SIGNAL]``.

The N-th time the process passes the named point (1-based), it sends itself SIGNAL (KILL by
default; TERM, INT, and STOP to hold it there while a test looks at it, too), so a test can
kill ``p2o run`` exactly mid-rollout, mid-update, mid-GEPA, inside a checkpoint's directory swap
or mid-eval. Several faults may be given,
comma-separated. Without ``P2O_FAULT`` a point costs one dictionary lookup.

Points: ``rollout`` (after generation, before scoring), ``update`` (after the backward pass,
before the optimizer step), ``gepa`` (after an iteration's parent evaluation), ``swap``
(between a directory swap's two renames), ``save`` (a checkpoint's files written, not yet
renamed into place), ``eval`` (after an eval's generation).
"""

from __future__ import annotations

import os
import signal

from ..errors import P2OError

_hits: dict[str, int] = {}


def _parse(spec: str) -> dict[str, tuple[int, int]]:
    faults: dict[str, tuple[int, int]] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        parts = item.split(":")
        if len(parts) not in (2, 3) or not parts[1].isdigit():
            raise P2OError(f"P2O_FAULT: expected point:N[:SIGNAL], got {item!r}")
        signum = getattr(signal, f"SIG{parts[2].upper()}") if len(parts) == 3 else signal.SIGKILL
        faults[parts[0]] = (int(parts[1]), int(signum))
    return faults


def fault(point: str) -> None:
    """Kill this process here if ``P2O_FAULT`` names this point and this is the N-th pass."""
    spec = os.environ.get("P2O_FAULT")
    if not spec:
        return
    wanted = _parse(spec).get(point)
    if wanted is None:
        return
    _hits[point] = _hits.get(point, 0) + 1
    if _hits[point] == wanted[0]:
        os.kill(os.getpid(), wanted[1])
