"""``p2o assign``: a covering set of templates, then K of them for each hard problem."""

from __future__ import annotations

from dataclasses import dataclass

import typer

from ..config import Config, option, section
from ..gepa.config import AssignConfig
from .app import app
from .options import command


@dataclass
class AssignJob(Config):
    templates: str = option("", required=True, metavar="PATH", help="templates.jsonl from p2o gepa.")
    hard: str = option("", required=True, metavar="PATH", help="Hard problems JSONL to assign templates to.")
    out: str = option("-", metavar="PATH", help="assignments.jsonl (- = stdout).")
    assign: AssignConfig = section(AssignConfig)


@command(app, "assign", AssignJob)
def assign_command(job: AssignJob) -> None:
    """Greedy set cover over GEPA's templates, then K templates for each hard problem."""
    from ..files.outputs import check_outputs
    from ..files.records import Hard, Template, read_records, write_records
    from ..gepa.assign import assign_templates

    check_outputs({"--out": (job.out, "file")}, {"--templates": job.templates, "--hard": job.hard})
    templates = read_records(job.templates, Template, allow_empty=False)
    problems = read_records(job.hard, Hard, allow_empty=False)
    cfg = job.assign
    result = assign_templates([h.id for h in problems], templates, k=cfg.k, seed=cfg.seed,
                              same_template_in_group=cfg.same_template_in_group,
                              plain_in_group=cfg.plain_in_group,
                              plain_rewards={h.id: h.rewards for h in problems})
    write_records(job.out, result.assignments)
    typer.echo(
        f"{len(result.assignments)} problems assigned from a covering set of {len(result.cover)} templates "
        f"({', '.join(t.template_id for t in result.cover)}) solving {result.covered} dev problems; "
        f"{result.fallback} problems drew from the whole covering set",
        err=True,
    )
