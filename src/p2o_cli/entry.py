"""The ``p2o`` entry point: signals first, then the (slow to import) command line.

SIGTERM is handled like Ctrl-C: it raises KeyboardInterrupt in the main thread, so every
``finally`` runs (temporary outputs are removed), ``p2o run`` saves a checkpoint to resume
from, and the process exits with 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM)
after one line on stderr — also during the seconds of start-up spent importing torch.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

from .errors import received_signals as _received


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the main thread was, so it unwinds as Ctrl-C does."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    del frame
    _received.append(signum)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def install_handlers() -> None:
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)


def _exit_interrupted() -> None:
    signum = _received[-1] if _received else int(signal.SIGINT)
    name = signal.Signals(signum).name
    # Later signals must not interrupt the exit itself.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.stderr.write(f"p2o: interrupted ({name}); outputs are whole or absent\n")
    sys.stderr.flush()
    sys.stdout.flush()
    _release_multiprocessing()
    # os._exit: the unwinding (every finally) is done; a normal exit after a KeyboardInterrupt
    # may be turned by the interpreter into death by SIGINT, which loses this status.
    os._exit(128 + signum)


def _release_multiprocessing() -> None:
    """Run multiprocessing's exit finalizers, which ``os._exit`` skips: they unlink the pools'
    semaphores, which the resource tracker would otherwise report as leaked after our line."""
    util = sys.modules.get("multiprocessing.util")
    if util is not None:
        try:
            util._run_finalizers(0)  # priority >= 0: the semaphores' and queues' clean-up, not process joins
        except Exception:  # noqa: BLE001 - exiting anyway; the tracker cleans up what is left
            pass


def main() -> None:
    install_handlers()
    try:
        from .cli import app

        app()
    except KeyboardInterrupt:  # before typer runs (imports) or after it returns
        _exit_interrupted()
    except SystemExit as exit_:
        # typer turns KeyboardInterrupt into exit status 130, silently; and a library may
        # swallow the KeyboardInterrupt (a bare except): the signal still decides the status.
        if exit_.code == 130 or _received:
            _exit_interrupted()
        raise
    if _received:
        _exit_interrupted()
