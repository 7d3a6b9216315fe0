"""GEPA for P²O: Pareto front, the reflective search loop, reflectors and template assignment.

Names load on first use, so importing one room (``gepa.config`` for the command line's options)
does not import the search loop and its reflectors.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "leaked_answer": "acceptance",
    "AssignResult": "assign", "assign_templates": "assign", "greedy_set_cover": "assign",
    "GepaConfig": "config",
    "dominates": "pareto", "front_templates": "pareto", "pareto_front": "pareto", "select_parents": "pareto",
    "FeedbackRecord": "reflect", "ReflectionRequest": "reflect", "Reflector": "reflect", "ReflectorError": "reflect",
    "make_reflector": "reflectors", "register_reflector": "reflectors",
    "GepaProgress": "search", "GepaResult": "search", "run_gepa": "search",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
