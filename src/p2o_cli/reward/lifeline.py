"""A worker process that ends when the process that started it ends, however that one dies.

The reward pool's workers are forked from multiprocessing's forkserver, not from p2o itself,
so ``PR_SET_PDEATHSIG`` (which follows the direct parent) would not fire on ``kill -9`` of p2o:
each worker holds the forkserver's "alive" pipe open and the forkserver waits for it, and the
resource tracker waits for both. Instead each worker watches p2o's pid from a daemon thread —
on Linux by blocking on a pidfd (no polling: the thread sleeps in the kernel until p2o is
gone), elsewhere by checking once a second — and exits at once when it is gone. The
forkserver and the resource tracker then see their pipes close and exit by themselves.
"""

from __future__ import annotations

import os
import select
import threading
import time

_POLL_S = 1.0


def die_with(pid: int) -> None:
    """End this process (``os._exit``) as soon as process ``pid`` has ended."""
    if pid == os.getpid():
        return
    try:
        fd = os.pidfd_open(pid)  # type: ignore[attr-defined]  # Linux 5.3+, Python 3.9+
    except AttributeError:
        fd = None
    except ProcessLookupError:
        os._exit(1)  # already gone
    except OSError:  # a kernel without pidfds
        fd = None
    threading.Thread(target=_watch, args=(pid, fd), name="p2o-lifeline", daemon=True).start()


def _watch(pid: int, fd: int | None) -> None:
    if fd is not None:
        select.select([fd], [], [])  # readable once the process has exited
        os._exit(1)
    while _alive(pid):
        time.sleep(_POLL_S)
    os._exit(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pid reused by another user's process: ours is gone
        return False
    return True
