"""``p2o run``: the whole P²O loop, in one process or SPMD on N ranks, resumable."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..loop.config import RunConfig
from .app import app
from .options import command


def saved_run_config(resume: str) -> dict[str, Any]:
    """The options a run directory saved (those it left unset, as earlier versions wrote them, left out)."""
    from ..config import flatten
    from ..errors import UsageError
    from ..files.records import read_json_object

    saved = Path(resume) / "config.json"
    if not saved.is_file():
        raise UsageError(f"{resume}: not a run directory (no config.json)")
    values = flatten(read_json_object(saved), RunConfig, str(saved))
    for once in ("resume", "allow_changed_data"):  # what one command asked, not the run's settings
        values.pop(once, None)
    return {**{k: v for k, v in values.items() if v is not None}, "out": resume}


def run_layers(above: Mapping[str, Any]) -> dict[str, Any]:
    """Under --config and the flags: with ``--resume RUN_DIR``, the run's saved options; under
    those, the LR schedule stored in the checkpoint the run starts from (its last checkpoint, or a
    train-step checkpoint given as --model). The loop sets the schedule's length itself."""
    from ..loop.rundir import RunDir
    from .common import stored_schedule

    resume = above.get("resume")
    saved = saved_run_config(resume) if resume else {}
    run_dir = RunDir(resume) if resume else None
    start = run_dir.read_state().checkpoint if run_dir and run_dir.state_path.is_file() else None
    schedule = stored_schedule(start or above.get("model") or saved.get("model"))
    schedule.pop("total_steps", None)
    return {**schedule, **saved}


@command(app, "run", RunConfig, base=run_layers)
def run(cfg: RunConfig) -> None:
    """The whole P²O loop: rollouts, train steps, hard mining, GEPA + assignment, evaluation."""
    from ..files.outputs import check_outputs
    from ..gepa.reflectors import check_reflector
    from ..loop.runner import P2ORun
    from ..loop.summary import format_summary
    from ..monitor.progress import console, say
    from .common import quiet_libraries

    if cfg.resume:
        cfg.out = cfg.resume
    check_outputs({"--out": (cfg.out, "run")}, {"--data": cfg.data, "--model": cfg.model})
    if not cfg.no_gepa:
        check_reflector(cfg.reflector)  # name, key and reachability, before any model loads
    quiet_libraries()
    runner = P2ORun(cfg, resume=bool(cfg.resume), printer=say)  # timestamped lines in logs
    try:
        summary = runner.run()
    finally:
        runner.close()
    if runner.dist.is_main:  # under accelerate launch/torchrun, rank 0 speaks for the run
        console.print(format_summary(summary, cfg.out), highlight=False, soft_wrap=True)  # whole lines in logs
