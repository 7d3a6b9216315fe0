"""Progress display: a rich bar on a terminal, silence when piped."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from .engines import ProgressFn

console = Console(stderr=True)


def interactive() -> bool:
    return sys.stderr.isatty()


@contextmanager
def generation_progress(description: str, total: int) -> Iterator[ProgressFn]:
    """A callback ``(completions, tokens)`` (increments) that drives a bar with tokens/s."""
    if not interactive():
        yield lambda done, tokens: None
        return
    start = time.perf_counter()
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(description, total=total, rate="")
        tokens_total = 0

        def update(done: int, tokens: int) -> None:
            nonlocal tokens_total
            tokens_total += tokens
            rate = f"{tokens_total / max(time.perf_counter() - start, 1e-9):,.0f} tok/s"
            bar.update(task, advance=done, rate=rate)

        yield update
