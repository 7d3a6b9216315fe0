"""`p2o report`: a run directory's metrics as series, the comparison table, and the per-run figures.

Figures (each built by one function, all runs overlaid, each run in its own colour and marker):
the training reward of plain and of templated rollouts, the hard problems per epoch, eval
accuracy per benchmark, the training dynamics (KL, clip fraction, entropy, response length,
truncation) and GEPA per epoch (templates kept, dev coverage, rollouts spent against the budget).
Steps are drawn with the epoch boundaries, where the prompt phase runs; a panel whose metric is
the same at every point of every run is left out and named in the figure's notes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ..errors import RecordError
from ..files.records import iter_json_lines
from .style import (
    DASHES,
    Chart,
    Style,
    dodge,
    epoch_lines,
    finish_axis,
    flat_note,
    grid,
    identical_to,
    legend_outside,
    new_figure,
    set_x_ticks,
    spacing,
)

EVAL_PREFIX = "eval/"
EVAL_SUFFIX = "/accuracy"
PER_EPOCH = ("epoch/", "gepa/")
# (metric key, panel title, y label) for the training-dynamics figure.
DYNAMICS: tuple[tuple[str, str, str], ...] = (
    ("actor/ppo_kl", "PPO KL (old → new)", "nats / token"),
    ("actor/pg_clipfrac", "clip fraction", "fraction of tokens"),
    ("actor/entropy", "entropy", "nats / token"),
    ("response_length/mean", "response length", "tokens (mean)"),
    ("rollout/truncated_frac", "truncated responses", "fraction of rollouts"),
)
# (metric key, panel title, y label) for the per-epoch GEPA figure.
GEPA_PANELS: tuple[tuple[str, str, str], ...] = (
    ("gepa/templates", "templates kept", "templates (seed included)"),
    ("gepa/dev_coverage", "dev coverage", "share of dev problems solved"),
    ("gepa/rollouts_spent", "rollouts spent", "rollouts"),
)
SMOOTHING = 0.8  # the training reward's EMA weight
DENSE = 15  # a series with more points than this gets a marker every few points only


@dataclass
class RunSeries:
    name: str
    rows: list[dict[str, Any]]
    config: dict[str, Any]
    path: Path | None = None

    def series(self, key: str, where: str | None = None) -> tuple[list[float], list[float]]:
        """(x, y) for one metric; x is the training step, or the epoch for per-epoch metrics.

        ``where``: keep only rows where this other key is truthy (e.g. templated rollouts exist).
        """
        xs, ys = [], []
        for row in self.rows:
            if key in row and row[key] is not None and (where is None or row.get(where)):
                xs.append(row.get("epoch" if key.startswith(PER_EPOCH) else "training/step", len(xs)))
                ys.append(float(row[key]))
        return xs, ys

    def eval_keys(self) -> list[str]:
        keys = {k for row in self.rows for k in row if k.startswith(EVAL_PREFIX) and k.endswith(EVAL_SUFFIX)}
        return sorted(keys)

    def last(self, key: str) -> float | None:
        values = self.series(key)[1]
        return values[-1] if values else None

    def last_eval(self) -> dict[str, float]:
        """Benchmark -> the run's last eval accuracy %."""
        scores = {key[len(EVAL_PREFIX) : -len(EVAL_SUFFIX)]: self.last(key) for key in self.eval_keys()}
        return {name: value for name, value in scores.items() if value is not None}

    def epoch_ends(self) -> list[float]:
        """The training step at which each epoch ended (where its prompt phase ran)."""
        return [float(row["training/step"]) for row in self.rows
                if "epoch/hard_count" in row and "training/step" in row]

    def setting(self, *path: str) -> Any:
        """A value of the run's config.json (None if it is not there)."""
        node: Any = self.config
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        return node


def load_run(run_dir: str | Path) -> RunSeries:
    run = Path(run_dir)
    metrics = run / "metrics.jsonl"
    if not metrics.is_file():
        raise RecordError(run, None, "not a run directory (no metrics.jsonl)")
    rows = [obj for _, obj in iter_json_lines(metrics, torn_tail=True)]  # a run may be appending to it now
    config_path = run / "config.json"
    config = orjson.loads(config_path.read_bytes()) if config_path.is_file() else {}
    return RunSeries(name=config.get("name") or run.name, rows=rows, config=config, path=run)


