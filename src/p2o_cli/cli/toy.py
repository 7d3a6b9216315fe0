"""``p2o toy init|measure|trace``: the toy world, a tiny model whose step-by-step reasoning a good
instruction unlocks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from ..config import Config, option, seed_option
from ..toy.pretrain_config import PretrainConfig
from .app import app
from .options import command

toy_app = typer.Typer(
    name="toy",
    help="The toy world: a tiny model whose step-by-step reasoning a good instruction unlocks.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(toy_app, name="toy")


def trigger_strength_option() -> Any:
    return option("mix", help="How strongly each trigger switches reasoning on: 'mix' (levels drawn per trigger "
                  "from 0.25/0.5/0.75/1, each with a partial synonym at half strength), one level for all (1.0: "
                  "the all-or-nothing world), or one per trigger ('0.25,0.5,1').")


def check_trigger_strength(spec: str) -> None:
    from ..errors import ConfigError
    from ..toy.lexicon import parse_strength

    try:
        parse_strength(spec)
    except ValueError as err:
        raise ConfigError(f"--trigger-strength: {err}") from None


@dataclass
class ToyInitJob(Config):
    out: str = option("", required=True, metavar="DIR",
                      help="World directory to create (model/, train.jsonl, dev.jsonl, bench/, world.json).")
    seed: int = option(0, help="World seed: trigger phrases, problems, pretraining.")
    n_train: int = option(320, min=1, help="Training problems (20% easy).")
    n_dev: int = option(80, min=1, help="Dev problems (20% easy).")
    n_bench: int = option(128, min=1, help="Problems in each of bench/toy-easy and bench/toy-hard.")
    pretrain_steps: int = option(PretrainConfig.steps, min=1, help="Optimizer steps (the tuned budget).")
    hidden_size: int = option(PretrainConfig.hidden_size, min=8, help="Model width (the tuned size).")
    num_layers: int = option(PretrainConfig.num_layers, min=1, help="Model depth (the tuned size).")
    trigger_strength: str = trigger_strength_option()
    threads: int = option(1, min=1, help="Torch CPU threads for pretraining: part of the world's recipe "
                          "(another count gives other weights).")
    measure: bool = option(True, help="Measure pass@k with and without triggers after pretraining.")
    force: bool = option(False, help="Replace an existing non-empty directory.")

    def check(self) -> None:
        check_trigger_strength(self.trigger_strength)


@command(toy_app, "init", ToyInitJob)
def toy_init(job: ToyInitJob) -> None:
    """Pretrain the toy model and write the toy world (deterministic for a seed)."""
    from ..files.outputs import check_output_path
    from ..monitor.progress import console
    from ..toy.lexicon import parse_strength
    from ..toy.world import init_world
    from .common import quiet_libraries

    if not job.force:  # --force replaces whatever is there: the user said so
        check_output_path(job.out, "dir")
    quiet_libraries()
    cfg = PretrainConfig(seed=job.seed, steps=job.pretrain_steps, hidden_size=job.hidden_size,
                         num_layers=job.num_layers, threads=job.threads)
    info = init_world(job.out, seed=job.seed, n_train=job.n_train, n_dev=job.n_dev, n_bench=job.n_bench,
                      trigger_levels=parse_strength(job.trigger_strength), pretrain_config=cfg,
                      measure=job.measure, overwrite=job.force,
                      log=lambda msg: console.print(msg, highlight=False))
    stats = info.pretrain
    console.print(
        f"pretrained {stats['params'] / 1e6:.2f}M parameters: {stats['steps']} steps in {stats['seconds']:.0f}s, "
        f"final loss {stats['final_loss']:.4f}" + (" (stopped early)" if stats["stopped_early"] else ""),
        highlight=False,
    )
    if info.measured:
        show_measured(info.measured)
    typer.echo(f"toy world written to {job.out}", err=True)


def show_measured(measured: dict[str, Any]) -> None:
    """The toy world's measurement table, then a warning for each target it misses."""
    from ..monitor.progress import console
    from ..toy.world import missed_targets
    from .display import measured_table

    console.print(measured_table(measured))
    for line in missed_targets(measured):
        console.print(f"[yellow]warning[/]: {line}", highlight=False)


@dataclass
class ToyMeasureJob(Config):
    world_dir: str = option("", required=True, argument=True, metavar="WORLD_DIR",
                            help="A directory written by p2o toy init.")
    n: int = option(6, min=1, help="Samples per problem (pass@n).")
    temperature: float = option(1.0, min=0.0, help="Sampling temperature.")
    max_new_tokens: int = option(128, min=1, help="Longest response, in tokens.")
    limit: int | None = option(None, min=1, unset="all", help="First N problems of each benchmark.")
    n_control: int = option(2, min=0, help="Random non-trigger templates measured for contrast.")
    seed: int = seed_option()
    threads: int = option(1, min=1, help="Torch CPU threads (2 can be much slower on a busy machine).")
    gen_batch_size: int = option(64, min=1, help="Sequences per generate call.")


@command(toy_app, "measure", ToyMeasureJob)
def toy_measure(job: ToyMeasureJob) -> None:
    """Measure plain and per-trigger pass@n / accuracy on the toy benchmarks (into world.json)."""
    from ..toy.world import measure_world
    from .common import quiet_libraries

    quiet_libraries()
    measured = measure_world(job.world_dir, n=job.n, temperature=job.temperature, max_new_tokens=job.max_new_tokens,
                             limit=job.limit, n_control=job.n_control, batch_size=job.gen_batch_size, seed=job.seed,
                             threads=job.threads)
    show_measured(measured)


