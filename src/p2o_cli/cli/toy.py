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
    allow_weak: bool = option(False, help="Write a world that misses its targets (refused otherwise), for study; "
                              "p2o toy sweep never runs on one.")
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
                      measure=job.measure, overwrite=job.force, allow_weak=job.allow_weak,
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
    from ..toy.trace import plain_step_share
    from .display import step_share_table

    rows = [(Path(run).name, row) for run in job.runs for row in plain_step_share(RunDir(run).rollouts_by_epoch())]
    console.print(step_share_table(rows))


@dataclass
class ToySweepJob(Config):
    out: str = option("", required=True, metavar="DIR", help="Sweep directory: world-S/, runs-S/VARIANT/, logs/, "
                                                             "report/.")
    seeds: str = option("200,201,202,203,204", metavar="LIST", help="World and run seeds, separated by commas.")
    variants: str = option("all", metavar="LIST", help="Comma-separated, or 'all': grpo, p2o (the paper's group "
                                                       "baseline), p2o-plain-baseline, p2o-no-distill, "
                                                       "p2o-same-template, p2o-ratio-mask, p2o-plain-in-group.")
    run_config: str | None = option(None, metavar="PATH", unset="the toy's (p2o toy config prints it)",
                                    help="p2o run config for every variant.")
    trigger_strength: str = trigger_strength_option()
    epochs: int | None = option(None, min=1, unset="the run config's (the toy's: 5)",
                                help="Epochs of every run: a longer budget shows where a curve has not flattened.")
    jobs: int = option(2, min=1, help="Runs at once (each gets an equal share of the cores).")
    report_only: bool = option(False, help="Run nothing: write the report from the runs finished so far.")
    worlds_only: bool = option(False, help="Build and measure the worlds, run no variant: the report is the "
                                           "world table.")
    report_out: str | None = option(None, metavar="DIR", unset="OUT/report", help="Directory for the report.")

    def check(self) -> None:
        check_trigger_strength(self.trigger_strength)


@command(toy_app, "sweep", ToySweepJob)
def toy_sweep(job: ToySweepJob) -> None:
    """The paper's comparison on toy worlds: every variant per seed, resumable, then a mean ± std report."""
    from ..files.outputs import atomic_path, claim_directory
    from ..monitor.progress import console
    from ..report.aggregate import group_runs, per_seed_table, write_aggregate_report
    from ..report.figures import load_run
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
    plan = SweepPlan(Path(job.out), parse_seeds(job.seeds), [] if job.worlds_only else parse_variants(job.variants),
                     config, job.jobs, world_args=("--trigger-strength", job.trigger_strength,
                                                 # the world table shows a weak world's misses
                                                 *(("--allow-weak",) if job.worlds_only else ())),
                     run_args=("--epochs", str(job.epochs)) if job.epochs else ())
    claim_directory(job.out, "sweep")  # its worlds, runs, logs and report: never into a directory not a sweep's
    if job.report_out:
        claim_directory(job.report_out, "report")  # before the sweep runs for hours, not after
    if not job.report_only:
        run_sweep(plan, say=lambda msg: console.print(msg, highlight=False))
    report = Path(job.report_out) if job.report_out else plan.out / "report"
    if job.worlds_only:
        with atomic_path(report / "report.md") as tmp:
            tmp.write_text("# p2o toy worlds\n\n" + world_table(plan))
        typer.echo((report / "report.md").read_text())
        return
    runs = sweep_run_dirs(plan)
    groups = group_runs([load_run(run) for run in runs])
    benches = sorted({bench for g in groups for bench in g.by_seed})
    traces = run_traces(plan)
    preface = ("Worlds (`p2o toy measure`, T=1 unless marked; strengths in %):\n\n" + world_table(plan)
               + "\nAccuracy (%) without templates at the end, mean ± std over seeds (BENCH: greedy; "
               "BENCH-sampled: the mean over samples at the rollout temperature):\n\n")
    per_seed = "".join(f"\n{bench} accuracy (%) at the end, per seed:\n\n"
                       + per_seed_table(groups, bench, LABELS, reference="grpo") for bench in benches)
    appendix = (per_seed + "\nPlain rollouts of hard problems that open with a step line (`p2o toy trace`), "
                "mean over seeds:\n\n" + step_share_table(plan, traces)
                + "\n" + group_signal_tables(plan, traces))
    write_aggregate_report(runs, report, LABELS, preface, appendix, names=NAMES)
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


