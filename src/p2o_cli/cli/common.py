"""Small helpers the command modules share."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def quiet_libraries() -> None:
    """Keep transformers' download/loading bars out of pipelines."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def trainer_state(model: str | None) -> dict[str, Any]:
    """A checkpoint's ``trainer_state.json`` (counters, LR schedule), type-checked; empty for a base
    model or a hub id."""
    if not model or not Path(model).is_dir():
        return {}
    from ..files.weights import read_trainer_state

    return read_trainer_state(model) or {}


def policy_version_of(model: str) -> int:
    """The training step a checkpoint was saved at (0 for a base model)."""
    return int(trainer_state(model).get("global_step", 0))


def stored_schedule(model: str | None) -> dict[str, Any]:
    """The LR schedule a checkpoint stores, as option values: what continuing it takes unless given."""
    schedule = trainer_state(model).get("schedule") or {}
    return {k: v for k, v in schedule.items() if v is not None}


def samples_path(results_path: str) -> str:
    """Where ``p2o eval`` writes per-sample records beside ``results.json``."""
    path = Path(results_path)
    return str(path.with_name(path.stem + ".samples.jsonl"))


def reward_note(counters: dict[str, int]) -> str:
    """``"; reward errors 2, timeouts 1"`` for a summary line, or "" when every response was judged."""
    shown = [f"{key.split('/')[-1]} {value}" for key, value in counters.items() if value]
    return f"; reward {', '.join(shown)}" if shown else ""
