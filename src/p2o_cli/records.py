"""Record types and the JSONL files between p2o's commands.

Every record is one JSON object per line and carries ``schema`` = ``kind@version``.
Reading validates each line and raises :class:`RecordError` with ``path:line: message``;
writing is atomic (temp file + rename) so a failed command never leaves half a file.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import types
import typing
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson

STDIO = "-"


class RecordError(Exception):
    """Bad input: the message is ``path:line: what is wrong`` (one line, no traceback)."""

    def __init__(self, path: str | os.PathLike[str], line: int | None, message: str):
        self.path, self.line, self.message = str(path), line, message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


@dataclass
class Problem:
    id: str
    problem: str
    answer: str
    source: str | None = None
    meta: dict[str, Any] | None = None


@dataclass
class Rollout:
    id: str
    k: int
    prompt: str
    response: str
    reward: float
    pred: str | None
    finish_reason: str
    n_tokens: int
    template_id: str | None = None
    template: str | None = None
    policy_version: int = 0
    # x, the prompt without the template: train-step takes its gradient here (context
    # distillation). None when no template was used, i.e. it equals ``prompt``.
    original_prompt: str | None = None
    # Carried so mine-hard and train-step need no second input file.
    problem: str | None = None
    answer: str | None = None
    # The sampled token ids (end-of-turn token included when it stopped), where the engine
    # gives them: train-step then trains on exactly what was sampled instead of re-tokenizing.
    response_ids: list[int] | None = None
    # Templated rollouts only: the plain rewards that made this problem hard (from its
    # assignment), which train-step may use as the group's baseline (--templated-baseline plain).
    plain_rewards: list[float] | None = None
    # How it was sampled, so train-step can check its --temperature and gepa can default its
    # --model (None in files written before these fields existed).
    temperature: float | None = None
    model: str | None = None


@dataclass
class Failure:
    response: str
    pred: str | None
    template_id: str | None = None


@dataclass
class Hard:
    id: str
    problem: str
    answer: str
    rewards: list[float]
    mean_reward: float
    failures: list[Failure] = field(default_factory=list)
    model: str | None = None  # the model whose rollouts made it hard (gepa's default --model)


@dataclass
class Template:
    template_id: str
    text: str
    parent_id: str | None = None
    iteration: int = 0
    dev_ids: list[str] = field(default_factory=list)
    dev_scores: list[float] = field(default_factory=list)
    train_solved: list[str] = field(default_factory=list)


@dataclass
class Assignment:
    id: str
    template_ids: list[str]
    plain_rewards: list[float] = field(default_factory=list)  # the hard record's rewards


R = TypeVar("R")

SCHEMAS: dict[type, str] = {
    Problem: "problem@1",
    Rollout: "rollout@1",
    Hard: "hard@1",
    Template: "template@1",
    Assignment: "assignment@1",
}
ID_FIELD: dict[type, str] = {
    Problem: "id",
    Rollout: "",  # many rollouts share an id (K per problem)
    Hard: "id",
    Template: "template_id",
    Assignment: "id",
}


def to_dict(record: Any) -> dict[str, Any]:
    """The JSON object of a record, ``schema`` first."""
    return {"schema": SCHEMAS[type(record)], **dataclasses.asdict(record)}


def dumps(record: Any) -> bytes:
    """One JSONL line for a record (or for a plain dict, written as it is)."""
    obj = record if isinstance(record, dict) else to_dict(record)
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"


# ---------------------------------------------------------------- validation


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, name: str) -> Any:
    """Check ``value`` against a field annotation; return it (dataclasses built recursively)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, name)
            except ValueError:
                pass
        raise ValueError(f"field {name!r} has the wrong type ({type(value).__name__})")
    if origin is list:
        if not isinstance(value, list):
            raise ValueError(f"field {name!r} must be a list, got {type(value).__name__}")
        (item_tp,) = typing.get_args(tp)
        return [_coerce(v, item_tp, f"{name}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"field {name!r} must be an object, got {type(value).__name__}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ValueError(f"field {name!r} must be an object, got {type(value).__name__}")
        return from_dict(tp, value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"field {name!r} must be a number, got {type(value).__name__}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"field {name!r} must be an integer, got {type(value).__name__}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"field {name!r} must be a string, got {type(value).__name__}")
        return value
    if tp is Any:
        return value
    raise ValueError(f"field {name!r}: unsupported type {_type_name(tp)}")


def from_dict(cls: type[R], obj: dict[str, Any]) -> R:
    """Build a record from a JSON object, raising ValueError on a missing field or wrong type."""
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in obj:
            kwargs[f.name] = _coerce(obj[f.name], hints[f.name], f.name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ValueError(f"missing field {f.name!r}")
    schema = obj.get("schema")
    expected = SCHEMAS.get(cls)
    if schema is not None and expected is not None and schema.split("@")[0] != expected.split("@")[0]:
        raise ValueError(f"expected a {expected} record, got schema {schema!r}")
    return cls(**kwargs)


# ---------------------------------------------------------------- reading


def _open_bytes(path: str | os.PathLike[str]) -> Iterator[bytes]:
    if str(path) == STDIO:
        yield from sys.stdin.buffer
        return
    try:
        with open(path, "rb") as fh:
            yield from fh
    except FileNotFoundError:
        raise RecordError(path, None, "no such file") from None
    except IsADirectoryError:
        raise RecordError(path, None, "is a directory, expected a JSONL file") from None


def iter_json_lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line; raise RecordError on bad JSON."""
    shown = "<stdin>" if str(path) == STDIO else path
    for lineno, raw in enumerate(_open_bytes(path), start=1):
        if not raw.strip():
            continue
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise RecordError(shown, lineno, f"not valid UTF-8 (byte {err.start})") from None
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as err:
            raise RecordError(shown, lineno, f"malformed JSON: {err.msg}") from None
        if not isinstance(obj, dict):
            raise RecordError(shown, lineno, f"expected a JSON object, got {type(obj).__name__}")
        yield lineno, obj


def read_records(path: str | os.PathLike[str], cls: type[R], *, unique: bool = True) -> list[R]:
    """Read and validate a JSONL file of ``cls`` records; ids must be unique where they key the file."""
    shown = "<stdin>" if str(path) == STDIO else path
    key = ID_FIELD.get(cls, "")
    seen: dict[str, int] = {}
    out: list[R] = []
    for lineno, obj in iter_json_lines(path):
        try:
            record = from_dict(cls, obj)
        except ValueError as err:
            raise RecordError(shown, lineno, str(err)) from None
        if unique and key:
            rid = getattr(record, key)
            if rid in seen:
                raise RecordError(shown, lineno, f"duplicate {key} {rid!r} (first on line {seen[rid]})")
            seen[rid] = lineno
        out.append(record)
    return out


# ---------------------------------------------------------------- writing


@contextmanager
def atomic_path(path: str | os.PathLike[str], *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds.

    Works for files and directories (a directory replaces an existing one).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    inner = tmp / (target.name + suffix)
    try:
        yield inner
        if target.is_dir() and not target.is_symlink():
            old = target.with_name(f".{target.name}.old")
            _rmtree(old)
            target.rename(old)
            inner.rename(target)
            _rmtree(old)
        else:
            os.replace(inner, target)
    finally:
        _rmtree(tmp)


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def write_records(path: str | os.PathLike[str], records: Iterable[Any]) -> int:
    """Write records (or plain dicts) as JSONL atomically, or to stdout for ``-``; return how many."""
    if str(path) == STDIO:
        n = 0
        out = sys.stdout.buffer
        for record in records:
            out.write(dumps(record))
            n += 1
        out.flush()
        return n
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            n = 0
            for record in records:
                fh.write(dumps(record))
                n += 1
    return n


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write one pretty JSON document atomically."""
    data = orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY) + b"\n"
    if str(path) == STDIO:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def append_jsonl(path: str | os.PathLike[str], obj: dict[str, Any]) -> None:
    """Append one JSON line (metrics files grow one line per step)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as fh:
        fh.write(orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")
