"""Where p2o writes: one rule for every output, atomic replacement, crash recovery.

The rule (docs/guarantees.md), checked by :func:`check_outputs` before any compute:

- an output is never an input of the same command (compared by resolved path and inode), and
  a directory output that is replaced never holds an input;
- an output is a regular file or a directory: a FIFO, device or socket is never replaced;
- a symbolic link is followed: the output is written where it points, the link stays;
- a file output never replaces a directory; the current directory, or any above it, is never
  an output;
- a directory output is replaced (a checkpoint) or written into (a run, a report) only where
  p2o can prove it wrote it: its :data:`OWNER_FILE` names what p2o made there, and for a
  checkpoint every file it holds (a file p2o did not write there makes it not ours). An empty
  directory may be taken. A run prunes only the checkpoints its own state lists, and only
  those whose owner file names that run (:func:`remove_owned`), never by a name pattern.

How: every output is written beside its target as ``.<name>.p<pid>.<random>.tmp`` and renamed
into place; a temp of that naming whose process is gone is swept on the next write there. A
directory is swapped in by ``target → .<name>.old``, ``new → target``; a kill between the two
renames leaves ``.<name>.old``, which :func:`recover_swap` (called by every later write and by
checkpoint loading) renames back.

This module imports nothing of p2o's but errors and faults, so records.py may use it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from ..errors import P2OError
from .faults import fault

STDIO = "-"
# file: a JSON/JSONL file, replaced; append: a log p2o appends to (--metrics); checkpoint: a
# directory replaced whole; dir, run, report, sweep: directories p2o creates and writes into.
OutputKind = Literal["file", "append", "checkpoint", "dir", "run", "report", "sweep"]
_WRITTEN_INTO = ("dir", "run", "report", "sweep")
# What p2o made a directory for, and for a directory it replaces whole, every file it put there.
OWNER_FILE = ".p2o-owner.json"
LOCK_FILE = ".p2o-lock"  # files/lock.py: held by the process writing into the directory
_OURS = (OWNER_FILE, LOCK_FILE)
_TEMP = re.compile(r"^\.(?P<name>.+)\.p(?P<pid>\d+)\.[^.]+\.tmp$")
_MAX_OWNER_BYTES = 1 << 20


class OutputError(P2OError):
    """An output path p2o refuses to write (exit status 2, one line)."""


def _fault(point: str) -> None:
    """The fault-injection hook (``P2O_FAULT``), imported late so this module stays a leaf."""
    if os.environ.get("P2O_FAULT"):
        fault(point)


# ---------------------------------------------------------------- what p2o owns


def read_owner(directory: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The owner file of ``directory`` (what p2o made it for), or None when there is none."""
    path = Path(directory) / OWNER_FILE
    try:
        with open(path, "rb") as fh:
            data = json.loads(fh.read(_MAX_OWNER_BYTES))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("kind"), str) else None


def _write_owner(directory: Path, owner: dict[str, Any]) -> None:
    fd, name = tempfile.mkstemp(prefix=f".{OWNER_FILE}.p{os.getpid()}.", suffix=".tmp", dir=directory)
    with os.fdopen(fd, "w") as fh:
        json.dump(owner, fh, indent=2)
        fh.write("\n")
    os.replace(name, directory / OWNER_FILE)


def _listing(directory: Path) -> list[str]:
    """Every file under ``directory`` as a relative POSIX path (p2o's own markers aside)."""
    found = []
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files):
            relative = Path(root, name).relative_to(directory).as_posix()
            if relative not in _OURS:
                found.append(relative)
    return found


def _is_empty(directory: Path) -> bool:
    return all(entry.name in _OURS for entry in directory.iterdir())


def _foreign_files(directory: Path, kind: str) -> list[str] | None:
    """None when p2o wrote ``directory`` as ``kind``; else what is not p2o's in it ([] = no owner file)."""
    owner = read_owner(directory)
    if owner is None or owner["kind"] != kind:
        return []
    if kind != "checkpoint":
        return None
    listed = set(owner.get("files") or [])
    extra = [name for name in _listing(directory) if name not in listed]
    return extra or None


