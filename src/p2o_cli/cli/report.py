"""``p2o report``: figures, a comparison table and (``--html``) one self-contained page for finished runs."""

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
    out: str = option("report", metavar="DIR", help="Directory for the figures, report.md and report.html.")
    compare: str | None = option(None, choices=("paper",), unset="none",
                                 help="paper: add the P²O paper's published figures beside the runs' last evals.")
    aggregate: bool = option(False, help="Runs that share a name (one per seed, as p2o toy sweep writes them) "
                                         "become one row: mean ± std over seeds, bars with every seed marked.")
    format: str = option("png", choices=("png", "svg", "pdf"), help="File format of the figures.")
    dpi: int = option(200, min=50, max=1200, help="Resolution of PNG figures (dots per inch).")
    html: bool = option(False, help="Also write report.html: one self-contained page (no network) with the "
                                    "figures, the runs' configuration and the GEPA explorer.")
    samples: int = option(12, min=0, help="Hard problems whose plain and templated rollouts report.html shows.")


@command(app, "report", ReportJob)
def report(job: ReportJob) -> None:
    """Figures (training reward, hard problems, eval accuracy, training dynamics, GEPA), a markdown table,
    and with --html a page to explore the prompt search."""
    from ..files.outputs import check_outputs, claim_directory
    from ..report.aggregate import write_aggregate_report
    from ..report.writer import write_report
    from ..toy.sweep import NAMES

    check_outputs({"--out": (job.out, "report")}, {"RUN_DIR": job.runs})
    claim_directory(job.out, "report")  # a directory with a report of its own is never written into
    if job.aggregate:
        written = write_aggregate_report(job.runs, job.out, NAMES, fmt=job.format, dpi=job.dpi, html=job.html)
    else:
        written = write_report(job.runs, job.out, compare_paper=job.compare == "paper", fmt=job.format, dpi=job.dpi,
                               html=job.html, labels=NAMES, samples=job.samples)
    typer.echo((Path(job.out) / "report.md").read_text())
    typer.echo(f"wrote {len(written)} files to {job.out}", err=True)
