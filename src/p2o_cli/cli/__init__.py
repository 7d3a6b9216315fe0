"""The ``p2o`` command line: one thin module per command, options generated from the configs.

Importing this package registers every command on :data:`app`; none of it imports torch or
transformers until a command runs.
"""

from __future__ import annotations

from . import assign, data, eval, gepa, mine_hard, report, rollout, run, toy, train_step  # noqa: F401 - registration
from .app import app

__all__ = ["app"]