def _is_legacy_run(directory: Path) -> bool:
    """A run directory of a p2o that wrote no owner file: its state and config are there."""
    return (directory / "state.json").is_file() and (directory / "config.json").is_file()


_SWEEP_ENTRY = re.compile(r"^(world-\d+|runs-\d+|logs|report)$")


def _is_legacy_sweep(directory: Path) -> bool:
    """A toy sweep directory of a p2o that wrote no owner file: only the sweep's own entries."""
    return all(_SWEEP_ENTRY.match(entry.name) for entry in directory.iterdir() if entry.name not in _OURS)


# Directories p2o wrote before it wrote owner files, recognised by their layout.
_LEGACY = {"run": _is_legacy_run, "sweep": _is_legacy_sweep}


def claim_directory(path: str | os.PathLike[str], kind: OutputKind, **fields: Any) -> dict[str, Any]:
    """Create ``path`` (or take an empty one) as p2o's ``kind`` directory; return its owner file.

    A directory that already carries the owner file of this kind keeps it (``fields`` fill
    what it lacks); any other non-empty directory is refused (OutputError).
    """
    check_output_path(path, kind)
    directory = Path(os.path.realpath(path))
    directory.mkdir(parents=True, exist_ok=True)
    existing = read_owner(directory)
    owner = existing or {"kind": kind}
    if owner["kind"] != kind:
        raise OutputError(f"{path}: holds a p2o {owner['kind']}, not a {kind}")
    if existing is None or any(key not in owner for key in fields):
        _write_owner(directory, {**fields, **owner})
    return read_owner(directory) or owner


def remove_owned(path: str | os.PathLike[str], owner: str) -> bool:
    """Delete the checkpoint ``path`` if p2o wrote it for ``owner`` and it holds nothing else."""
    directory = Path(path)
    record = read_owner(directory)
    if directory.is_symlink() or not directory.is_dir() or record is None or record.get("owner") != owner:
        return False
    if _foreign_files(directory, "checkpoint") is not None:
        return False
    shutil.rmtree(directory)
    return True


# ---------------------------------------------------------------- the rule


def _is_cwd_or_above(path: Path) -> bool:
    here = Path.cwd().resolve()
    target = path.resolve()
    return target == here or target in here.parents


def _kind_of(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def check_output_path(path: str | os.PathLike[str], kind: OutputKind = "file") -> None:
    """Refuse (OutputError) an output p2o must not or cannot write; call before any compute.

    ``kind``: ``file`` (JSONL/JSON, replaced), ``append`` (a log appended to), ``checkpoint`` (a
    train-step directory, replaced whole) or ``dir``/``run``/``report`` (a directory p2o creates
    and fills). The module docstring states the rule.
    """
    if str(path) == STDIO and kind in ("file", "append"):
        return
    given = Path(path)
    if str(path).strip() == "" or _is_cwd_or_above(given):
        raise OutputError(f"{path}: the current directory (or one above it) cannot be an output; name a new path")
    target = Path(os.path.realpath(path))  # a symbolic link is followed: its target is the output
    try:
        mode = target.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):  # the latter: a file on the way, said below
        mode = None
    except OSError as err:
        raise OutputError(f"{path}: cannot be examined ({err.strerror or err})") from None
    if mode is not None:
        _check_existing(path, target, mode, kind)
    _check_writable(target if kind in _WRITTEN_INTO else target.parent)


