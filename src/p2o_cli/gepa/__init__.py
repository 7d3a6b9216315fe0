"""GEPA for P²O: Pareto front, the reflective search loop, reflectors and template assignment."""

from __future__ import annotations

from .acceptance import leaked_answer
from .assign import AssignResult, assign_templates, greedy_set_cover
from .config import GepaConfig
from .pareto import dominates, front_templates, pareto_front, select_parents
from .reflect import FeedbackRecord, ReflectionRequest, Reflector, ReflectorError
from .reflectors import make_reflector, register_reflector
from .search import GepaProgress, GepaResult, run_gepa

__all__ = [
    "AssignResult",
    "FeedbackRecord",
    "GepaConfig",
    "GepaProgress",
    "GepaResult",
    "ReflectionRequest",
    "Reflector",
    "ReflectorError",
    "assign_templates",
    "dominates",
    "front_templates",
    "greedy_set_cover",
    "leaked_answer",
    "make_reflector",
    "pareto_front",
    "register_reflector",
    "run_gepa",
    "select_parents",
]
