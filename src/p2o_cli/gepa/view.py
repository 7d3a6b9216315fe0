"""A rich live view of the GEPA front while the search runs (terminal only)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..monitor.progress import console, format_duration, say
from ..reward.values import solved
from .pareto import mean_score
from .search import GepaProgress


def front_table(progress: GepaProgress, max_rows: int = 16) -> Group:
    m = progress.metrics
    header = Text(
        f"GEPA iteration {progress.iteration} · {m['gepa/spent']:,}/{progress.budget:,} rollouts · "
        f"{len(progress.templates)} templates · front {len(progress.front)} · "
        f"best dev {m['gepa/best_dev_mean']:.3f} · coverage {m['gepa/dev_coverage']:.3f}",
        style="bold",
    )
    table = Table(show_edge=False, pad_edge=False)
    for name, justify in (("id", "left"), ("parent", "left"), ("iter", "right"), ("dev", "right"),
                          ("solved", "right"), ("template", "left")):
        table.add_column(name, justify=justify, no_wrap=name != "template")
    ranked = sorted(progress.front, key=mean_score, reverse=True)
    for t in ranked[:max_rows]:
        preview = " ".join(t.text.split())
        preview = (preview[:90] + "…") if len(preview) > 90 else (preview or "(empty)")
        table.add_row(t.template_id, t.parent_id or "", str(t.iteration), f"{mean_score(t):.3f}",
                      str(int(sum(solved(s) for s in t.dev_scores))), preview)
    if len(ranked) > max_rows:
        table.add_row("…", "", "", "", "", f"{len(ranked) - max_rows} more on the front")
    return Group(header, table)


def progress_line(progress: GepaProgress, elapsed_s: float) -> str:
    """One log line per iteration: where the search is, what it has spent and what is left."""

    m = progress.metrics
    spent = int(m["gepa/spent"])
    line = (
        f"GEPA iteration {progress.iteration}: budget {spent:,}/{progress.budget:,} rollouts spent "
        f"({max(progress.budget - spent, 0):,} left), {len(progress.templates)} templates, "
        f"front {len(progress.front)}, best dev {m['gepa/best_dev_mean']:.3f}, "
        f"coverage {m['gepa/dev_coverage']:.3f}"
    )
    if "gepa/kept" in m:
        line += f", kept {m['gepa/kept']} of {m.get('gepa/proposals', 0)} this iteration"
    return line + f", elapsed {format_duration(elapsed_s)}"


@contextmanager
def live_front(enabled: bool) -> Iterator[Callable[[GepaProgress], None] | None]:
    """An ``on_iteration`` hook: a redrawn front on a terminal, else one timestamped line per iteration."""
    if not enabled:
        start = time.monotonic()
        yield lambda progress: say(progress_line(progress, time.monotonic() - start))
        return

    with Live(Text("GEPA: scoring the seed template on dev…"), console=console, refresh_per_second=2) as live:
        yield lambda progress: live.update(front_table(progress))
