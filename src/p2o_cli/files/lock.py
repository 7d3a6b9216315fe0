"""One writer per directory: an exclusive ``flock`` on ``DIR/.p2o-lock``, held for the writer's life.

``p2o run`` takes it before it writes anything into its run directory, so a second run (or a
resume) on the same directory is refused at once, naming the process that holds it. The kernel
releases the lock when its process dies, however it dies, so a stale lock file of a dead process
is simply taken over. The file stays (deleting a lock file races with the next taker); it holds
the holder's pid, for the message. Where ``fcntl`` does not exist (Windows) nothing is locked.
"""

from __future__ import annotations

import os
from pathlib import Path

from .outputs import LOCK_FILE, OutputError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]


class DirectoryLock:
    """``with DirectoryLock(path):`` or ``lock = DirectoryLock(path).acquire()`` … ``lock.release()``."""

    def __init__(self, directory: str | os.PathLike[str]):
        self.directory = Path(directory)
        self._fd: int | None = None

    def acquire(self) -> DirectoryLock:
        """Take the lock or raise OutputError (exit status 2) naming the process that has it."""
        if fcntl is None or self._fd is not None:
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise OutputError(f"{self.directory}: in use by another p2o process (pid {holder}); wait for it to end "
                              "or use another directory") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None

    def __enter__(self) -> DirectoryLock:  # noqa: PYI034 - typing.Self needs Python 3.11
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
