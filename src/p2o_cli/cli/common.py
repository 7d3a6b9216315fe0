"""Small helpers the command modules share."""

from __future__ import annotations

import os
from pathlib import Path


def quiet_libraries() -> None:
    """Keep transformers' download/loading bars out of pipelines."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def policy_version_of(model: str) -> int:
    """The training step a checkpoint was saved at (0 for a base model)."""
    state = Path(model) / "trainer_state.json"
    if state.is_file():
        import orjson

        return int(orjson.loads(state.read_bytes()).get("global_step", 0))
    return 0


def samples_path(results_path: str) -> str:
    """Where ``p2o eval`` writes per-sample records beside ``results.json``."""
    path = Path(results_path)
    return str(path.with_name(path.stem + ".samples.jsonl"))