def _check_existing(path: str | os.PathLike[str], target: Path, mode: int, kind: OutputKind) -> None:
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        raise OutputError(f"{path}: is {_kind_of(mode)}; p2o writes only regular files and directories, and never "
                          "replaces anything else (for standard output, use -)")
    if kind in ("file", "append"):
        if stat.S_ISDIR(mode):
            raise OutputError(f"{path}: is a directory; a file output never replaces a directory")
        return
    if not stat.S_ISDIR(mode):
        raise OutputError(f"{path}: exists and is not a directory"
                          + ("; a checkpoint never replaces a file" if kind == "checkpoint" else ""))
    legacy = _LEGACY.get(kind)
    if _is_empty(target) or (legacy is not None and read_owner(target) is None and legacy(target)):
        return
    foreign = _foreign_files(target, kind)
    if foreign is None:
        return
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise OutputError(f"{path}: holds {shown}, which p2o did not write there; refusing to replace it "
                          "(move them out, or name another output)")
    what = "a p2o checkpoint" if kind == "checkpoint" else "a directory p2o made" + ("" if kind == "dir" else
                                                                                       f" for a {kind}")
    verb = "replace" if kind == "checkpoint" else "write into"
    raise OutputError(f"{path}: is a directory but not {what} (no {OWNER_FILE}); refusing to {verb} it "
                      "(name a new or empty directory)")


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


InputPaths = Mapping[str, "str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None"]


def _paths(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [] if str(value) in ("", STDIO) else [os.fspath(value)]
    return [p for item in value for p in _paths(item)]


def _identity(path: str) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    return info.st_dev, info.st_ino


def _within(inner: str, outer: str) -> bool:
    a, b = os.path.realpath(inner), os.path.realpath(outer)
    return a == b or a.startswith(b.rstrip(os.sep) + os.sep)


def check_outputs(outputs: Mapping[str, tuple[Any, OutputKind]], inputs: InputPaths | None = None) -> None:
    """Every output of a command by its flag (``{"--out": (path, "file")}``): the rule for each,
    none the same as another, none an input (``{"--data": path}``), checked before any compute."""
    given = [(flag, os.fspath(path), kind) for flag, (path, kind) in outputs.items()
             if path is not None and str(path) not in ("", STDIO)]
    for _, path, kind in given:
        check_output_path(path, kind)
    seen: dict[str, str] = {}
    for flag, path, _ in given:
        real = os.path.realpath(path)
        if real in seen:
            raise OutputError(f"{flag} {path} is also {seen[real]}; give each output its own path")
        seen[real] = flag
    sources = [(flag, p) for flag, value in (inputs or {}).items() for p in _paths(value)]
    for out_flag, path, kind in given:
        out_id = _identity(path)
        for in_flag, source in sources:
            same = out_id is not None and out_id == _identity(source)
            # A directory replaced whole takes everything in it along.
            inside = kind in ("checkpoint", "dir") and _within(source, path) and os.path.exists(source)
            if same or inside or os.path.realpath(path) == os.path.realpath(source):
                what = "is also the input" if same or not inside else "holds the input"
                raise OutputError(f"{out_flag} {path} {what} {in_flag} {source}; write the output to a new path")


# ---------------------------------------------------------------- temps and the directory swap


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
def atomic_path(path: str | os.PathLike[str], *, suffix: str = "", kind: OutputKind = "file",
                owner: str | None = None, replace_any: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds.

    ``kind="file"`` never replaces a directory. ``kind="checkpoint"`` or ``"dir"``: the block
    makes a directory, which gets an owner file (``owner``: who wrote it, e.g. a run) listing
    every file in it, and replaces an existing directory only when p2o wrote that one (and says
    so on stderr) — or any directory with ``replace_any`` (an explicit ``--force``).
    """
    target = Path(os.path.realpath(path))  # a symbolic link stays; what it points to is replaced
    recover_swap(target)
    if not replace_any:
        check_output_path(target, kind)
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temps(target.parent, target.name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.p{os.getpid()}.", suffix=".tmp", dir=target.parent))
    inner = tmp / (target.name + suffix)
    try:
        yield inner
        if kind in ("checkpoint", "dir") and inner.is_dir():
            _write_owner(inner, {"kind": kind, "owner": owner, "files": _listing(inner)})
        if target.is_dir() and not target.is_symlink():
            if not replace_any:
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
