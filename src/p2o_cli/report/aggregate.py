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

from .figures import EVAL_PREFIX, EVAL_SUFFIX, RunSeries, load_run
from .style import (
    MARKERS,
    Chart,
    Style,
    assign_styles,
    dodge,
    finish_axis,
    legend_outside,
    new_figure,
    paper_style,
    set_x_ticks,
)
from .writer import DPI, write_files


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
    by_seed: dict[str, dict[int | None, float]] = field(default_factory=dict)  # bench -> seed -> final
    start_by_seed: dict[str, dict[int | None, float]] = field(default_factory=dict)  # bench -> seed -> step 0


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
                group.by_seed.setdefault(bench, {})[run.config.get("seed")] = values[-1]
                if steps[0] == 0:
                    group.start.setdefault(bench, []).append(values[0])
                    group.start_by_seed.setdefault(bench, {})[run.config.get("seed")] = values[0]
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


def per_seed_table(groups: Sequence[Group], bench: str, labels: Mapping[str, str] | None = None,
                   reference: str | None = None, margin: float = 10.0) -> str:
    """Markdown: one benchmark's final accuracy per variant and seed, mean ± std, and (given a
    ``reference`` variant) on how many seeds each variant beats it by at least ``margin`` points."""
    labels = labels or {}
    seeds = list(dict.fromkeys(s for g in groups for s in g.by_seed.get(bench, {})))
    ref = next((g.by_seed.get(bench, {}) for g in groups if g.name == reference), None)
    header = ["run", *[f"seed {s}" for s in seeds], "mean ± std"]
    if ref is not None:
        header.append(f"≥ {reference} + {margin:g}")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    start: dict[int | None, float] = {}
    for g in groups:
        start.update(g.start_by_seed.get(bench, {}))
    rows = [("start (step 0)", start, None)] if start else []
    rows += [(labels.get(g.name, g.name), g.by_seed.get(bench, {}), g.name) for g in groups]
    for label, values, name in rows:
        cells = [label, *[f"{values[s]:.1f}" if s in values else "–" for s in seeds], fmt(list(values.values()))]
        if ref is not None:
            both = [s for s in values if s in ref]
            wins = sum(values[s] >= ref[s] + margin for s in both)
            cells.append("" if name in (None, reference) else f"{wins} of {len(both)}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def final_chart(groups: Sequence[Group], styles: Mapping[str, Style]) -> Chart | None:
    """Per benchmark, a bar per variant at its mean over seeds, each seed a marker on it, the same
    seed joined across variants (a world's difficulty moves all its variants together)."""
    benches = sorted({b for g in groups for b in g.final})
    if not benches:
        return None
    seeds = list(dict.fromkeys(s for g in groups for s in g.seeds))
    fig, axes = new_figure(len(benches), width=0.42 * len(groups) + 1.0, height=2.5)
    for ax, bench in zip(axes, benches):
        values: list[float] = []
        for i, g in enumerate(groups):
            scores = g.final.get(bench, [])
            if scores:
                ax.bar(i, mean_std(scores)[0], 0.7, color=styles[g.name].color, zorder=2)
                values += scores
        for j, seed in enumerate(seeds):
            points = [(i, g.final[bench][g.seeds.index(seed)]) for i, g in enumerate(groups)
                      if seed in g.seeds and len(g.final.get(bench, [])) == len(g.seeds)]
            ax.plot([x for x, _ in points], [y for _, y in points], color="0.25", linewidth=0.6, alpha=0.6,
                    marker=MARKERS[j % len(MARKERS)], markersize=3.5, markerfacecolor="white", zorder=3,
                    label=f"seed {seed}")
        ax.set_xticks(range(len(groups)), [styles[g.name].label for g in groups], rotation=35, ha="right")
        ax.grid(axis="x", visible=False)
        finish_axis(ax, bench, "", "accuracy (%)", [0.0, *values], bound=(0.0, 100.0))
    legend_outside(fig, axes)
    return Chart("final_accuracy", fig, "Final greedy accuracy without templates: bars at the mean over seeds, "
                 "a marker per seed, thin lines joining one seed's variants (mean ± std in the table).")


def hard_chart(groups: Sequence[Group], styles: Mapping[str, Style]) -> Chart | None:
    curves = {g.name: hard_curve(g.hard) for g in groups}
    if not any(curves.values()):
        return None
    fig, axes = new_figure(1, width=3.6, height=2.5)
    ax = axes[0]
    values: list[float] = []
    for g in groups:
        curve, style = curves[g.name], styles[g.name]
        xs = [e + dodge(style.order, len(styles), 1.0) for e in range(len(curve))]
        means, stds = [m for m, _ in curve], [s for _, s in curve]
        ax.errorbar(xs, means, yerr=stds, color=style.color, marker=style.marker, markerfacecolor="white",
                    linestyle=style.dash, capsize=2, elinewidth=0.8, label=style.label)
        values += [m - s for m, s in curve] + [m + s for m, s in curve]
    epochs = range(max(len(c) for c in curves.values()))
    set_x_ticks(ax, list(epochs), [str(e) for e in epochs])
    finish_axis(ax, "Hard problems per epoch", "epoch", "hard problems (mean ± std)", values, integer=True)
    legend_outside(fig, [ax])
    return Chart("hard_count_per_epoch", fig, "Hard problems at the end of each epoch, mean ± std over seeds "
                 "(variants shifted sideways a little so their error bars stay apart).")


def write_aggregate_report(run_dirs: Sequence[str | Path], out_dir: str | Path,
                           labels: Mapping[str, str] | None = None, preface: str = "",
                           appendix: str = "", names: Mapping[str, str] | None = None, fmt: str = "png",
                           dpi: int = DPI, html: bool = False) -> list[Path]:
    """report.md (the mean ± std table) and two figures (report.html too with ``html``); the files
    written. ``labels`` name the table's rows, ``names`` the figures' variants (default: ``labels``)."""
    runs = [load_run(d) for d in run_dirs]
    groups = group_runs(runs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = names if names is not None else labels or {}
    with paper_style():
        styles = assign_styles([g.name for g in groups], names, canonical=list(names))
        charts = [c for c in (final_chart(groups, styles), hard_chart(groups, styles)) if c is not None]
        head = "# p2o report: mean ± std over seeds\n\n" + preface + aggregate_table(groups, labels) + "\n"
        configs = {f"{styles[run.name].label} (seed {run.config.get('seed')})": run.config for run in runs}
        return write_files(out, charts, head, appendix, fmt, dpi, html, "p2o report: mean ± std over seeds", configs)
