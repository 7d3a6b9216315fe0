"""`p2o data`: the paper's training sets as recipes, and the benchmark gold scan."""

from __future__ import annotations

from typing import Annotated

import typer

data_app = typer.Typer(name="data", help="Training-set recipes and benchmark checks.", no_args_is_help=True)


@data_app.command("prepare")
def prepare_command(
    recipe: Annotated[str, typer.Argument(help="deepscaler-5k (random 5,000 of DeepScaleR-Preview) or deepmath-5k (5,000 of DeepMath-103K with difficulty >= 7).")],
    out: Annotated[str, typer.Option("--out", help="Problem records JSONL to write; the recipe goes beside it as NAME.recipe.json.")],
    source: Annotated[str | None, typer.Option("--from", help="Local copy (JSONL/JSON/parquet) or hub id (default: the recipe's hub dataset).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Sampling seed.")] = 0,
    count: Annotated[int | None, typer.Option("--count", min=1, help="Rows to keep (default: the recipe's 5,000; all when fewer pass).")] = None,
    split: Annotated[str, typer.Option("--split", help="Split, for a hub dataset.")] = "train",
) -> None:
    """Write one of the paper's training sets from a local file or the hub, with its recipe."""
    from .cli import user_errors

    with user_errors():
        from .recipes import prepare

        made = prepare(recipe, out, source=source, seed=seed, count=count, split=split)
        info = made.recipe
        short = f" (only {info['count']:,} of the {info['requested']:,} asked for pass)" if info["count"] < info["requested"] else ""
        typer.echo(f"{info['count']:,} problems{short} -> {made.path}; recipe {made.sidecar}; sha256 {info['sha256']}", err=True)


@data_app.command("scan-golds")
def scan_golds_command(
    data_dir: Annotated[str | None, typer.Option("--data-dir", envvar="P2O_DATA_DIR", help="Local benchmark files (else the hub).")] = None,
    bench: Annotated[list[str], typer.Option("--bench", help="Benchmark name (repeatable); 'all' = the six.")] = ["all"],  # noqa: B006 - typer reads the default
    raw: Annotated[bool, typer.Option("--raw", help="Skip p2o's number rewrites, to see what math-verify alone misreads.")] = False,
) -> None:
    """List benchmark golds that math-verify reads differently from a mathematician; exit 1 if any is unexplained."""
    from .cli import user_errors

    with user_errors():
        from rich.table import Table

        from .goldscan import scan_golds
        from .progress import console

        report = scan_golds(data_dir, bench, normalize=not raw)
        table = Table("bench", "id", "gold", "math-verify reads", "flag", "why it stays", title="golds flagged")
        for f in report.flags:
            table.add_row(f.bench, f.id, f.gold[:60], f.parsed[:40], f.reason, f.explained or "[red]unexplained[/]")
        console.print(table)
        total = sum(report.golds.values())
        console.print(f"{total} golds in {len(report.golds)} benchmarks: {len(report.flags)} flagged, "
                      f"{len(report.unexplained)} unexplained", highlight=False)
    if report.unexplained:
        raise typer.Exit(1)
