"""``p2o gepa``: evolve instruction templates on a hard set."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer

from ..config import MODEL_PANEL, Config, option, section
from ..engines.config import RUN_ONLY, EngineConfig
from ..gepa.config import GepaConfig
from ..gepa.reflectors import ReflectorConfig
from ..reward.config import RewardConfig
from .app import app
from .options import command


@dataclass
class GepaJob(Config):
    hard: str = option("", required=True, metavar="PATH", help="Hard problems JSONL from p2o mine-hard (- = stdin).")
    model: str | None = option(None, metavar="PATH", panel=MODEL_PANEL, unset="the model the hard file names",
                               help="The policy whose templates are evolved: model directory or hub id.")
    out: str = option("templates.jsonl", metavar="PATH", help="templates.jsonl: every kept template with its dev "
                                                              "scores.")
    metrics: str | None = option(None, metavar="PATH", unset="none", help="Append per-iteration metrics (JSONL) "
                                                                          "here.")
    state: str | None = option(None, metavar="PATH", unset="OUT.state.json", help="Search state file.")
    resume: bool = option(False, help="Continue the search saved in the state file.")
    gepa: GepaConfig = section(GepaConfig)
    reflector: ReflectorConfig = section(ReflectorConfig)
    engine: EngineConfig = section(EngineConfig, exclude=RUN_ONLY)
    reward: RewardConfig = section(RewardConfig)


@command(app, "gepa", GepaJob)
def gepa_command(job: GepaJob) -> None:
    """Evolve instruction templates on hard problems with GEPA (reflective prompt evolution)."""
    from ..engines import open_engine
    from ..errors import UsageError
    from ..files.outputs import STDIO, check_outputs
    from ..files.records import Hard, read_records, write_records
    from ..gepa.reflect import ReflectorError
    from ..gepa.reflectors import ReflectorContext, check_reflector, reflector_from_config
    from ..gepa.search import check_budget, run_gepa
    from ..gepa.view import live_front
    from ..monitor.progress import interactive, warn
    from ..reward.pool import open_scorer
    from .checks import gepa_budget_warning, model_of_hard
    from .common import quiet_libraries, reward_note

    if job.out == STDIO and job.state is None:
        raise UsageError("--out - needs an explicit --state file")
    state_path = job.state or f"{job.out}.state.json"
    # The state file is read back by --resume: it is the search's own, not an input to protect.
    check_outputs({"--out": (job.out, "file"), "--state": (state_path, "file"), "--metrics": (job.metrics, "append")},
                  {"--hard": job.hard, "--model": job.model})
    if job.resume and not Path(state_path).is_file():
        raise UsageError(f"{state_path}: no search to resume (drop --resume to start one)")
    problems = read_records(job.hard, Hard, allow_empty=False)
    model = job.model or model_of_hard(problems)
    if model is None:
        raise UsageError(f"{job.hard}: the hard records name no model (written before p2o recorded it); pass --model")
    cfg = job.gepa
    check_budget(len(problems), cfg)  # before any model loads
    budget_warning = gepa_budget_warning(problems, cfg.gepa_max_new_tokens)
    if budget_warning:
        warn(budget_warning)
    if job.reflector.reflector != "self":
        check_reflector(job.reflector)  # name, key and reachability, in seconds, as p2o run does
    thinking = cfg.prompt.enable_thinking
    # An API reflector is built before the model loads, so a missing key fails at once.
    context = ReflectorContext(seed=cfg.seed, enable_thinking=thinking)
    reflector = None if job.reflector.reflector == "self" else reflector_from_config(job.reflector, context)
    quiet_libraries()
    engine = open_engine(model, job.engine)
    if reflector is None:
        own = job.reflector.reflector_model
        ref = open_engine(own, job.engine) if own else engine
        context.engine, context.tokenizer = ref, ref.tokenizer
        reflector = reflector_from_config(job.reflector, context)
    with open_scorer(job.reward) as scorer, live_front(interactive()) as on_iteration:
        try:
            result = run_gepa(problems, engine, engine.tokenizer, reflector, scorer, cfg, state_path=state_path,
                              metrics_path=job.metrics, on_iteration=on_iteration, resume=job.resume)
        except ReflectorError as err:
            raise UsageError(f"{err} (search saved in {state_path}; continue with --resume)") from None
    write_records(job.out, result.templates)
    best = max((sum(t.dev_scores) / max(len(t.dev_scores), 1) for t in result.templates), default=0.0)
    typer.echo(
        f"{len(result.templates)} templates after {result.iterations} iterations "
        f"({result.kept} kept of {result.reflections} proposals; {result.rejected_leaks} rejected for "
        f"leaking answers, {result.skipped} unusable, {result.duplicates} duplicates); "
        f"spent {result.spent:,} of {cfg.budget:,} rollouts; best dev mean {best:.3f}, front {len(result.front)}"
        f"{reward_note(scorer.counters())}",
        err=True,
    )
