"""``p2o data prepare|scan-golds``: the paper's training sets as recipes, and the benchmark gold scan."""

from __future__ import annotations

from dataclasses import dataclass

import typer

from ..config import Config, option, section, seed_option
from ..evaluation.evaluate import EvalConfig
from .app import app
from .options import command

data_app = typer.Typer(
    name="data", help="Training-set recipes and benchmark checks.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(data_app, name="data")


@dataclass
class PrepareJob(Config):
    recipe: str = option("", required=True, argument=True, metavar="RECIPE",
                         help="deepscaler-5k (random 5,000 of DeepScaleR-Preview) or deepmath-5k "
                              "(5,000 of DeepMath-103K with difficulty >= 7).")
    out: str = option("", required=True, metavar="PATH", help="Problem records JSONL to write; the recipe goes "
                                                              "beside it as NAME.recipe.json.")
    source: str | None = option(None, flag="--from", metavar="PATH", unset="the recipe's hub dataset",
                                help="Local copy (JSONL/JSON/parquet) or hub id.")
    count: int | None = option(None, min=1, unset="the recipe's (5,000; all when fewer pass)", help="Rows to keep.")
    split: str = option("train", metavar="NAME", help="Split, for a hub dataset.")
    seed: int = seed_option()


@command(data_app, "prepare", PrepareJob)
def prepare_command(job: PrepareJob) -> None:
    """Write one of the paper's training sets from a local file or the hub, with its recipe."""
    from ..data.recipes import prepare, sidecar_path
    from ..files.outputs import check_outputs

    check_outputs({"--out": (job.out, "file"), "its recipe": (sidecar_path(job.out), "file")}, {"--from": job.source})
    made = prepare(job.recipe, job.out, source=job.source, seed=job.seed, count=job.count, split=job.split)
    info = made.recipe
    short = (
        f" (only {info['count']:,} of the {info['requested']:,} asked for pass)"
        if info["count"] < info["requested"]
        else ""
    )
    typer.echo(
        f"{info['count']:,} problems{short} -> {made.path}; recipe {made.sidecar}; sha256 {info['sha256']}", err=True
    )


_NOT_SCAN_OPTIONS = ("eval_n", "eval_temperature", "eval_top_p", "eval_max_new_tokens", "eval_limit", "grader", "seed",
                     "prompt")


@dataclass
class ScanGoldsJob(Config):
    eval: EvalConfig = section(EvalConfig, exclude=_NOT_SCAN_OPTIONS, bench=["all"])
    raw: bool = option(False, help="Skip p2o's number rewrites, to see what math-verify alone misreads.")


@command(data_app, "scan-golds", ScanGoldsJob)
def scan_golds_command(job: ScanGoldsJob) -> None:
    """List benchmark golds that math-verify reads differently from a mathematician; exit 1 if any is unexplained."""
    from ..evaluation.goldscan import scan_golds
    from ..monitor.progress import console
    from .display import gold_scan_table

    report = scan_golds(job.eval.data_dir, job.eval.bench, normalize=not job.raw)
    console.print(gold_scan_table(report.flags))
    total = sum(report.golds.values())
    console.print(f"{total} golds in {len(report.golds)} benchmarks: {len(report.flags)} flagged, "
                  f"{len(report.unexplained)} unexplained", highlight=False)
    if report.unexplained:
        raise typer.Exit(1)
