"""``p2o report``: plots and a comparison table for finished runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer

from ..config import Config, option
from .app import app
from .options import command


@dataclass
class ReportJob(Config):
    runs: list[str] = option(default_factory=list, required=True, argument=True, metavar="RUN_DIR...",
                             help="Run directories to compare.")
    out: str = option("report", metavar="DIR", help="Directory for the PNG plots and report.md.")
    compare: str | None = option(None, choices=("paper",), unset="none",
                                 help="paper: add the P²O paper's published figures beside the runs' last evals.")
    aggregate: bool = option(False, help="Runs that share a name (one per seed, as p2o toy sweep writes them) "
                                         "become one row: mean ± std over seeds, bars with error bars.")


@command(app, "report", ReportJob)
def report(job: ReportJob) -> None:
    """Plots (training reward, hard count per epoch, eval accuracy, GEPA coverage) and a markdown table."""
    from ..files.outputs import check_output_path
    from ..report.figures import write_report

    check_output_path(job.out, "dir")
    if job.aggregate:
        from ..report.aggregate import write_aggregate_report

        written = write_aggregate_report(job.runs, job.out)
    else:
        written = write_report(job.runs, job.out, compare_paper=job.compare == "paper")
    typer.echo((Path(job.out) / "report.md").read_text())
    typer.echo(f"wrote {len(written)} files to {job.out}", err=True)
