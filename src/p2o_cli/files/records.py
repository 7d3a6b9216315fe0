"""Record types and the JSONL files between p2o's commands.

Every record is one JSON object per line and carries ``schema`` = ``kind@version``.
Reading validates each line and raises :class:`RecordError` with ``path:line: message``;
writing is atomic (temp file + rename) so a failed command never leaves half a file.
Reading is bounded: a line longer than :data:`MAX_LINE_BYTES` (or a JSON file longer than
:data:`MAX_JSON_BYTES`) is refused before it is held whole, so an endless stream without
newlines (``/dev/zero``) is an error, not a machine out of memory. Append-only logs (metrics)
tolerate a torn last line: a kill mid-append leaves one, the next append cuts it off.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson

from ..errors import P2OError, RecordError, shown
from .outputs import STDIO, atomic_path

# Documented size limits (docs/guarantees.md): a record beyond them is refused with a clear
# error before anything is generated from it (a 50 MB problem would exhaust memory instead).
MAX_ID_CHARS = 256
MAX_PROBLEM_CHARS = 50_000
MAX_ANSWER_CHARS = 10_000
MAX_TEMPLATE_CHARS = 20_000
# Far above any record within the limits above (a 12k-token rollout with its token ids is about
# 0.2 MB), far below what exhausts a machine's memory.
MAX_LINE_BYTES = 16 << 20
MAX_JSON_BYTES = 64 << 20


@dataclass
class Problem:
    id: str
    problem: str
    answer: str
    source: str | None = None
    # Every other field of the problem's row (a code task's tests, a choice task's options):
    # rewards read them, and rollout and hard records carry them on.
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
    # Each reward's value when several make up ``reward`` (--reward … --reward-weights).
    rewards: dict[str, float] | None = None
    # The problem's other fields and source, so mine-hard and gepa can hand them to the reward.
    meta: dict[str, Any] | None = None
    source: str | None = None


@dataclass
class Failure:
    response: str
    pred: str | None
    template_id: str | None = None
    # How the response ended ("length": cut at the rollouts' response limit) and its length, so
    # p2o gepa can compare that limit with its own (None in files written before these fields).
    n_tokens: int | None = None
    finish_reason: str | None = None


@dataclass
class Hard:
    id: str
    problem: str
    answer: str
    rewards: list[float]
    mean_reward: float
    failures: list[Failure] = field(default_factory=list)
    model: str | None = None  # the model whose rollouts made it hard (gepa's default --model)
    meta: dict[str, Any] | None = None  # the problem's other fields, for the reward (Problem.meta)
    source: str | None = None


def problem_fields(record: Problem | Rollout | Hard) -> dict[str, Any]:
    """The problem as a reward function sees it: every field of its row, with ``id``, ``problem``,
    ``answer`` and ``source`` as p2o read them."""
    return {**(record.meta or {}), "id": record.id, "problem": record.problem, "answer": record.answer,
            "source": record.source}


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


# What a JSON value must be for each scalar annotation, as the error says it.
_SCALARS: dict[Any, tuple[Callable[[Any], bool], str]] = {
    bool: (lambda v: isinstance(v, bool), "true or false"),
    float: (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
    int: (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    str: (lambda v: isinstance(v, str), "a string"),
}


def check_type(value: Any, tp: Any, name: str) -> Any:
    """``value`` checked against the annotation ``tp`` and returned (ints as floats where a float is
    due, dataclasses built recursively); P2OError naming ``name`` if it does not fit."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _check_union(value, typing.get_args(tp), name)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        return [check_type(v, item_tp, f"{name}[{i}]") for i, v in enumerate(_expect(value, list, "a list", name))]
    if origin is dict or dataclasses.is_dataclass(tp):
        obj = _expect(value, dict, "an object", name)
        return from_dict(tp, obj) if dataclasses.is_dataclass(tp) else obj
    if tp in _SCALARS:
        fits, what = _SCALARS[tp]
        if not fits(value):
            raise P2OError(f"field {name!r} must be {what}, got {type(value).__name__}")
        return float(value) if tp is float else value
    if tp is Any:
        return value
    raise P2OError(f"field {name!r}: unsupported type {getattr(tp, '__name__', tp)}")


def _expect(value: Any, kind: type, what: str, name: str) -> Any:
    if not isinstance(value, kind):
        raise P2OError(f"field {name!r} must be {what}, got {type(value).__name__}")
    return value


