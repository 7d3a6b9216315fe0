"""Where p2o writes: atomic replacement, checks made before any compute, and crash recovery.

Rules (docs/guarantees.md):

- a file output never replaces a directory;
- a checkpoint output replaces only a directory that is recognisably a p2o checkpoint;
- the current directory, or any directory above it, is never an output;
- every output is written beside its target as ``.<name>.p<pid>.<random>.tmp`` and renamed
  into place; a temp of that naming whose process is gone is swept on the next write there;
- a directory is swapped in by ``target → .<name>.old``, ``new → target``; a kill between the
  two renames leaves ``.<name>.old``, which :func:`recover_swap` (called by every later write
  and by checkpoint loading) renames back.

This module imports nothing of p2o's, so records.py may use it.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from ..errors import P2OError
from .faults import fault

STDIO = "-"
OutputKind = Literal["file", "checkpoint", "dir"]
# Files that only a checkpoint written by p2o (train-step, run) holds together.
CHECKPOINT_MARKERS = ("config.json", "trainer_state.json")
_TEMP = re.compile(r"^\.(?P<name>.+)\.p(?P<pid>\d+)\.[^.]+\.tmp$")


class OutputError(P2OError):
    """An output path p2o refuses to write (exit status 2, one line)."""


def _fault(point: str) -> None:
    """The fault-injection hook (``P2O_FAULT``), imported late so this module stays a leaf."""
    if os.environ.get("P2O_FAULT"):
        fault(point)


def is_p2o_checkpoint(path: str | os.PathLike[str]) -> bool:
    """A directory holding what only a p2o train-step checkpoint holds together."""
    root = Path(path)
    return root.is_dir() and all((root / name).is_file() for name in CHECKPOINT_MARKERS)


def _is_cwd_or_above(path: Path) -> bool:
    here = Path.cwd().resolve()
    target = path.resolve()
    return target == here or target in here.parents


def check_output_path(path: str | os.PathLike[str], kind: OutputKind = "file") -> None:
    """Refuse (OutputError) an output p2o must not or cannot write; call before any compute.

    ``kind``: ``file`` (JSONL/JSON), ``checkpoint`` (a train-step directory) or ``dir`` (a
    directory p2o creates and fills, such as a run or report directory: any existing one is
    kept and written into).
    """
    if str(path) == STDIO:
        return
    target = Path(path)
    if str(path).strip() == "" or _is_cwd_or_above(target):
        raise OutputError(f"{path}: the current directory (or one above it) cannot be an output; name a new path")
    if target.exists() or target.is_symlink():
        if kind == "file" and target.is_dir():
            raise OutputError(f"{path}: is a directory; a file output never replaces a directory")
        if kind == "checkpoint" and not target.is_dir():
            raise OutputError(f"{path}: exists and is not a directory; a checkpoint never replaces a file")
        if kind == "checkpoint" and any(target.iterdir()) and not is_p2o_checkpoint(target):
            raise OutputError(
                f"{path}: is a directory but not a p2o checkpoint (no {' and '.join(CHECKPOINT_MARKERS)}); "
                "refusing to replace it"
            )
        if kind == "dir" and not target.is_dir():
            raise OutputError(f"{path}: exists and is not a directory")
    _check_writable(target.parent if kind != "dir" else target)


def _check_writable(directory: Path) -> None:
    """The nearest existing ancestor must be a directory we can create a file in."""
    probe_dir = directory
    while not probe_dir.exists():
        if probe_dir.parent == probe_dir:
            break
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise OutputError(f"{probe_dir}: is not a directory, so nothing can be written under it")
    try:
        fd, name = tempfile.mkstemp(prefix=f".p2o-probe.p{os.getpid()}.", suffix=".tmp", dir=probe_dir)
    except OSError as err:
        raise OutputError(f"{probe_dir}: cannot write here ({err.strerror or err})") from None
    os.close(fd)
    os.unlink(name)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_temps(directory: Path, name: str | None = None) -> list[Path]:
    """Remove p2o temp files/dirs in ``directory`` (for target ``name``, or any) whose writer is dead."""
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for entry in directory.iterdir():
        match = _TEMP.match(entry.name)
        if not match or (name is not None and match["name"] != name) or _pid_alive(int(match["pid"])):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def recover_swap(target: str | os.PathLike[str]) -> bool:
    """Finish or undo a directory swap a kill interrupted; True when ``.old`` was restored."""
    path = Path(target)
    old = path.with_name(f".{path.name}.old")
    if not old.is_dir():
        return False
    if path.exists():
        shutil.rmtree(old, ignore_errors=True)  # the swap completed; only the cleanup was lost
        return False
    old.rename(path)
    print(f"p2o: restored {path} from {old.name} (an earlier write was interrupted)", file=sys.stderr)
    return True


@contextmanager
def atomic_path(path: str | os.PathLike[str], *, suffix: str = "", kind: OutputKind = "file") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds.

    ``kind="file"`` never replaces a directory; ``kind="checkpoint"`` replaces a directory only
    when it is a p2o checkpoint (and says so on stderr).
    """
    target = Path(path)
    recover_swap(target)
    check_output_path(target, kind)
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temps(target.parent, target.name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.p{os.getpid()}.", suffix=".tmp", dir=target.parent))
    inner = tmp / (target.name + suffix)
    try:
        yield inner
        if target.is_dir() and not target.is_symlink():
            check_output_path(target, kind)  # the block may have taken long: look again
            if kind == "checkpoint" and any(target.iterdir()):
                print(f"p2o: replacing the checkpoint in {target}", file=sys.stderr)
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
            try:
                _fault("swap")  # the rename window a kill must not turn into data loss
                inner.rename(target)
            except BaseException:
                if not target.exists():  # Ctrl-C/SIGTERM here: put the old one back at once
                    old.rename(target)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(inner, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
