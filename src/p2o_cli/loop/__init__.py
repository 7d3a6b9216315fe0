"""``p2o run``: the alternating P²O loop, its configuration and its run directory."""

from __future__ import annotations

from .config import RunConfig
from .rundir import RunDir, RunState

__all__ = ["RunConfig", "RunDir", "RunState"]
