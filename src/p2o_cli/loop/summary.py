"""Pieces of ``p2o run`` that need no model: the last eval, the closing summary."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from ..files.records import iter_json_lines
from ..monitor.progress import format_duration


@dataclass
class RunSummary:
    steps: int
    epochs: int
    hard_counts: list[int]
    final_eval: dict[str, float]
    wall_s: float = 0.0  # this process's
    checkpoint: str | None = None
    metrics: str | None = None
    no_signal_steps: int = 0  # train steps whose every advantage was 0


def last_eval(metrics_path: Path) -> dict[str, float]:
    """The last evaluation row of a metrics file, as ``{"eval/NAME/accuracy": value}``."""
    found: dict[str, float] = {}
    if metrics_path.is_file():
        for _, row in iter_json_lines(metrics_path, torn_tail=True):
            scores = {k: v for k, v in row.items() if k.startswith("eval/")}
            if scores:
                found = scores
    return found


def format_summary(summary: RunSummary, run_dir: str | Path) -> str:
    """The end of ``p2o run`` as a person reads it (one fact per line), ending with what to run next."""
    lines = [f"done: {summary.steps} train steps over {summary.epochs} epochs in {format_duration(summary.wall_s)}"]
    if summary.no_signal_steps:
        lines.append(f"train steps with no learning signal (every group's rewards equal): {summary.no_signal_steps} "
                     f"of {summary.steps}")
    if summary.hard_counts:
        lines.append("hard problems per epoch: " + " → ".join(str(c) for c in summary.hard_counts))
    if summary.final_eval:
        scores = ", ".join(f"{key.split('/')[1]} {value:.1f}%" for key, value in summary.final_eval.items())
        lines.append(f"final eval: {scores}")
    lines.append(f"run directory: {run_dir}")
    if summary.checkpoint:
        lines.append(f"final checkpoint: {summary.checkpoint}")
    if summary.metrics:
        lines.append(f"metrics: {summary.metrics}")
    lines.append(f"next: p2o report {shlex.quote(str(run_dir))}")
    return "\n".join(lines)
