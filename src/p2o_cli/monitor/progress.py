"""Progress that works everywhere: a rich bar on a terminal, timestamped lines in logs.

On a terminal, :func:`generation_progress` draws a bar that advances as the engine reports
finished completions. When stderr is not a terminal (nohup, SLURM, CI, ``2> log``), it writes
one line every ``interval`` seconds instead — done/total, rate, tokens/s, elapsed and ETA —
from a heartbeat thread, so a long engine call still shows it is alive. The interval comes
from ``P2O_PROGRESS_INTERVAL`` (seconds, default 20).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ..engines import ProgressFn
from ..errors import P2OError

console = Console(stderr=True)

DEFAULT_INTERVAL_S = 20.0
Clock = Callable[[], float]


def interactive() -> bool:
    return sys.stderr.isatty()


def progress_interval() -> float:
    """Seconds between progress lines off a terminal (``P2O_PROGRESS_INTERVAL``)."""
    raw = os.environ.get("P2O_PROGRESS_INTERVAL")
    if raw is None:
        return DEFAULT_INTERVAL_S
    try:
        value = float(raw)
    except ValueError:
        raise P2OError(f"P2O_PROGRESS_INTERVAL must be a number of seconds, got {raw!r}") from None
    if not value > 0:
        raise P2OError(f"P2O_PROGRESS_INTERVAL must be > 0, got {raw!r}")
    return value


def format_duration(seconds: float) -> str:
    """``75`` → ``1:15``, ``3725`` → ``1:02:05``."""
    seconds = max(int(round(seconds)), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def timestamp(epoch_seconds: float | None = None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() if epoch_seconds is None else epoch_seconds))


class LineProgress:
    """Timestamped progress lines for logs: at most one per ``interval``, plus a final one.

    ``clock`` measures elapsed time (injectable for tests); the printed timestamp is the wall
    time at start plus that elapsed time.
    """

    def __init__(self, description: str, total: int, stream: TextIO, interval: float, clock: Clock = time.monotonic):
        self.description, self.total, self.stream, self.interval, self.clock = (
            description,
            total,
            stream,
            interval,
            clock,
        )
        self.done = 0
        self.tokens = 0
        self.start = clock()
        self.wall_start = time.time()
        self.last_line = self.start
        self.lines = 0
        self._lock = threading.Lock()

    def update(self, done: int, tokens: int) -> None:
        with self._lock:
            self.done += done
            self.tokens += tokens
        self.tick()

    def tick(self) -> None:
        """Print a line if ``interval`` has passed since the last one."""
        with self._lock:
            now = self.clock()
            if now - self.last_line < self.interval:
                return
            self.last_line = now
            self._write(now)

    def finish(self, always: bool = True) -> None:
        """The closing line (with ``always=False`` only after a long task that printed lines already)."""
        with self._lock:
            if always or self.lines:
                self._write(self.clock(), final=True)

    def line(self, now: float, final: bool = False) -> str:
        elapsed = max(now - self.start, 0.0)
        rate = self.done / elapsed if elapsed > 0 else 0.0
        parts = [timestamp(self.wall_start + elapsed), self.description, f"{self.done}/{self.total}"]
        if self.total:
            parts.append(f"({100 * self.done / self.total:.0f}%)")
        parts.append(f"{rate:.2f}/s")
        if self.tokens:
            parts.append(f"{self.tokens / elapsed if elapsed > 0 else 0.0:,.0f} tok/s")
        parts.append(f"elapsed {format_duration(elapsed)}")
        if final:
            parts.append("done")
        elif self.done and self.total:
            parts.append(f"eta {format_duration((self.total - self.done) / rate)}")
        else:
            parts.append("eta ?")
        return " ".join(parts)

    def _write(self, now: float, final: bool = False) -> None:
        self.lines += 1
        self.stream.write(self.line(now, final) + "\n")
        self.stream.flush()


@contextmanager
def _heartbeat(progress: LineProgress, period: float) -> Iterator[None]:
    """Call ``progress.tick()`` every ``period`` seconds while an engine call blocks."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(period):
            progress.tick()

    thread = threading.Thread(target=beat, name="p2o-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextmanager
def line_progress(
    description: str,
    total: int,
    *,
    stream: TextIO | None = None,
    interval: float | None = None,
    clock: Clock = time.monotonic,
    heartbeat: bool = True,
    quiet_when_short: bool = False,
) -> Iterator[ProgressFn]:
    """A ``(completions, tokens)`` callback writing :class:`LineProgress` lines to ``stream``."""
    interval = progress_interval() if interval is None else interval
    progress = LineProgress(description, total, stream or sys.stderr, interval, clock)
    beat = _heartbeat(progress, min(interval, 1.0)) if heartbeat else _null()
    with beat:
        yield progress.update
    progress.finish(always=not quiet_when_short)


@contextmanager
def _null() -> Iterator[None]:
    yield


@contextmanager
def generation_progress(description: str, total: int, transient: bool = False) -> Iterator[ProgressFn]:
    """A callback ``(completions, tokens)`` (increments): a bar on a terminal, else log lines.

    ``transient``: for a task inside a loop (``p2o run``'s rollouts) — the bar disappears when
    done, and in logs a task shorter than the interval prints nothing.
    """
    if not interactive():
        with line_progress(description, total, quiet_when_short=transient) as update:
            yield update
        return
    start = time.perf_counter()
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=transient) as bar:
        task = bar.add_task(description, total=total, rate="")
        tokens_total = 0

        def update(done: int, tokens: int) -> None:
            nonlocal tokens_total
            tokens_total += tokens
            rate = f"{tokens_total / max(time.perf_counter() - start, 1e-9):,.0f} tok/s"
            bar.update(task, advance=done, rate=rate)

        yield update


def say(message: str) -> None:
    """One line on stderr: as it is on a terminal, with a timestamp in logs."""
    if interactive():
        console.print(message, highlight=False)
    else:
        sys.stderr.write(f"{timestamp()} {message}\n")
        sys.stderr.flush()


def warn(message: str) -> None:
    """``p2o: warning: …`` on stderr (a silent surprise made loud)."""
    if interactive():
        console.print(f"[yellow]p2o: warning:[/] {message}", highlight=False)
    else:
        sys.stderr.write(f"p2o: warning: {message}\n")
        sys.stderr.flush()


def setup_logging(level: int | str = logging.INFO) -> None:
    """Timestamped log lines from p2o's own modules (e.g. the reflector's retries) on stderr."""
    logger = logging.getLogger("p2o_cli")
    logger.setLevel(level)
    if not any(getattr(h, "_p2o", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname).1s %(message)s", "%Y-%m-%d %H:%M:%S"))
        handler._p2o = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
