"""`p2o report`: plots and a comparison table from one or more run directories."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .records import RecordError, atomic_path, iter_json_lines

# (metric key, plot title, y label); the loop writes these names into metrics.jsonl.
PLOTS: tuple[tuple[str, str, str], ...] = (
    ("critic/rewards/mean", "Training reward", "mean reward"),
    ("epoch/hard_count", "Hard problems per epoch", "hard problems"),
    ("gepa/dev_coverage", "GEPA dev coverage", "fraction of dev solved"),
)
EVAL_PREFIX = "eval/"
EVAL_SUFFIX = "/accuracy"


@dataclass
class RunSeries:
    name: str
    rows: list[dict[str, Any]]
    config: dict[str, Any]

    def series(self, key: str) -> tuple[list[float], list[float]]:
        """(x, y) for one metric; x is the training step, or the epoch for per-epoch metrics."""
        xs, ys = [], []
        for row in self.rows:
            if key in row and row[key] is not None:
                xs.append(row.get("epoch" if key.startswith(("epoch/", "gepa/")) else "training/step", len(xs)))
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
    header = ["run", *[k[len(EVAL_PREFIX) : -len(EVAL_SUFFIX)] for k in benches], "hard (first → last)", "train reward (last)"]
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


def write_report(run_dirs: Sequence[str | Path], out_dir: str | Path, compare_paper: bool = False) -> list[Path]:
    """Write one PNG per metric (all runs overlaid) and report.md; return the files written.

    ``compare_paper`` adds the P²O paper's published figures beside each run's last eval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [load_run(d) for d in run_dirs]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    eval_keys = sorted({k for run in runs for k in run.eval_keys()})
    plots = list(PLOTS) + [(k, f"Eval accuracy: {k[len(EVAL_PREFIX):-len(EVAL_SUFFIX)]}", "accuracy %") for k in eval_keys]
    written: list[Path] = []
    for key, title, ylabel in plots:
        if not any(run.series(key)[0] for run in runs):
            continue
        fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
        for run in runs:
            xs, ys = run.series(key)
            if xs:
                ax.plot(xs, ys, marker="o", markersize=3, label=run.name)
        ax.set_title(title)
        ax.set_xlabel("epoch" if key.startswith(("epoch/", "gepa/")) else "training step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        name = key.replace("/", "_") + ".png"
        with atomic_path(out / name) as tmp:
            fig.savefig(tmp, format="png")
        plt.close(fig)
        written.append(out / name)
    table = comparison_table(runs)
    body = "# p2o report\n\n" + table + "\n" + "".join(f"![{p.stem}]({p.name})\n" for p in written)
    if compare_paper:
        from .paper import paper_markdown

        body += "\n## Beside the paper\n\n" + paper_markdown({run.name: run.last_eval() for run in runs})
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(body)
    written.append(out / "report.md")
    return written
