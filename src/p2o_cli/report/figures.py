"""`p2o report`: plots and a comparison table from one or more run directories.

Plots a researcher keeps: each run has one colour (and marker) in every plot, epoch axes
have integer ticks, the training reward is smoothed and split into plain and templated
rollouts, the training dynamics (KL, clip fraction, entropy, response length, truncation)
share one figure, and GEPA gets a per-epoch figure (templates kept, dev coverage, budget
spent). A series with one point or no spread gets an axis that starts at zero instead of a
±0.04 window around its value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ..errors import RecordError
from ..files.outputs import atomic_path
from ..files.records import iter_json_lines

EVAL_PREFIX = "eval/"
EVAL_SUFFIX = "/accuracy"
PER_EPOCH = ("epoch/", "gepa/")
# (metric key, panel title, bounded to [0, 1]?) for the training-dynamics figure.
DYNAMICS: tuple[tuple[str, str, bool], ...] = (
    ("actor/ppo_kl", "PPO KL (old → new)", False),
    ("actor/pg_clipfrac", "clip fraction", True),
    ("actor/entropy", "entropy (nats/token)", False),
    ("response_length/mean", "response length (tokens)", False),
    ("rollout/truncated_frac", "truncated responses", True),
)
# (metric key, panel title) for the per-epoch GEPA figure.
GEPA_PANELS: tuple[tuple[str, str], ...] = (
    ("gepa/templates", "templates kept (seed included)"),
    ("gepa/dev_coverage", "dev coverage"),
    ("gepa/rollouts_spent", "budget spent (rollouts)"),
)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


@dataclass
class RunSeries:
    name: str
    rows: list[dict[str, Any]]
    config: dict[str, Any]

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


def load_run(run_dir: str | Path) -> RunSeries:
    run = Path(run_dir)
    metrics = run / "metrics.jsonl"
    if not metrics.is_file():
        raise RecordError(run, None, "not a run directory (no metrics.jsonl)")
    rows = [obj for _, obj in iter_json_lines(metrics)]
    config_path = run / "config.json"
    config = orjson.loads(config_path.read_bytes()) if config_path.is_file() else {}
    return RunSeries(name=config.get("name") or run.name, rows=rows, config=config)


def comparison_table(runs: Sequence[RunSeries]) -> str:
    """Markdown: final eval accuracy per benchmark, first/last hard count, final train reward."""
    benches = sorted({k for run in runs for k in run.eval_keys()})
    header = [
        "run",
        *[k[len(EVAL_PREFIX) : -len(EVAL_SUFFIX)] for k in benches],
        "hard (first → last)",
        "train reward (last)",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in runs:
        cells = [run.name]
        for key in benches:
            value = run.last(key)
            cells.append("–" if value is None else f"{value:.1f}")
        hard = run.series("epoch/hard_count")[1]
        cells.append(f"{int(hard[0])} → {int(hard[-1])}" if hard else "–")
        reward = run.last("critic/rewards/mean")
        cells.append("–" if reward is None else f"{reward:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- pure helpers


def smooth(values: Sequence[float], weight: float) -> list[float]:
    """Exponential moving average with TensorBoard's debiasing: the first point is not pulled to 0."""
    out, last, norm = [], 0.0, 0.0
    for value in values:
        last = weight * last + (1 - weight) * value
        norm = weight * norm + (1 - weight)
        out.append(last / norm)
    return out


def y_limits(values: Sequence[float], bounded: float | None = None) -> tuple[float, float] | None:
    """Axis limits for a flat or one-point series (None: let matplotlib choose).

    A series whose spread is under 5% of its size would get a window of ±4% around its value,
    which reads as noise; it gets an axis from zero (or the bound) instead.
    """
    if not values:
        return None
    low, high = min(values), max(values)
    size = max(abs(low), abs(high))
    if high - low > 0.05 * size and len(values) > 1:
        return None
    if bounded is not None:
        return 0.0, bounded
    if size == 0:
        return 0.0, 1.0
    return (min(0.0, low * 1.2), max(0.0, high * 1.2))


def run_styles(runs: Sequence[RunSeries]) -> dict[str, dict[str, Any]]:
    """One colour and marker per run, fixed by its position in the command line, in every plot."""
    import matplotlib

    palette = matplotlib.colormaps["tab10"].colors
    return {run.name: {"color": palette[i % len(palette)], "marker": MARKERS[i % len(MARKERS)],
                       "linewidth": max(3.2 - 0.7 * i, 1.0), "markersize": max(7.0 - 1.2 * i, 3.0)}
            for i, run in enumerate(runs)}


# ---------------------------------------------------------------- figures


def _axis(ax: Any, title: str, xlabel: str, values: Sequence[float], bounded: float | None = None) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.grid(alpha=0.3)
    # Steps and epochs are counts: integer ticks, and a lone point gets a window of ±1, not ±0.05.
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    xs = [x for line in ax.get_lines() for x in line.get_xdata()]
    if xs and max(xs) - min(xs) < 2:
        ax.set_xlim(min(xs) - 1, max(xs) + 1)
    if bounded is None and values and all(float(v).is_integer() for v in values):
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts: no 1.2 templates
    limits = y_limits(values, bounded)
    if limits is not None:
        ax.set_ylim(*limits)
    elif bounded is not None:
        ax.set_ylim(0.0, bounded)
    elif values and min(values) >= 0 and all(float(v).is_integer() for v in values):
        ax.set_ylim(bottom=0)  # a count from 2 to 1 is not a collapse