@dataclass
class ToyTraceJob(Config):
    runs: list[str] = option(default_factory=list, required=True, argument=True, metavar="RUN_DIR...",
                             help="p2o run directories on a toy world.")


@command(toy_app, "trace", ToyTraceJob)
def toy_trace(job: ToyTraceJob) -> None:
    """Per epoch: the share of plain rollouts on hard problems that open with a step line."""
    from ..loop.rundir import RunDir
    from ..monitor.progress import console
    from ..toy.world import plain_step_share
    from .display import step_share_table

    rows = [(Path(run).name, row) for run in job.runs for row in plain_step_share(RunDir(run).rollouts_by_epoch())]
    console.print(step_share_table(rows))


@dataclass
class ToySweepJob(Config):
    out: str = option("", required=True, metavar="DIR", help="Sweep directory: world-S/, runs-S/VARIANT/, logs/, "
                                                             "report/.")
    seeds: str = option("5,6,7", metavar="LIST", help="World and run seeds, separated by commas.")
    variants: str = option("all", metavar="LIST", help="Comma-separated, or 'all': grpo, p2o (the paper's group "
                                                       "baseline), p2o-plain-baseline, p2o-no-distill, "
                                                       "p2o-same-template, p2o-ratio-mask.")
    run_config: str | None = option(None, metavar="PATH", unset="the toy's (p2o toy config prints it)",
                                    help="p2o run config for every variant.")
    trigger_strength: str = trigger_strength_option()
    jobs: int = option(2, min=1, help="Runs at once (each gets an equal share of the cores).")
    report_only: bool = option(False, help="Run nothing: write the report from the runs finished so far.")
    report_out: str | None = option(None, metavar="DIR", unset="OUT/report", help="Directory for the report.")

    def check(self) -> None:
        check_trigger_strength(self.trigger_strength)


@command(toy_app, "sweep", ToySweepJob)
def toy_sweep(job: ToySweepJob) -> None:
    """The paper's comparison on toy worlds: every variant per seed, resumable, then a mean ± std report."""
    from ..files.outputs import claim_directory
    from ..monitor.progress import console
    from ..report.aggregate import write_aggregate_report
    from ..toy.sweep import (
        LABELS,
        NAMES,
        SweepPlan,
        parse_seeds,
        parse_variants,
        run_sweep,
        sweep_run_dirs,
        toy_run_config,
        world_table,
    )

    config = Path(job.run_config) if job.run_config else toy_run_config()
    if not config.is_file():
        raise FileNotFoundError(f"{config}: no such run config")
    plan = SweepPlan(Path(job.out), parse_seeds(job.seeds), parse_variants(job.variants), config, job.jobs,
                     world_args=("--trigger-strength", job.trigger_strength))
    claim_directory(job.out, "sweep")  # its worlds, runs, logs and report: never into a directory not a sweep's
    if job.report_out:
        claim_directory(job.report_out, "report")  # before the sweep runs for hours, not after
    if not job.report_only:
        run_sweep(plan, say=lambda msg: console.print(msg, highlight=False))
    report = Path(job.report_out) if job.report_out else plan.out / "report"
    preface = ("Worlds (`p2o toy measure`, T=1; strengths in %):\n\n" + world_table(plan)
               + "\nGreedy accuracy (%) without templates at the end, mean ± std over seeds:\n\n")
    appendix = ("\nPlain rollouts of hard problems that open with a step line (`p2o toy trace`), "
                "mean over seeds:\n\n" + step_share_table(plan))
    write_aggregate_report(sweep_run_dirs(plan), report, LABELS, preface, appendix, names=NAMES)
    typer.echo((report / "report.md").read_text())
    typer.echo(f"report written to {report}", err=True)


@dataclass
class ToyConfigJob(Config):
    pass


@command(toy_app, "config", ToyConfigJob)
def toy_config(job: ToyConfigJob) -> None:
    """Print the toy world's p2o run config (the sweep's default; copy it to change a setting)."""
    from ..toy.sweep import toy_run_config

    typer.echo(toy_run_config().read_text(), nl=False)


def step_share_table(plan: Any) -> str:
    """Markdown: per variant and epoch, the share of plain rollouts on hard problems that open
    with a step line (``p2o toy trace``), averaged over seeds: whether the behaviour the
    templates switch on reached the plain prompt."""
    from ..loop.rundir import RunDir
    from ..toy.sweep import LABELS, run_state
    from ..toy.world import plain_step_share

    rows: dict[str, dict[int, list[float]]] = {}
    for variant in plan.variants:
        for seed in plan.seeds:
            run = plan.run_dir(seed, variant)
            if run_state(run) != "done":
                continue
            for row in plain_step_share(RunDir(run).rollouts_by_epoch()):
                if row["share"] is not None:
                    rows.setdefault(variant, {}).setdefault(row["epoch"], []).append(row["share"])
    epochs = sorted({e for per in rows.values() for e in per})
    lines = ["| run | " + " | ".join(f"epoch {e}" for e in epochs) + " |", "|---|" + "---|" * len(epochs)]
    for variant, per in rows.items():
        cells = [f"{100 * sum(per[e]) / len(per[e]):.1f}%" if e in per else "–" for e in epochs]
        lines.append(f"| {LABELS.get(variant, variant)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
