"""``p2o run``: the whole P²O loop in one process, resumable."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..loop.config import RunConfig
from .app import app
from .options import command


def saved_run_config(flags: Mapping[str, Any]) -> dict[str, Any]:
    """With ``--resume RUN_DIR``: the run's saved options, under any --config file and flags."""
    resume = flags.get("resume")
    if not resume:
        return {}
    from ..config import flatten
    from ..errors import UsageError
    from ..records import read_json_object

    saved = Path(resume) / "config.json"
    if not saved.is_file():
        raise UsageError(f"{resume}: not a run directory (no config.json)")
    values = flatten(read_json_object(saved), RunConfig, str(saved))
    values.pop("resume", None)
    return {**values, "out": resume}


@command(app, "run", RunConfig, base=saved_run_config)
def run(cfg: RunConfig) -> None:
    """The whole P²O loop: rollouts, train steps, hard mining, GEPA + assignment, evaluation."""
    from ..gepa.reflectors import check_reflector
    from ..loop.runner import P2ORun
    from ..progress import console
    from ..records import check_output_path
    from .common import quiet_libraries

    if cfg.resume:
        cfg.out = cfg.resume
    check_output_path(cfg.out, "dir")
    if not cfg.no_gepa:
        check_reflector(cfg.reflector)  # name, key and reachability, before any model loads
    quiet_libraries()
    runner = P2ORun(cfg, resume=bool(cfg.resume), printer=lambda line: console.print(line, highlight=False))
    try:
        summary = runner.run()
    finally:
        runner.close()
    scores = ", ".join(f"{key.split('/')[1]} {value:.1f}%" for key, value in summary.final_eval.items()) or "none"
    console.print(f"[bold]done[/]: {summary.steps} steps over {summary.epochs} epochs; hard problems per epoch "
                  f"{summary.hard_counts}; final eval: {scores}; run directory {cfg.out}", highlight=False)
