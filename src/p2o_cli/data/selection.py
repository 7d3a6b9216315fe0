"""Choosing training rows: ``--filter FIELD OP VALUE`` and ``--sample N --sample-seed S``.

Filters test the source row as stored (``difficulty``, ``extra_info.split``), before p2o maps
it to a problem, so any column can select; samples are seeded and keep the file's order, so the
same seed on the same source gives the same subset on every machine.
"""

from __future__ import annotations

import dataclasses
import operator
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import P2OError
from ..files.records import Problem

MISSING = object()


def get_field(row: dict[str, Any], path: str) -> Any:
    """``row[path]``, or the dotted path walked through nested objects; ``MISSING`` if absent."""
    if path in row:  # flattened columns keep the dot in their name
        return row[path]
    value: Any = row
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value


_COMPARISONS = {"==": operator.eq, "!=": operator.ne, "<=": operator.le, ">=": operator.ge,
                "<": operator.lt, ">": operator.gt}
_FILTER = re.compile(r"\s*([A-Za-z_][\w.-]*)\s*(==|!=|<=|>=|<|>)\s*(\S.*?)\s*")


@dataclass(frozen=True)
class RowFilter:
    """``FIELD OP VALUE``: keep rows whose field compares true (numbers as numbers, else text)."""

    field: str
    op: str
    value: float | str

    def __str__(self) -> str:
        value = f"{self.value:g}" if isinstance(self.value, float) else repr(self.value)
        return f"{self.field}{self.op}{value}"

    def matches(self, row: dict[str, Any]) -> bool:
        """Whether ``row`` passes; a null field never does. ValueError if the field is absent
        or is not a number when the filter compares numbers."""
        value = get_field(row, self.field)
        if value is MISSING:
            raise P2OError(f"--filter {self}: no field {self.field!r}")
        if value is None:
            return False
        if isinstance(self.value, str):
            return _COMPARISONS[self.op](str(value), self.value)
        number = _as_number(value)
        if number is None:
            raise P2OError(f"--filter {self}: field {self.field!r} is {value!r}, not a number")
        return _COMPARISONS[self.op](number, self.value)


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value) if isinstance(value, str) else None
    except ValueError:
        return None


def parse_filter(expr: str) -> RowFilter:
    """``difficulty>=7``, ``source == 'amc'``, ``level!=5``: a field (dotted path), a comparison, a
    value. Unquoted values that read as numbers compare as numbers; quotes force text."""
    match = _FILTER.fullmatch(expr)
    if match is None:
        ops = ", ".join(_COMPARISONS)
        raise P2OError(f"--filter {expr!r}: expected FIELD OP VALUE with OP one of {ops}, e.g. difficulty>=7")
    field_name, op, text = match.groups()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return RowFilter(field_name, op, text[1:-1])
    number = _as_number(text)
    if number is None and text[0] in "<>=!":
        raise P2OError(f"--filter {expr!r}: {op!r} followed by {text[0]!r} is not a comparison")
    return RowFilter(field_name, op, text if number is None else number)


def sample_indices(n_items: int, sample: int | None, seed: int) -> list[int]:
    """A seeded random choice of ``sample`` of ``n_items`` positions, in their original order
    (all of them when ``sample`` is None or not smaller)."""
    if sample is None or sample >= n_items:
        return list(range(n_items))
    if sample < 1:
        raise P2OError(f"--sample must be at least 1, got {sample}")
    return sorted(random.Random(seed).sample(range(n_items), sample))


def select_problems(
    problems: Sequence[Problem], row_filter: RowFilter | None = None, sample: int | None = None, seed: int = 0
) -> list[Problem]:
    """The ``--filter`` / ``--sample`` choice among problem records (fields as in the record: ``meta.difficulty``)."""
    kept = [p for p in problems if row_filter is None or row_filter.matches(dataclasses.asdict(p))]
    return [kept[i] for i in sample_indices(len(kept), sample, seed)]