def _check_union(value: Any, options: tuple[Any, ...], name: str) -> Any:
    if value is None and type(None) in options:
        return None
    if len(options) == 2 and type(None) in options:  # Optional[T]: T's own message
        return check_type(value, next(o for o in options if o is not type(None)), name)
    for option in options:
        if option is type(None):
            continue
        try:
            return check_type(value, option, name)
        except ValueError:
            pass
    raise P2OError(f"field {name!r} has the wrong type ({type(value).__name__})")


def from_dict(cls: type[R], obj: dict[str, Any]) -> R:
    """Build a record from a JSON object, raising ValueError on a missing field or wrong type."""
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in obj:
            kwargs[f.name] = check_type(obj[f.name], hints[f.name], f.name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise P2OError(f"missing field {f.name!r}")
    schema = obj.get("schema")
    expected = SCHEMAS.get(cls)
    if schema is not None and expected is not None and (
        not isinstance(schema, str) or schema.split("@")[0] != expected.split("@")[0]
    ):
        raise P2OError(f"expected a {expected} record, got schema {shown(schema)}")
    record = cls(**kwargs)
    check_record(record)
    return record


def _check_text(name: str, value: str | None, limit: int) -> None:
    if value is not None and len(value) > limit:
        raise P2OError(f"field {name!r} is {len(value):,} characters; the limit is {limit:,}")


def _check_rewards(name: str, values: list[float]) -> None:
    for i, value in enumerate(values):
        if not 0.0 <= value <= 1.0:  # also refuses NaN
            raise P2OError(f"field {name}[{i}] is {shown(value)}; rewards lie in [0, 1]")


def check_record(record: Any) -> None:
    """Values a record's type allows but p2o cannot use (ValueError naming the field)."""
    key = ID_FIELD.get(type(record)) or ("id" if hasattr(record, "id") else "")
    if key:
        _check_text(key, getattr(record, key), MAX_ID_CHARS)
    if isinstance(record, (Problem, Hard)):
        _check_text("problem", record.problem, MAX_PROBLEM_CHARS)
        _check_text("answer", record.answer, MAX_ANSWER_CHARS)
    check = _RECORD_CHECKS.get(type(record))
    if check is not None:
        check(record)


def _check_rollout(record: Rollout) -> None:
    _check_rewards("reward", [record.reward])
    for name, value in (record.rewards or {}).items():
        _check_rewards(f"rewards.{name}", [check_type(value, float, f"rewards.{name}")])
    _check_rewards("plain_rewards", record.plain_rewards or [])
    _check_text("template", record.template, MAX_TEMPLATE_CHARS)
    for name in ("k", "n_tokens", "policy_version"):
        if getattr(record, name) < 0:
            raise P2OError(f"field {name!r} is {getattr(record, name)}; it cannot be negative")
    if record.response_ids is not None and any(t < 0 for t in record.response_ids):
        raise P2OError("field 'response_ids' holds a negative token id")


def _check_hard(record: Hard) -> None:
    _check_rewards("rewards", record.rewards)
    _check_rewards("mean_reward", [record.mean_reward])


def _check_template(record: Template) -> None:
    _check_text("text", record.text, MAX_TEMPLATE_CHARS)
    if len(record.dev_ids) != len(record.dev_scores):
        raise P2OError(f"dev_ids has {len(record.dev_ids)} entries but dev_scores {len(record.dev_scores)}; "
                       "they pair up")
    _check_rewards("dev_scores", record.dev_scores)
    if record.iteration < 0:
        raise P2OError(f"field 'iteration' is {record.iteration}; it cannot be negative")


def _check_assignment(record: Assignment) -> None:
    if not record.template_ids:
        raise P2OError("field 'template_ids' is empty; an assignment names one template per rollout")
    _check_rewards("plain_rewards", record.plain_rewards)


_RECORD_CHECKS: dict[type, Callable[[Any], None]] = {
    Rollout: _check_rollout, Hard: _check_hard, Template: _check_template, Assignment: _check_assignment,
}


# ---------------------------------------------------------------- reading


def _open_bytes(path: str | os.PathLike[str]) -> Iterator[bytes]:
    """The lines of a file (or stdin), none longer than MAX_LINE_BYTES + 1 bytes: a longer line
    comes as its first MAX_LINE_BYTES + 1 bytes, never whole (the caller refuses it)."""
    if str(path) == STDIO:
        yield from iter(functools.partial(sys.stdin.buffer.readline, MAX_LINE_BYTES + 1), b"")
        return
    try:
        with open(path, "rb") as fh:
            yield from iter(functools.partial(fh.readline, MAX_LINE_BYTES + 1), b"")
    except FileNotFoundError:
        raise RecordError(path, None, "no such file") from None
    except IsADirectoryError:
        raise RecordError(path, None, "is a directory, expected a JSONL file") from None


def iter_json_lines(path: str | os.PathLike[str], *, torn_tail: bool = False) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line; raise RecordError on bad JSON.

    ``torn_tail``: an append-only log's last line, cut short by a kill (no newline, not JSON),
    is skipped instead of refused.
    """
    shown = "<stdin>" if str(path) == STDIO else path
    for lineno, raw in enumerate(_open_bytes(path), start=1):
        if len(raw) > MAX_LINE_BYTES:
            raise RecordError(shown, lineno, f"line longer than {MAX_LINE_BYTES:,} bytes (no record is this long; "
                                             "is this a JSONL file?)")
        if not raw.strip():
            continue
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as err:
            if torn_tail and not raw.endswith(b"\n"):
                return
            raise RecordError(shown, lineno, f"not valid UTF-8 (byte {err.start})") from None
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as err:
            if torn_tail and not raw.endswith(b"\n"):
                return
            raise RecordError(shown, lineno, f"malformed JSON: {err.msg}") from None
        if not isinstance(obj, dict):
            raise RecordError(shown, lineno, f"expected a JSON object, got {type(obj).__name__}")
        yield lineno, obj


def _record_key(record: Any) -> tuple[str, Any] | None:
    """What must be unique in a file of these records: its id, or (id, k) for rollouts."""
    if isinstance(record, Rollout):
        return "(id, k)", (record.id, record.k)
    key = ID_FIELD.get(type(record), "")
    return (key, getattr(record, key)) if key else None


def read_records(
    path: str | os.PathLike[str], cls: type[R], *, unique: bool = True, allow_empty: bool = True
) -> list[R]:
    """Read and validate a JSONL file of ``cls`` records.

    ``unique``: ids (``(id, k)`` for rollouts) must not repeat. ``allow_empty=False``: a file
    with no records is an error (a command must not replace its last output with nothing).
    A templates file must name only parents it holds.
    """
    where = "<stdin>" if str(path) == STDIO else path
    seen: dict[Any, int] = {}
    out: list[R] = []
    lines: list[int] = []
    for lineno, obj in iter_json_lines(path):
        try:
            record = from_dict(cls, obj)
        except ValueError as err:
            raise RecordError(where, lineno, str(err)) from None
        key = _record_key(record) if unique else None
        if key is not None:
            if key[1] in seen:
                raise RecordError(where, lineno, f"duplicate {key[0]} {shown(key[1])} (first on line {seen[key[1]]})")
            seen[key[1]] = lineno
        out.append(record)
        lines.append(lineno)
    if not out and not allow_empty:
        raise RecordError(where, None, f"no {SCHEMAS.get(cls, cls.__name__).split('@')[0]} records")
    if cls is Template:
        ids = {t.template_id for t in out}  # type: ignore[attr-defined]
        for record, lineno in zip(out, lines):
            parent = record.parent_id  # type: ignore[attr-defined]
            if parent is not None and parent not in ids:
                raise RecordError(where, lineno, f"parent_id {shown(parent)} is not a template of this file")
    return out


def read_bounded(path: str | os.PathLike[str], limit: int = MAX_JSON_BYTES) -> bytes:
    """A whole (state, config) file, refused (RecordError) once it passes ``limit`` bytes."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(limit + 1)
    except FileNotFoundError:
        raise RecordError(path, None, "no such file") from None
    except IsADirectoryError:
        raise RecordError(path, None, "is a directory, expected a JSON file") from None
    if len(raw) > limit:
        raise RecordError(path, None, f"longer than {limit:,} bytes; not a file p2o wrote")
    return raw


def read_json_object(path: str | os.PathLike[str]) -> dict[str, Any]:
    """One JSON object from a file, with errors that name the file (state and config files)."""
    raw = read_bounded(path)
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise RecordError(path, None, f"malformed JSON: {err.msg}") from None
    if not isinstance(obj, dict):
        raise RecordError(path, None, f"expected a JSON object, got {type(obj).__name__}")
    return obj


# ---------------------------------------------------------------- writing


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
    """Append one JSON line (metrics files grow one line per step), after cutting off a torn one."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            os.ftruncate(fd, _last_line_end(fd, size))  # a kill mid-append left half a line
        os.write(fd, orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")
    finally:
        os.close(fd)


def _last_line_end(fd: int, size: int, chunk: int = 1 << 16) -> int:
    """The offset just past the file's last newline (0 when it has none)."""
    end = size
    while end > 0:
        start = max(0, end - chunk)
        block = os.pread(fd, end - start, start)
        cut = block.rfind(b"\n")
        if cut >= 0:
            return start + cut + 1
        end = start
    return 0
