"""`p2o report` on runs one by one: the figures in the format asked for, report.md, and on
request report.html (the same, self-contained, with the GEPA explorer)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..evaluation.paper import paper_markdown
from ..files.outputs import atomic_path
from .explorer import run_explorer
from .figures import RunSeries, comparison_table, load_run, run_charts
from .page import page
from .style import Chart, assign_styles, paper_style, save

DPI = 200
SAMPLES = 12  # hard problems whose rollouts the explorer shows


def distinct_names(runs: Sequence[RunSeries]) -> list[RunSeries]:
    """Runs that share a name (seeds of one variant, outside --aggregate) get their seed or
    directory added, so each keeps its own colour and legend entry."""
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.name] = counts.get(run.name, 0) + 1
    for run in runs:
        if counts[run.name] > 1:
            seed = run.config.get("seed")
            run.name = f"{run.name} (seed {seed})" if seed is not None else f"{run.name} ({run.path})"
    return list(runs)


def sentences(notes: Sequence[str]) -> str:
    return "".join(f" {note[0].upper()}{note[1:]}." for note in notes)


def figures_markdown(charts: Sequence[Chart], files: Sequence[Path]) -> str:
    """An image line per figure with its caption and notes in italics below it, then what was
    not drawn at all."""
    drawn = [chart for chart in charts if chart.figure is not None]
    blocks = [f"![{chart.name}]({path.name})\n\n*{chart.caption}{sentences(chart.notes)}*\n"
              for chart, path in zip(drawn, files)]
    left_out = [note for chart in charts if chart.figure is None for note in chart.notes]
    if left_out:
        blocks.append(f"Not drawn:{sentences(left_out)}\n")
    return "\n".join(blocks)


def write_text(path: Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def write_files(out: Path, charts: Sequence[Chart], head: str, tail: str, fmt: str, dpi: int, html: bool,
                title: str, configs: Mapping[str, dict[str, Any]], explorers: Sequence[dict[str, Any]] = ()
                ) -> list[Path]:
    """The figure files, report.md (``head``, the figures, ``tail``) and report.html if asked;
    the paths written."""
    files = [save(chart, out, fmt, dpi) for chart in charts if chart.figure is not None]
    body = head + figures_markdown(charts, files) + tail
    written = [*files, write_text(out / "report.md", body)]
    if html:
        written.append(write_text(out / "report.html", page(title, body, charts, dpi, configs, explorers)))
    return written


def write_report(run_dirs: Sequence[str | Path], out_dir: str | Path, *, compare_paper: bool = False,
                 fmt: str = "png", dpi: int = DPI, html: bool = False, labels: Mapping[str, str] | None = None,
                 samples: int = SAMPLES) -> list[Path]:
    """The figures (all runs overlaid), report.md and, with ``html``, report.html; the files written.

    ``labels`` maps run names to what the figures call them (and fixes their colours, in its
    order); ``compare_paper`` adds the P²O paper's published figures beside each run's last eval."""
    runs = distinct_names([load_run(d) for d in run_dirs])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels = labels or {}
    with paper_style():
        styles = assign_styles([run.name for run in runs], labels, canonical=list(labels))
        charts = run_charts(runs, styles)
        head = "# p2o report\n\n" + comparison_table(runs, labels) + "\n"
        tail = ""
        if compare_paper:
            tail = "\n## Beside the paper\n\n" + paper_markdown({styles[r.name].label: r.last_eval() for r in runs})
        explorers = []
        if html:
            explorers = [e for run in runs if run.path is not None
                         and (e := run_explorer(run.name, styles[run.name].label, run.path, samples)) is not None]
        configs = {styles[run.name].label: run.config for run in runs}
        return write_files(out, charts, head, tail, fmt, dpi, html, "p2o report: " + ", ".join(configs), configs,
                           explorers)
