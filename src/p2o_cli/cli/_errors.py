"""One map from exceptions to what the user sees and the exit status.

The user's mistakes (:class:`~p2o_cli.errors.P2OError`, bad record files, unreadable paths, a server
that cannot be reached or answers with an error, a corrupt weights file, memory or disk running
out) print one line and exit 2. Anything else is a bug in p2o: it exits 1 with a one-line summary
and says how to see the traceback (``P2O_DEBUG=1`` or ``p2o --debug``), which then prints in full.
Every line passes through :func:`~p2o_cli.errors.redact` first: no API key reaches the terminal,
whatever a server echoed back. An error that follows a Ctrl-C or SIGTERM is the interrupt.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

import typer

from ..errors import one_line, received_signals, redact
from ..loop.dist import launched_world_size

EXIT_BUG = 1
EXIT_BAD_INPUT = 2


def debug_enabled() -> bool:
    return os.environ.get("P2O_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def _first_line(err: BaseException) -> str:
    return one_line(str(err)) or type(err).__name__


def _user_error_types() -> tuple[type[BaseException], ...]:
    """Exception types that mean "fix your input"; library types only if their library is loaded."""
    from ..errors import P2OError, RecordError

    types: list[type[BaseException]] = [P2OError, RecordError, OSError, MemoryError]
    if "openai" in sys.modules:
        import openai

        # Any answer a server gives after the retries (401, 404, 500 …) and no answer at all.
        types += [openai.APIConnectionError, openai.APIStatusError]
    if "safetensors" in sys.modules:
        from safetensors import SafetensorError

        types.append(SafetensorError)
    return tuple(types)


def describe(err: BaseException) -> tuple[int, str]:
    """(exit status, message) for an exception that escaped a command."""
    message = redact(_first_line(err))
    if isinstance(err, _user_error_types()):
        if type(err).__name__ == "SafetensorError":
            message = f"corrupt or truncated weights file: {message}"
        elif isinstance(err, MemoryError):
            message = f"out of memory{': ' + message if message != 'MemoryError' else ''}"
        return EXIT_BAD_INPUT, message
    return EXIT_BUG, f"internal error ({type(err).__name__}): {message}"


@contextmanager
def reported_errors() -> Iterator[None]:
    """Run a command body; turn what escapes it into one line on stderr and an exit status."""
    try:
        yield
    except (typer.Exit, typer.Abort, SystemExit, KeyboardInterrupt):
        raise  # Ctrl-C and SIGTERM unwind to the entry point, which reports them (entry.py)
    except Exception as err:  # noqa: BLE001 - this is the one place that decides what the user sees
        if received_signals:
            raise KeyboardInterrupt from None  # a library swallowed the interrupt and failed after it
        code, message = describe(err)
        if debug_enabled():
            sys.stderr.write(redact(traceback.format_exc()))
        # Under accelerate launch/torchrun every rank may report the same error: say whose it is.
        rank = os.environ.get("RANK", "0") if launched_world_size() > 1 else "0"
        typer.echo(f"p2o: error: {message}" if rank == "0" else f"p2o: error (rank {rank}): {message}", err=True)
        if code == EXIT_BUG and not debug_enabled():
            typer.echo("p2o: this is a bug in p2o; run again with P2O_DEBUG=1 (or p2o --debug …) to see the "
                       "traceback, and report it", err=True)
        raise typer.Exit(code) from None
