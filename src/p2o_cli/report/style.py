"""How p2o's figures look: one colour and marker per run in every figure, legends outside the
axes, ticks where data exists, axes scaled to the data, and files in the format a paper needs.

The palette is Okabe and Ito's (distinguishable with the common colour-vision deficiencies);
the marker and the line style change with the colour, so the runs stay apart in grey print
too. Runs whose values coincide are told apart by a note in the legend ("= GRPO") and a small
sideways shift of their markers, so no run hides behind another.
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..files.outputs import atomic_path

FORMATS = ("png", "svg", "pdf")
# Okabe & Ito (2008), the yellow last: it is faint on white.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
DASHES = ("-", "--", "-.", ":")
# A paper's look: small type that stays readable at a column's width, no top and right spines.
RC: dict[str, Any] = {
    "font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8, "xtick.labelsize": 7.5, "ytick.labelsize": 7.5,
    "legend.fontsize": 7.5, "legend.frameon": False, "axes.spines.top": False, "axes.spines.right": False,
    "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.6, "lines.linewidth": 1.5, "lines.markersize": 4.5,
    "figure.constrained_layout.use": True,
    # Editable text in PDFs (TrueType, not Type 3, which some publishers refuse); stable SVG ids.
    "pdf.fonttype": 42, "svg.hashsalt": "p2o",
}
# No timestamps or versions in the files, so a report made twice from the same runs is the same.
METADATA = {"png": {"Software": None}, "svg": {"Date": None, "Creator": None},
            "pdf": {"CreationDate": None, "Creator": None, "Producer": None}}


@dataclass(frozen=True)
class Style:
    label: str  # the legend's name for the run
    color: str
    marker: str
    dash: str
    order: int  # position among the report's runs: the sideways shift and the marker phase


def assign_styles(names: Sequence[str], labels: Mapping[str, str] | None = None,
                  canonical: Sequence[str] = ()) -> dict[str, Style]:
    """A style per run name. A name in ``canonical`` takes the colour of its place there (so GRPO
    has the same colour in every report, whichever variants it holds); other names take the
    colours no such name holds, in their order. ``labels`` maps names to what the legend says
    (the paper's names)."""
    labels = labels or {}
    unique = list(dict.fromkeys(names))
    slots = {name: list(canonical).index(name) for name in unique if name in canonical}
    free = (i for i in itertools.count() if i not in slots.values())
    slots.update({name: next(free) for name in unique if name not in slots})
    return {name: Style(labels.get(name, name), PALETTE[slots[name] % len(PALETTE)],
                        MARKERS[slots[name] % len(MARKERS)], DASHES[(slots[name] // len(PALETTE)) % len(DASHES)],
                        order) for order, name in enumerate(unique)}


# ---------------------------------------------------------------- pure helpers


def identical_to(series: Mapping[str, tuple[Sequence[float], Sequence[float]]]) -> dict[str, str]:
    """name -> the earlier name whose (x, y) points are exactly the same (runs drawn on top of it)."""
    seen: dict[tuple[tuple[float, ...], tuple[float, ...]], str] = {}
    out: dict[str, str] = {}
    for name, (xs, ys) in series.items():
        if not xs:
            continue
        key = (tuple(xs), tuple(round(y, 12) for y in ys))
        if key in seen:
            out[name] = seen[key]
        else:
            seen[key] = name
    return out


def constant_value(values: Iterable[float]) -> float | None:
    """The one value every point has (None if they differ or there are none)."""
    distinct = {round(v, 12) for v in values}
    return distinct.pop() if len(distinct) == 1 else None


def flat_note(title: str, values: Sequence[float]) -> str | None:
    """Why a panel is not worth drawing (None: draw it): no data, or one value at every point of
    every run (a single point counts only when it is zero: a panel of one empty bar)."""
    if not values:
        return f"{title}: no data in any run (not drawn)"
    value = constant_value(values)
    if value is None or (len(values) == 1 and value != 0):
        return None
    return f"{title}: {value:g} at every point of every run (not drawn)"


def grid(count: int) -> tuple[int, int]:
    """(columns, rows) for ``count`` panels: one row up to three, then two or three columns."""
    if count <= 3:
        return count, 1
    columns = 2 if count == 4 else 3
    return columns, -(-count // columns)


def dodge(order: int, count: int, spacing: float, share: float = 0.08) -> float:
    """A sideways shift for run ``order`` of ``count`` so equal points stay visible side by side:
    spread over ``share`` of the gap between neighbouring x values, centred on zero."""
    if count < 2:
        return 0.0
    return (order - (count - 1) / 2) * spacing * share / (count - 1) * 2


def spacing(xs: Iterable[float]) -> float:
    """The smallest gap between distinct x values (1 for a single value)."""
    values = sorted(set(xs))
    gaps = [b - a for a, b in zip(values, values[1:])]
    return min(gaps) if gaps else 1.0


def data_limits(values: Sequence[float], bound: tuple[float, float] | None = None, pad: float = 0.08,
                least: float = 0.1) -> tuple[float, float] | None:
    """y limits that fit the data with a margin, kept inside ``bound`` (e.g. 0–100 for a percentage).

    The window spans at least ``least`` of the values' size, so 294 → 293 is not drawn as a
    plunge; counts and fractions near zero start at zero (a fall from 10 to 5 is not a collapse
    to nothing); a single value or a flat series gets an axis from zero rather than ±0.05.
    """
    if not values:
        return None
    low, high = min(values), max(values)
    size = max(abs(low), abs(high)) or 1.0
    if high == low:
        lower, upper = (0.0 if low >= 0 else low - pad * size), high + pad * size
    else:
        span = max(high - low, least * size)
        centre = (high + low) / 2
        lower, upper = centre - (0.5 + pad) * span, centre + (0.5 + pad) * span
        if low >= 0 and (low <= 0.35 * high or lower < 0):
            lower = 0.0
    if bound is not None:
        lower, upper = max(lower, bound[0]), min(upper, bound[1])
    return lower, upper


def thin_ticks(positions: Sequence[float], most: int = 11) -> list[float]:
    """Ticks at the data's x values; every n-th when there are too many (the first and last kept)."""
    ticks = sorted(set(positions))
    if len(ticks) <= most:
        return ticks
    kept = ticks[:: math.ceil((len(ticks) - 1) / (most - 1))]
    return kept if kept[-1] == ticks[-1] else [*kept, ticks[-1]]


# ---------------------------------------------------------------- figures


@dataclass
class Chart:
    """A figure and what the report says about it."""

    name: str  # file stem
    figure: Figure | None  # None: no panel was worth drawing, only the notes say why
    caption: str
    notes: list[str] = field(default_factory=list)


@contextmanager
def paper_style() -> Any:
    """The look above, for building figures and for writing them (some settings act at save time)."""
    with matplotlib.rc_context(RC):
        yield


LEGEND_CELL = "legend"  # the label of a spare grid cell that holds the legend


def new_figure(columns: int, rows: int = 1, width: float = 2.6, height: float = 2.1,
               legend_width: float = 1.5, used: int | None = None, **kw: Any) -> tuple[Figure, list[Any]]:
    """A grid of panels and the first ``used`` of them (default all). The legend goes in the
    first spare cell if the grid has one (others are removed: no empty frame is left), else in
    ``legend_width`` inches of room right of the panels.

    A bare ``Figure``, not pyplot's: no backend, no window, nothing global to close."""
    spare = used is not None and used < rows * columns
    fig = Figure(figsize=(width * columns + (0 if spare else legend_width), height * rows))
    axes = list(fig.subplots(rows, columns, squeeze=False, **kw).flat)
    used = len(axes) if used is None else used
    for i, ax in enumerate(axes[used:]):
        if i == 0:
            ax.set_axis_off()
            ax.set_label(LEGEND_CELL)
        else:
            ax.remove()
    return fig, axes[:used]


def legend_outside(fig: Figure, axes: Iterable[Any], footnotes: Sequence[str] = ()) -> None:
    """One legend for the figure with each entry once, in the spare cell of the grid or right of
    the panels; ``footnotes`` (runs drawn on top of each other) in a second block below it."""
    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    cell = next((ax for ax in fig.axes if ax.get_label() == LEGEND_CELL), None)
    title = "identical values:\n" + "\n".join(footnotes)
    if cell is not None:
        if entries:
            cell.add_artist(cell.legend(list(entries.values()), list(entries), loc="upper left"))
        if footnotes:
            cell.legend([], [], loc="lower left", title=title, title_fontsize=6.5, alignment="left")
        return
    if entries:
        fig.legend(list(entries.values()), list(entries), loc="outside right upper")
    if footnotes:
        fig.legend([], [], loc="outside right lower", title=title, title_fontsize=6.5, alignment="left")


def set_x_ticks(ax: Any, positions: Sequence[float], labels: Sequence[str] | None = None) -> None:
    ticks = thin_ticks(positions)
    ax.set_xticks(ticks, labels if labels is not None and len(labels) == len(ticks) else None)
    ax.set_xticks([], minor=True)
    low, high = min(ticks), max(ticks)
    # Room for the sideways shift of equal points (see dodge) at both ends.
    margin = spacing(positions) * 0.5 if high == low else max((high - low) * 0.04, spacing(positions) * 0.15)
    ax.set_xlim(low - margin, high + margin)


def finish_axis(ax: Any, title: str, xlabel: str, ylabel: str, values: Sequence[float],
                bound: tuple[float, float] | None = None, integer: bool = False) -> None:
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    limits = data_limits(values, bound)
    if limits is not None:
        ax.set_ylim(*limits)
    if integer:
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def epoch_lines(ax: Any, boundaries: Sequence[float]) -> None:
    """Faint vertical lines where an epoch ends (the prompt phase runs there)."""
    for x in boundaries:
        ax.axvline(x, color="0.6", linewidth=0.6, linestyle=":", zorder=0)


def render(fig: Figure, fmt: str, dpi: int) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=dpi, metadata=METADATA[fmt])
    return buffer.getvalue()


def save(chart: Chart, out: Path, fmt: str, dpi: int) -> Path:
    path = out / f"{chart.name}.{fmt}"
    data = render(chart.figure, fmt, dpi)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path
