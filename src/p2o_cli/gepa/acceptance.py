"""Rules that decide what GEPA keeps and when it stops asking: each a small named function."""

from __future__ import annotations

import re
from collections.abc import Iterable

from .reflect import Reflector, ReflectorError

_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


def _normalize(text: str) -> str:
    return _THOUSANDS.sub("", text)


def leaked_answer(text: str, golds: Iterable[str]) -> str | None:
    """The first of ``golds`` (what would leak: the rewards' ``leaks`` hooks) that appears in
    ``text`` as a whole token, else None.

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


def failed_proposals(reflector: Reflector) -> int:
    """Proposals the reflector has given up on for want of a reply (0 for those that cannot fail so)."""
    return int(getattr(reflector, "failed_proposals", 0))


def failure_streak(streak: int, failed: int, asked: int, limit: int, reflector: Reflector) -> int:
    """Failed proposals in a row: any reply in this batch resets it; ReflectorError at ``limit``."""
    streak = streak + failed if failed == asked else 0
    if streak >= limit:
        where = getattr(reflector, "base_url", "the reflector")
        raise ReflectorError(
            f"{where} gave no usable reply to {streak} proposals in a row (last: "
            f"{getattr(reflector, 'last_failure', 'unknown')}); giving up"
        )
    return streak