def comparison_table(runs: Sequence[RunSeries], labels: Mapping[str, str] | None = None) -> str:
    """Markdown: final eval accuracy per benchmark, first/last hard count, final train reward."""
    labels = labels or {}
    benches = sorted({k for run in runs for k in run.eval_keys()})
    header = [
        "run",
        *[k[len(EVAL_PREFIX) : -len(EVAL_SUFFIX)] for k in benches],
        "hard (first → last)",
        "train reward (last)",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in runs:
        cells = [labels.get(run.name, run.name)]
        for key in benches:
            value = run.last(key)
            cells.append("–" if value is None else f"{value:.1f}")
        hard = run.series("epoch/hard_count")[1]
        cells.append(f"{int(hard[0])} → {int(hard[-1])}" if hard else "–")
        reward = run.last("critic/rewards/mean")
        cells.append("–" if reward is None else f"{reward:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def smooth(values: Sequence[float], weight: float) -> list[float]:
    """Exponential moving average with TensorBoard's debiasing: the first point is not pulled to 0."""
    out, last, norm = [], 0.0, 0.0
    for value in values:
        last = weight * last + (1 - weight) * value
        norm = weight * norm + (1 - weight)
        out.append(last / norm)
    return out


# ---------------------------------------------------------------- drawing runs


Series = dict[str, tuple[list[float], list[float]]]


def draw_runs(ax: Any, series: Series, styles: Mapping[str, Style], smoothing: float = 0.0,
              shift: bool = False) -> list[str]:
    """Each run's line in its style; returns "B ≡ A" for each run B whose points are exactly A's.

    Such a run is drawn dashed over A (both colours show); ``shift`` moves each run's points a
    little sideways (sparse series: evals, epochs), so equal values sit side by side.
    """
    present = {name: xy for name, xy in series.items() if xy[0]}
    twins = identical_to(present)
    gap = spacing([x for xs, _ in present.values() for x in xs])
    for name, (xs, ys) in present.items():
        style = styles[name]
        if shift:
            xs = [x + dodge(style.order, len(styles), gap) for x in xs]
        if smoothing:
            ax.plot(xs, ys, color=style.color, alpha=0.18, linewidth=0.7, linestyle=style.dash)
            ys = smooth(ys, smoothing)
        every = max(1, len(xs) // 8) if len(xs) > DENSE else 1
        ax.plot(xs, ys, color=style.color, marker=style.marker, markevery=(style.order % every, every),
                markerfacecolor="white", linestyle=(0, (3, 2)) if name in twins else style.dash, label=style.label,
                zorder=3 + (name in twins))
    return [f"{styles[name].label} ≡ {styles[other].label}" for name, other in twins.items()]


def twin_notes(per_panel: Mapping[str, list[str]]) -> tuple[list[str], list[str]]:
    """(footnotes for the figure, sentences for the caption) from each panel's "B ≡ A" pairs: a
    pair found in every panel is said once, the others with their panel."""
    pairs = list(dict.fromkeys(pair for found in per_panel.values() for pair in found))
    short = [pair if all(pair in found for found in per_panel.values()) else
             f"{pair} ({', '.join(t for t, found in per_panel.items() if pair in found)})" for pair in pairs]
    return short, [f"{line}: identical values, drawn dashed on top" for line in short]


def step_axis(ax: Any, runs: Sequence[RunSeries], xs: Sequence[float]) -> None:
    """Epoch boundaries as faint lines, ticks at the given steps (those where the data is)."""
    ends = sorted({x for run in runs for x in run.epoch_ends()})
    epoch_lines(ax, ends[:-1])
    set_x_ticks(ax, xs)


def dense_ticks(runs: Sequence[RunSeries], series: Series) -> list[float]:
    """Ticks for a metric logged at every step: its first step and each epoch's last."""
    xs = [x for xs, _ in series.values() for x in xs]
    if not xs:
        return [0.0]
    return [min(xs), *sorted({x for run in runs for x in run.epoch_ends() if x > min(xs)} or {max(xs)})]


def epoch_axis_ticks(ax: Any, epochs: Sequence[float]) -> None:
    ticks = sorted({int(e) for e in epochs})
    set_x_ticks(ax, ticks, [str(e) for e in ticks])


# ---------------------------------------------------------------- figures


def panels(runs: Sequence[RunSeries], specs: Sequence[tuple[str, str, str]], where: Mapping[str, str] | None = None,
           ) -> tuple[list[tuple[str, str, str, Series]], list[str]]:
    """The (key, title, y label, series) worth a panel, and notes on those left out."""
    where = where or {}
    kept, notes = [], []
    for key, title, ylabel in specs:
        series = {run.name: run.series(key, where=where.get(key)) for run in runs}
        note = flat_note(title, [y for _, ys in series.values() for y in ys])
        if note is None:
            kept.append((key, title, ylabel, series))
        else:
            notes.append(note)
    return kept, notes


def undrawn(name: str, notes: list[str]) -> Chart | None:
    """A figure with no panel worth drawing: its notes alone, or nothing if there was no data."""
    said = [n for n in notes if "no data" not in n]
    return Chart(name, None, "", said) if said else None


def reward_chart(runs: Sequence[RunSeries], styles: Mapping[str, Style]) -> Chart | None:
    """Training reward of plain and of templated rollouts, side by side (EMA; raw values faint)."""
    specs = (("rollout/plain_reward_mean", "plain prompt", "reward (fraction correct)"),
             ("rollout/templated_reward_mean", "with a GEPA template", "reward (fraction correct)"))
    drawn, notes = panels(runs, specs, where={specs[1][0]: "rollout/templated_frac"})
    if not drawn:
        return undrawn("training_reward", notes)
    fig, axes = new_figure(len(drawn), sharey=True)
    ticks = dense_ticks(runs, {run.name: run.series(specs[0][0]) for run in runs})  # both panels alike
    values = [y for *_, series in drawn for _, ys in series.values() for y in ys]
    twins = {}
    for ax, (_, title, ylabel, series) in zip(axes, drawn):
        twins[title] = draw_runs(ax, series, styles, smoothing=SMOOTHING)
        step_axis(ax, runs, ticks)
        finish_axis(ax, title, "training step", ylabel if ax is axes[0] else "", values, bound=(0.0, 1.0))
    missing = [styles[name].label for name, (xs, _) in drawn[-1][3].items() if not xs]
    if len(drawn) == 2 and missing:
        notes.append(f"no templated rollouts: {', '.join(missing)}")
    footnotes, said = twin_notes(twins)
    legend_outside(fig, axes, footnotes)
    notes += said
    return Chart("training_reward", fig, f"Training reward per step (EMA {SMOOTHING}, raw values faint); dotted "
                 "lines: epoch ends, where GEPA runs and templated rollouts start.", notes)


def hard_chart(runs: Sequence[RunSeries], styles: Mapping[str, Style]) -> Chart | None:
    drawn, notes = panels(runs, [("epoch/hard_count", "Hard problems per epoch", "hard problems")])
    if not drawn:
        return undrawn("epoch_hard_count", notes)
    _, title, ylabel, series = drawn[0]
    tau = next((t for run in runs if (t := run.setting("mining", "tau")) is not None), None)
    fig, axes = new_figure(1, width=3.4, height=2.3)
    footnotes, said = twin_notes({title: draw_runs(axes[0], series, styles, shift=True)})
    epoch_axis_ticks(axes[0], [x for xs, _ in series.values() for x in xs])
    finish_axis(axes[0], title, "epoch", ylabel, [y for _, ys in series.values() for y in ys], integer=True)
    legend_outside(fig, axes, footnotes)
    notes += said
    rule = f"mean reward of the K rollouts below τ = {tau}" if tau is not None else "mean reward below τ"
    return Chart("epoch_hard_count", fig, f"Hard problems at the end of each epoch ({rule}).", notes)


def eval_chart(runs: Sequence[RunSeries], styles: Mapping[str, Style]) -> Chart | None:
    keys = sorted({k for run in runs for k in run.eval_keys()})
    drawn, notes = panels(runs, [(k, k[len(EVAL_PREFIX) : -len(EVAL_SUFFIX)], "accuracy (%)") for k in keys])
    if not drawn:
        return undrawn("eval_accuracy", notes)
    fig, axes = new_figure(*grid(len(drawn)), used=len(drawn))
    twins = {}
    for ax, (_, bench, ylabel, series) in zip(axes, drawn):
        twins[bench] = draw_runs(ax, series, styles, shift=True)
        step_axis(ax, runs, [x for xs, _ in series.values() for x in xs])
        finish_axis(ax, bench, "training step", ylabel, [y for _, ys in series.values() for y in ys],
                    bound=(0.0, 100.0))
    footnotes, said = twin_notes(twins)
    legend_outside(fig, axes, footnotes)
    notes += said
    return Chart("eval_accuracy", fig, "Eval accuracy without templates, at the steps where the run evaluated "
                 "(points of equal value are shifted sideways to stay visible).", notes)


def dynamics_chart(runs: Sequence[RunSeries], styles: Mapping[str, Style]) -> Chart | None:
    """One panel per training metric that varies; the ones that never change are named in a note."""
    drawn, notes = panels(runs, DYNAMICS)
    notes = [n for n in notes if "no data" not in n]  # an engine or trainer that does not log it
    if not drawn:
        return undrawn("training_dynamics", notes)
    fig, axes = new_figure(*grid(len(drawn)), used=len(drawn))
    twins = {}
    for ax, (_, title, ylabel, series) in zip(axes, drawn):
        twins[title] = draw_runs(ax, series, styles, smoothing=0.6)
        step_axis(ax, runs, dense_ticks(runs, series))
        finish_axis(ax, title, "training step", ylabel, [y for _, ys in series.values() for y in ys])
    footnotes, said = twin_notes(twins)
    legend_outside(fig, axes, footnotes)
    notes += said
    return Chart("training_dynamics", fig, "Training dynamics per step (EMA 0.6, raw values faint).", notes)


def gepa_chart(runs: Sequence[RunSeries], styles: Mapping[str, Style]) -> Chart | None:
    """GEPA per epoch as grouped bars (one bar per run), the rollout budget as a line."""
    searched = [run for run in runs if run.series("gepa/templates")[0]]
    drawn, notes = panels(searched, GEPA_PANELS)
    if not drawn:
        return undrawn("gepa_per_epoch", notes)
    epochs = sorted({int(e) for run in searched for e in run.series("gepa/templates")[0]})
    fig, axes = new_figure(len(drawn), width=2.3)
    width = 0.8 / len(searched)
    for ax, (key, title, ylabel, series) in zip(axes, drawn):
        values: list[float] = []
        for i, run in enumerate(searched):
            xs, ys = series[run.name]
            style = styles[run.name]
            ax.bar([x + (i - (len(searched) - 1) / 2) * width for x in xs], ys, width * 0.92, color=style.color,
                   label=style.label, zorder=2)
            values += ys
        if key == "gepa/rollouts_spent":
            values += budget_lines(ax, searched)
        epoch_axis_ticks(ax, epochs)
        ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        bound = (0.0, 1.0) if key == "gepa/dev_coverage" else None
        finish_axis(ax, title, "epoch", ylabel, [0.0, *values], bound=bound, integer=key != "gepa/dev_coverage")
    legend_outside(fig, axes)
    return Chart("gepa_per_epoch", fig, "GEPA at each epoch's end: templates it kept, the share of its dev problems "
                 "some template solves, and the rollouts it spent. The search stops at the first iteration that "
                 "reaches the budget, so it can pass it by up to one iteration's rollouts.", notes)


def budget_lines(ax: Any, runs: Sequence[RunSeries]) -> list[float]:
    """GEPA's rollout budget of each run (one dashed line per distinct budget), named in the legend."""
    budgets = sorted({b for run in runs if (b := run.setting("gepa", "budget")) is not None})
    for budget, dash in zip(budgets, DASHES[1:] * len(budgets)):
        ax.axhline(budget, color="0.25", linestyle=dash, linewidth=0.9, zorder=3, label=f"GEPA budget ({budget:,})")
    return [float(b) for b in budgets]


def run_charts(runs: Sequence[RunSeries], styles: Mapping[str, Style]) -> list[Chart]:
    built = (reward_chart(runs, styles), hard_chart(runs, styles), eval_chart(runs, styles),
             dynamics_chart(runs, styles), gepa_chart(runs, styles))
    return [chart for chart in built if chart is not None]