def _plot(ax: Any, xs: list[float], ys: list[float], style: dict[str, Any], label: str | None, **kw: Any) -> None:
    # Earlier runs are drawn wider with larger hollow markers, so a run that lies exactly on
    # another still shows around it.
    ax.plot(xs, ys, color=style["color"], marker=style["marker"], markersize=style["markersize"],
            markerfacecolor="none", linewidth=style["linewidth"], label=label, **kw)


def save_figure(fig: Any, path: Path, rect: tuple[float, float, float, float] = (0, 0, 1, 1)) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout(rect=rect)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def plot_training_reward(runs: Sequence[RunSeries], styles: dict[str, dict[str, Any]], out: Path) -> Path | None:
    """Smoothed reward of plain (solid) and templated (dashed) rollouts; raw values faint."""
    import matplotlib.pyplot as plt

    if not any(run.series("rollout/plain_reward_mean")[0] for run in runs):
        return None
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    values: list[float] = []
    for run in runs:
        style = styles[run.name]
        for key, kind, dash in (("rollout/plain_reward_mean", "plain", "-"),
                                ("rollout/templated_reward_mean", "templated", "--")):
            xs, ys = run.series(key, where="rollout/templated_frac" if kind == "templated" else None)
            if not xs:
                continue
            ax.plot(xs, ys, color=style["color"], alpha=0.2, linewidth=0.8, linestyle=dash)
            ax.plot(xs, smooth(ys, 0.8), color=style["color"], linestyle=dash, linewidth=style["linewidth"],
                    label=f"{run.name} ({kind})")
            values += ys
    _axis(ax, "Training reward (EMA 0.8; raw faint)", "training step", values, bounded=1.0)
    ax.set_ylabel("mean reward")
    ax.legend(fontsize=7, ncol=2)
    return save_figure(fig, out / "training_reward.png")


def plot_panels(runs: Sequence[RunSeries], styles: dict[str, dict[str, Any]], panels: Sequence[tuple[str, str, bool]],
                title: str, path: Path, smoothing: float = 0.0) -> Path | None:
    """One panel per metric, all runs in each; the legend once."""
    import matplotlib.pyplot as plt

    present = [p for p in panels if any(run.series(p[0])[0] for run in runs)]
    if not present:
        return None
    cols = min(3, len(present))
    rows = -(-len(present) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows + 0.5), dpi=110, squeeze=False)
    for ax, (key, panel_title, bounded) in zip(axes.flat, present):
        values: list[float] = []
        for run in runs:
            xs, ys = run.series(key)
            if xs:
                _plot(ax, xs, smooth(ys, smoothing) if smoothing else ys, styles[run.name], run.name)
                values += ys
        _axis(ax, panel_title, "epoch" if key.startswith(PER_EPOCH) else "training step", values,
              1.0 if bounded else None)
    for ax in list(axes.flat)[len(present):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 4), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=11, y=0.995, x=0.01, ha="left")
    return save_figure(fig, path, rect=(0, 0, 1, 1 - 0.3 / (3.2 * rows + 0.5)))


def plot_single(runs: Sequence[RunSeries], styles: dict[str, dict[str, Any]], key: str, title: str, ylabel: str,
                path: Path, bounded: float | None = None) -> Path | None:
    import matplotlib.pyplot as plt

    if not any(run.series(key)[0] for run in runs):
        return None
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
    values: list[float] = []
    for run in runs:
        xs, ys = run.series(key)
        if xs:
            _plot(ax, xs, ys, styles[run.name], run.name)
            values += ys
    _axis(ax, title, "epoch" if key.startswith(PER_EPOCH) else "training step", values, bounded)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def write_report(run_dirs: Sequence[str | Path], out_dir: str | Path, compare_paper: bool = False) -> list[Path]:
    """Write the PNG plots (all runs overlaid) and report.md; return the files written.

    ``compare_paper`` adds the P²O paper's published figures beside each run's last eval."""
    import matplotlib

    matplotlib.use("Agg")
    runs = [load_run(d) for d in run_dirs]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    styles = run_styles(runs)
    eval_keys = sorted({k for run in runs for k in run.eval_keys()})
    written = [
        plot_training_reward(runs, styles, out),
        plot_single(runs, styles, "epoch/hard_count", "Hard problems per epoch", "hard problems",
                    out / "epoch_hard_count.png"),
        *[plot_single(runs, styles, key, f"Eval accuracy: {key[len(EVAL_PREFIX):-len(EVAL_SUFFIX)]}", "accuracy %",
                      out / (key.replace("/", "_") + ".png"), bounded=100.0) for key in eval_keys],
        plot_panels(runs, styles, DYNAMICS, "Training dynamics (EMA 0.6)", out / "training_dynamics.png", 0.6),
        plot_panels(runs, styles, [(k, t, k == "gepa/dev_coverage") for k, t in GEPA_PANELS],
                    "GEPA per epoch", out / "gepa_per_epoch.png"),
    ]
    files = [p for p in written if p is not None]
    table = comparison_table(runs)
    body = "# p2o report\n\n" + table + "\n" + "".join(f"![{p.stem}]({p.name})\n" for p in files)
    if compare_paper:
        from ..evaluation.paper import paper_markdown

        body += "\n## Beside the paper\n\n" + paper_markdown({run.name: run.last_eval() for run in runs})
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(body)
    return [*files, out / "report.md"]
