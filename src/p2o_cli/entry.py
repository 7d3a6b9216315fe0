"""The ``p2o`` entry point: signals first, then the (slow to import) command line.

SIGTERM is handled like Ctrl-C: it raises KeyboardInterrupt in the main thread, so every
``finally`` runs (temporary outputs are removed), ``p2o run`` saves a checkpoint to resume
from, and the process exits with 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM)
after one line on stderr — also during the seconds of start-up spent importing torch.
A rank of a launched run ends before the interpreter's finalization (see
``_exit_without_finalization``).

While torch is importing, a signal is held back until the import ends: torch's start-up runs
Python from C++ that cannot pass an exception on, so a KeyboardInterrupt raised there aborts
the process (SIGABRT, "terminate called after throwing an instance of
'pybind11::error_already_set'") instead of unwinding it.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import time
from types import FrameType

from .errors import received_signals as _received


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the main thread was, so it unwinds as Ctrl-C does."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    del frame
    _received.append(signum)
    if _torch_is_importing():
        _deliver_after_torch_import(signum)
        return
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _torch_is_importing() -> bool:
    """Whether torch or one of its submodules is being imported now (its module object exists,
    its code has not finished running)."""
    for name, module in list(sys.modules.items()):
        if name == "torch" or name.startswith("torch."):
            if getattr(getattr(module, "__spec__", None), "_initializing", False):
                return True
    return False


_holders: list[threading.Thread] = []


def _deliver_after_torch_import(signum: int) -> None:
    """Send ``signum`` to the main thread again once torch's import has ended; its handler then
    raises where it is safe to. A real signal, not ``_thread.interrupt_main``, so that it also
    wakes a main thread blocked in a system call."""
    if any(holder.is_alive() for holder in _holders):
        return  # one is already waiting, and its signal ends the process

    def wait_then_deliver() -> None:
        while _torch_is_importing():
            time.sleep(0.01)
        signal.pthread_kill(threading.main_thread().ident, signum)

    holder = threading.Thread(target=wait_then_deliver, name="p2o-held-signal", daemon=True)
    _holders[:] = [holder]
    holder.start()


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


def _exit_without_finalization(code: object) -> None:
    """End one rank of a launched run: every exit handler runs (logging, the reward pool's
    semaphores, temporary directories), then the process ends before the interpreter's
    finalization. gloo's worker threads may still be freeing the last collectives' tensors,
    which needs the interpreter; one being finalized makes such a thread abort the process
    ("terminate called without an active exception", SIGABRT), and the launcher then reports
    a finished run as failed. (A torch issue: pytorch/pytorch#179291.)"""
    if isinstance(code, str):
        sys.stderr.write(code + "\n")  # what sys.exit does with a message
    status = 0 if code is None else code if isinstance(code, int) else 1
    # What the interpreter does first at exit, in its order: join the threads that are not
    # daemons, then run the exit handlers.
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _end_if_a_launched_rank(code: object) -> None:
    from .loop.dist import launched_world_size

    if launched_world_size() > 1:
        _exit_without_finalization(code)


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
        _end_if_a_launched_rank(exit_.code)
        raise
    if _received:
        _exit_interrupted()
    _end_if_a_launched_rank(0)
