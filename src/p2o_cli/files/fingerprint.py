"""What a run started from, as small JSON a resume can compare: data files, problems, models.

A data file is hashed whole (sha256 and size: training sets are megabytes). A model directory
is fingerprinted by each file's name and size and a hash of its first and last MiB (a model is
gigabytes; a file replaced by another of the same size and the same ends is what this misses).
A hub id stands for itself.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

_CHUNK = 1 << 20


def file_fingerprint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``{"size", "sha256"}`` of a whole file."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
            size += len(block)
    return {"size": size, "sha256": digest.hexdigest()}


def _ends_digest(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        digest.update(fh.read(_CHUNK))
        if size > 2 * _CHUNK:
            fh.seek(size - _CHUNK)
        digest.update(fh.read(_CHUNK))
    return digest.hexdigest()


def model_fingerprint(model: str) -> dict[str, Any]:
    """A model directory's files (name, size, hash of their ends), or a hub id as it is."""
    root = Path(model)
    if not root.is_dir():
        return {"id": model}
    files = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        size = path.stat().st_size
        files[path.relative_to(root).as_posix()] = {"size": size, "sha256_ends": _ends_digest(path, size)}
    return {"files": files}


def records_fingerprint(rows: Iterable[Any]) -> str:
    """sha256 over the records' JSON, in order."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(orjson.dumps(row, option=orjson.OPT_SERIALIZE_DATACLASS))
    return digest.hexdigest()


def changes(before: dict[str, Any], after: dict[str, Any], prefix: str = "") -> list[str]:
    """The keys (dotted) whose values differ between two fingerprints."""
    out = []
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += changes(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out
