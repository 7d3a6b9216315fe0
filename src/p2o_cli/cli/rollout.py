"""``p2o rollout``: K scored rollouts per problem, templated where an assignment says so."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import typer

from ..config import Config, model_option, option, section
from ..data.problems import DataConfig
from ..engines.config import RUN_ONLY, EngineConfig
from ..reward.config import RewardConfig
from ..rollout.generate import RolloutConfig
from .app import app
from .options import command


@dataclass
class RolloutJob(Config):
    model: str = model_option()
    data: str = option("", required=True, metavar="PATH", panel="Data",
                       help="Problems: JSONL/JSON/parquet file, hub id, or - (problem records on stdin).")
    out: str = option("-", metavar="PATH", help="Rollouts JSONL (- = stdout).")
    assign: str | None = option(None, metavar="PATH", unset="none: no templates",
                                help="assignments.jsonl from p2o assign (goes with --templates).")
    templates: str | None = option(None, metavar="PATH", unset="none",
                                   help="templates.jsonl from p2o gepa (goes with --assign).")
    policy_version: int | None = option(None, unset="the checkpoint's train step (0 for a base model)",
                                        help="Recorded in each rollout.")
    rollout: RolloutConfig = section(RolloutConfig)
    problems: DataConfig = section(DataConfig)
    engine: EngineConfig = section(EngineConfig, exclude=RUN_ONLY)
    reward: RewardConfig = section(RewardConfig)


@command(app, "rollout", RolloutJob)
def rollout(job: RolloutJob) -> None:
    """K rollouts per problem, scored; assigned problems get one template per rollout."""
    from ..data.problems import load_training_problems
    from ..engines import open_engine
    from ..errors import UsageError
    from ..files.outputs import check_outputs
    from ..files.records import Assignment, Template, read_records, write_records
    from ..monitor.progress import generation_progress
    from ..reward.pool import open_scorer
    from ..rollout.generate import check_assignments, generate_rollouts
    from .common import policy_version_of, quiet_libraries, reward_note

    if (job.assign is None) != (job.templates is None):
        raise UsageError("--assign and --templates go together")
    check_outputs({"--out": (job.out, "file")},
                  {"--data": job.data, "--assign": job.assign, "--templates": job.templates, "--model": job.model})
    version = job.policy_version if job.policy_version is not None else policy_version_of(job.model)
    cfg = dataclasses.replace(job.rollout, policy_version=version, model=job.model)
    # Assignments are checked against every selected problem, before --limit cuts the list.
    selection = dataclasses.replace(job.problems, limit=None)
    problems = load_training_problems(job.data, selection)
    if not problems:  # an empty input must not replace the last output with nothing
        raise UsageError(f"{job.data}: no problems")
    assignments = {a.id: a for a in read_records(job.assign, Assignment)} if job.assign else {}
    templates = {t.template_id: t for t in read_records(job.templates, Template)} if job.templates else {}
    check_assignments(assignments, templates, problems=problems, k=cfg.k)
    problems = problems[: job.problems.limit]
    quiet_libraries()
    engine = open_engine(job.model, job.engine)
    with open_scorer(job.reward) as scorer, generation_progress("rollout", len(problems) * cfg.k) as progress:
        rollouts = generate_rollouts(engine, engine.tokenizer, problems, cfg, scorer, assignments, templates, progress)
    write_records(job.out, rollouts)
    mean = sum(r.reward for r in rollouts) / max(len(rollouts), 1)
    typer.echo(f"{len(rollouts)} rollouts for {len(problems)} problems, mean reward {mean:.3f}"
               f"{reward_note(scorer.counters())}", err=True)