def run_traces(plan: Any) -> dict[tuple[str, int], dict[str, list[dict[str, Any]]]]:
    """Per finished run (variant, seed): its plain step share and its templated groups' opening
    signal per epoch (:mod:`p2o_cli.toy.trace`), under the run's own baseline and estimator."""
    import orjson

    from ..loop.rundir import RunDir
    from ..toy.sweep import run_state
    from ..toy.trace import opening_signal, plain_step_share

    traces = {}
    for variant in plan.variants:
        for seed in plan.seeds:
            run = plan.run_dir(seed, variant)
            if run_state(run) != "done":
                continue
            train = orjson.loads((run / "config.json").read_bytes()).get("train", {})
            epochs = RunDir(run).rollouts_by_epoch()
            traces[variant, seed] = {
                "share": plain_step_share(epochs),
                "signal": opening_signal(epochs, train.get("templated_baseline", "group"),
                                         train.get("adv_estimator", "grpo"), train.get("std_norm", True)),
            }
    return traces


def _epoch_table(plan: Any, traces: dict[tuple[str, int], dict[str, list[dict[str, Any]]]], kind: str, key: str,
                 cell: Any) -> str:
    """Markdown: per variant and epoch, ``key`` of each run's ``kind`` trace averaged over seeds."""
    from statistics import fmean

    from ..toy.sweep import LABELS

    rows: dict[str, dict[int, list[float]]] = {}
    for (variant, _seed), trace in traces.items():
        for row in trace[kind]:
            if row[key] is not None:
                rows.setdefault(variant, {}).setdefault(row["epoch"], []).append(row[key])
    epochs = sorted({e for per in rows.values() for e in per})
    lines = ["| run | " + " | ".join(f"epoch {e}" for e in epochs) + " |", "|---|" + "---|" * len(epochs)]
    for variant in plan.variants:
        if variant in rows:
            per = rows[variant]
            cells = [cell(fmean(per[e])) if e in per else "–" for e in epochs]
            lines.append(f"| {LABELS.get(variant, variant)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def step_share_table(plan: Any, traces: dict[tuple[str, int], dict[str, list[dict[str, Any]]]] | None = None) -> str:
    """Markdown: per variant and epoch, the share of plain rollouts on hard problems that open
    with a step line (``p2o toy trace``), averaged over seeds: whether the behaviour the
    templates switch on reached the plain prompt."""
    traces = run_traces(plan) if traces is None else traces
    return _epoch_table(plan, traces, "share", "share", lambda v: f"{100 * v:.1f}%")


def group_signal_tables(plan: Any, traces: dict[tuple[str, int], dict[str, list[dict[str, Any]]]]) -> str:
    """Markdown: what the templated groups teach the plain prompt (:mod:`p2o_cli.toy.trace`): per
    variant and epoch, the share of templated rollouts that open with a step and the opening
    advantage; then per run, both over its epochs beside the plain step share it ended with."""
    from statistics import fmean

    from ..toy.sweep import LABELS

    out = ["Share of a templated group's rollouts that open with a step (mean over groups and seeds):\n\n",
           _epoch_table(plan, traces, "signal", "step_share", lambda v: f"{100 * v:.1f}%"),
           "\nShare of templated groups in which every rollout opens with a step:\n\n",
           _epoch_table(plan, traces, "signal", "all_step", lambda v: f"{100 * v:.1f}%"),
           "\nOpening advantage, (1/K) Σ over a group's step-opening rollouts of their advantage, under the "
           "run's own baseline (mean over groups and seeds):\n\n",
           _epoch_table(plan, traces, "signal", "opening_advantage", lambda v: f"{v:+.3f}"),
           "\nPer run: the mean over epochs of the templated groups' step share and opening advantage, "
           "and the plain step share of the last epoch:\n\n",
           "| run | seed | templated step share | all-step groups | opening advantage | plain step share, last epoch |",
           "\n|---|---|---|---|---|---|\n"]
    for (variant, seed), trace in traces.items():
        signal = [r for r in trace["signal"] if r["opening_advantage"] is not None]
        if not signal:
            continue
        last = next((r["share"] for r in reversed(trace["share"]) if r["share"] is not None), None)
        out.append(f"| {LABELS.get(variant, variant)} | {seed} | {100 * fmean(r['step_share'] for r in signal):.1f}% "
                   f"| {100 * fmean(r['all_step'] for r in signal):.1f}% "
                   f"| {fmean(r['opening_advantage'] for r in signal):+.3f} "
                   f"| {'–' if last is None else f'{100 * last:.1f}%'} |\n")
    return "".join(out)
