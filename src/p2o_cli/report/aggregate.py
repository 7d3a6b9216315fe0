"""``p2o report --aggregate``: runs that share a name (one per seed) as one row, mean ± std.

A sweep (``p2o toy sweep``) names each run by its variant, so the runs of ``grpo`` on seeds
3, 4 and 5 become one row whose final accuracies and hard counts per epoch are averaged over
the seeds, with the sample standard deviation beside them. The table also gets a ``start``
row: the first evaluation (step 0) of each seed, the pretrained model everything starts from.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..files.outputs import atomic_path
from .figures import EVAL_PREFIX, EVAL_SUFFIX, RunSeries, load_run, save_figure


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


@dataclass
class Group:
    """One variant over seeds: per benchmark the final (and first) accuracy of each run, and
    the hard count per epoch of each run."""

    name: str
    final: dict[str, list[float]] = field(default_factory=dict)
    start: dict[str, list[float]] = field(default_factory=dict)
    hard: list[list[float]] = field(default_factory=list)
    seeds: list[int | None] = field(default_factory=list)


def group_runs(runs: Sequence[RunSeries]) -> list[Group]:
    """Runs grouped by name, in order of first appearance."""
    groups: dict[str, Group] = {}
    for run in runs:
        group = groups.setdefault(run.name, Group(run.name))
        group.seeds.append(run.config.get("seed"))
        for key in run.eval_keys():
            bench = key[len(EVAL_PREFIX) : -len(EVAL_SUFFIX)]
            steps, values = run.series(key)
            if values:
                group.final.setdefault(bench, []).append(values[-1])
                if steps[0] == 0:
                    group.start.setdefault(bench, []).append(values[0])
        group.hard.append(run.series("epoch/hard_count")[1])
    return list(groups.values())


def fmt(values: Sequence[float], digits: int = 1) -> str:
    if not values:
        return "–"
    mean, std = mean_std(values)
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def hard_curve(hard: Sequence[Sequence[float]]) -> list[tuple[float, float]]:
    """(mean, std) of the hard count per epoch over the runs that reached that epoch."""
    epochs = max((len(h) for h in hard), default=0)
    return [mean_std([h[e] for h in hard if len(h) > e]) for e in range(epochs)]


def aggregate_table(groups: Sequence[Group], labels: Mapping[str, str] | None = None) -> str:
    """Markdown: final accuracy per benchmark (mean ± std over seeds) and hard count per epoch."""
    labels = labels or {}
    benches = sorted({b for g in groups for b in g.final})
    header = ["run", "seeds", *benches, "hard problems per epoch"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    start = next((g for g in groups if g.start), None)
    if start is not None:
        lines.append("| start (step 0) | " + f"{len(next(iter(start.start.values())))} | "
                     + " | ".join(fmt(start.start.get(b, [])) for b in benches) + " | |")
    for g in groups:
        curve = " → ".join(f"{m:.0f}" for m, _ in hard_curve(g.hard)) or "–"
        cells = [labels.get(g.name, g.name), str(len(g.seeds)), *[fmt(g.final.get(b, [])) for b in benches], curve]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_final_bars(groups: Sequence[Group], out: Path) -> Path:
    """One panel per benchmark: a bar per variant at its mean, error bar ± std, seeds as dots."""
    import matplotlib.pyplot as plt

    benches = sorted({b for g in groups for b in g.final})
    fig, axes = plt.subplots(1, len(benches), figsize=(5 * len(benches), 4), squeeze=False)
    for ax, bench in zip(axes[0], benches):
        for i, g in enumerate(groups):
            values = g.final.get(bench, [])
            mean, std = mean_std(values)
            ax.bar(i, mean, yerr=std, capsize=4, color=f"C{i % 10}")
            ax.scatter([i] * len(values), values, color="black", s=10, zorder=3)
        ax.set_xticks(range(len(groups)), [g.name for g in groups], rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 100)
        ax.set_title(f"{bench}: final accuracy (mean ± std over seeds)")
        ax.set_ylabel("accuracy %")
    return save_figure(fig, out / "final_accuracy.png")


def plot_hard_curves(groups: Sequence[Group], out: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for i, g in enumerate(groups):
        curve = hard_curve(g.hard)
        if not curve:
            continue
        xs = list(range(len(curve)))
        means = [m for m, _ in curve]
        ax.plot(xs, means, marker="o", color=f"C{i % 10}", label=g.name)
        ax.fill_between(xs, [m - s for m, s in curve], [m + s for m, s in curve], color=f"C{i % 10}", alpha=0.15)
    ax.set_xlabel("epoch")
    ax.set_ylabel("hard problems")
    ax.set_title("Hard problems per epoch (mean ± std over seeds)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8)
    return save_figure(fig, out / "hard_count_per_epoch.png")


def write_aggregate_report(run_dirs: Sequence[str | Path], out_dir: str | Path,
                           labels: Mapping[str, str] | None = None, preface: str = "",
                           appendix: str = "") -> list[Path]:
    """report.md (the mean ± std table) and two plots; return the files written."""
    import matplotlib

    matplotlib.use("Agg")
    groups = group_runs([load_run(d) for d in run_dirs])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = [plot_final_bars(groups, out), plot_hard_curves(groups, out)]
    body = ("# p2o report: mean ± std over seeds\n\n" + preface + aggregate_table(groups, labels) + "\n"
            + "".join(f"![{p.stem}]({p.name})\n" for p in plots) + appendix)
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(body)
    return [*plots, out / "report.md"]
