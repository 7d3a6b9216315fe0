"""Training problems from a file or the hub, and the options that choose them.

A problem source is a local ``.jsonl`` / ``.json`` / ``.parquet`` file, ``-`` (JSON lines on
stdin) or a Hugging Face dataset id. Field names differ between sources (MATH, DeepScaleR,
Qwen's eval files, verl parquet), so the question, gold answer and id are found by trying the
usual names, unless given explicitly (dotted paths reach into nested objects:
``reward_model.ground_truth``). Every other field of a row is kept in the problem's ``meta``,
where rewards find it (a code task's ``tests``, a choice task's ``options``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ..config import Config, option
from ..errors import P2OError, RecordError
from ..files.outputs import STDIO
from ..files.records import Problem, from_dict, iter_json_lines
from ..reward.verify import last_boxed
from .selection import MISSING as _MISSING
from .selection import RowFilter, get_field, parse_filter, sample_indices

# The fields a problem's question and gold answer are looked for in, in this order.
PROBLEM_FIELDS = ("problem", "question", "Question", "input", "prompt")
ANSWER_FIELDS = ("answer", "final_answer", "reward_model.ground_truth", "solution")


@dataclass
class DataConfig(Config):
    """Where the training problems' fields are and how many to use."""

    PANEL = "Data"

    problem_field: str | None = option(None, metavar="FIELD", unset="the first of " + ", ".join(PROBLEM_FIELDS),
                                       help="Field holding the question (dotted paths allowed).")
    answer_field: str | None = option(None, metavar="FIELD", unset="the first of " + ", ".join(ANSWER_FIELDS),
                                      help="Field holding the gold answer (dotted paths allowed).")
    split: str = option("train", metavar="NAME", help="Split, for a hub dataset.")
    filter: str | None = option(None, metavar="EXPR", unset="every row",
                                help="Keep rows where FIELD OP VALUE holds, e.g. difficulty>=7 (OP: == != < <= > >=).")
    sample: int | None = option(None, min=1, unset="all", help="Keep a seeded random N of the problems "
                                                               "(after --filter).")
    sample_seed: int = option(0, help="Seed of --sample.")
    limit: int | None = option(None, min=1, unset="all", help="Use only the first N problems (after --filter and "
                                                              "--sample).")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.filter:
            parse_filter(self.filter)  # a bad expression fails here, before anything loads

    @property
    def row_filter(self) -> RowFilter | None:
        return parse_filter(self.filter) if self.filter else None


def load_training_problems(source: str, cfg: DataConfig) -> list[Problem]:
    return load_problems(source, problem_field=cfg.problem_field, answer_field=cfg.answer_field, split=cfg.split,
                         limit=cfg.limit, row_filter=cfg.row_filter, sample=cfg.sample, sample_seed=cfg.sample_seed)


ID_FIELDS = ("id", "idx", "unique_id")
# Instructions that dataset builders appended to the question (DeepScaleR's verl script, the
# Qwen/DeepMath system text). p2o appends its own instruction, so these would be doubled.
INSTRUCTION_SUFFIXES = (
    "Let's think step by step and output the final answer within \\boxed{}.",
    "Please reason step by step, and put your final answer within \\boxed{}.",
)
LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")



# ---------------------------------------------------------------- field helpers


def strip_instruction(text: str) -> str:
    text = text.rstrip()
    for suffix in INSTRUCTION_SUFFIXES:
        if text.endswith(suffix):
            return text[: -len(suffix)].rstrip()
    return text


def _problem_text(field: str, value: Any) -> str:
    chat = isinstance(value, list)
    if chat:  # verl: a chat list; the question is the last user turn
        users = [m.get("content") for m in value if isinstance(m, dict) and m.get("role") == "user"]
        if not users or not isinstance(users[-1], str):
            raise P2OError(f"field {field!r} is a chat list without a user message")
        value = users[-1]
    if not isinstance(value, str):
        raise P2OError(f"field {field!r} must be a string, got {type(value).__name__}")
    text = strip_instruction(value) if chat or field == "prompt" else value
    if not text.strip():
        raise P2OError(f"field {field!r} is empty")
    return text


def _answer_text(field: str, value: Any) -> str:
    if field.split(".")[-1] == "solution":
        if not isinstance(value, str) or (boxed := last_boxed(value)) is None:
            raise P2OError(f"field {field!r} has no \\boxed{{}} answer")
        return boxed
    if isinstance(value, list):  # OlympiadBench's final_answer: ["$x$"]
        if not value:
            raise P2OError(f"field {field!r} is an empty list")
        value = value[0].strip().strip("$") if isinstance(value[0], str) else value[0]
    if isinstance(value, bool):
        raise P2OError(f"field {field!r} must be a string or a number, got bool")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # amc23 stores 27.0; the gold is "27"
    if isinstance(value, (int, float)):
        return str(value)
    if not isinstance(value, str):
        raise P2OError(f"field {field!r} must be a string or a number, got {type(value).__name__}")
    if not value.strip():
        raise P2OError(f"field {field!r} is empty")
    return value


def _find(row: dict[str, Any], given: str | None, options: Sequence[str], what: str) -> tuple[str, Any]:
    """The field name and value to use: the given one, else the first present option."""
    if given is not None:
        value = get_field(row, given)
        if value is _MISSING or value is None:
            raise P2OError(f"no {what} field {given!r}")
        return given, value
    for name in options:
        value = get_field(row, name)
        if value is not _MISSING and value is not None:
            return name, value
    raise P2OError(f"no {what} field (tried: {', '.join(options)})")


# ---------------------------------------------------------------- sources


def _iter_rows(source: str, split: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line or 1-based row, row)`` from a local file or a hub dataset."""
    suffix = Path(source).suffix.lower()
    if suffix == ".jsonl" or source == STDIO:
        yield from iter_json_lines(source)
    elif suffix == ".json":
        yield from _json_rows(source)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            reader = pq.ParquetFile(source)
        except (OSError, ValueError) as err:
            raise RecordError(source, None, f"cannot read parquet: {err}") from None
        row = 0
        for batch in reader.iter_batches():
            for obj in batch.to_pylist():
                row += 1
                yield row, obj
    else:
        yield from enumerate(_hub_rows(source, split), start=1)


def _json_rows(path: str) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        data = orjson.loads(Path(path).read_bytes())
    except FileNotFoundError:
        raise RecordError(path, None, "no such file") from None
    except orjson.JSONDecodeError:
        # Many ".json" files on the hub are really JSON Lines.
        yield from iter_json_lines(path)
        return
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise RecordError(path, None, 'expected a JSON array or an object with a "data" list')
    for row, obj in enumerate(data, start=1):
        if not isinstance(obj, dict):
            raise RecordError(path, row, f"expected a JSON object, got {type(obj).__name__}")
        yield row, obj


def _hub_rows(dataset_id: str, split: str) -> Iterator[dict[str, Any]]:
    import datasets

    try:
        ds = datasets.load_dataset(dataset_id, split=split)
    except Exception as err:  # noqa: BLE001 - offline, unknown id, bad split: all are the user's input
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RecordError(dataset_id, None, f"cannot load dataset (split {split!r}): {first}") from None
    yield from ds


def load_problems(
    source: str,
    *,
    problem_field: str | None = None,
    answer_field: str | None = None,
    id_field: str | None = None,
    split: str = "train",
    limit: int | None = None,
    answer_from_solution: bool = False,
    row_filter: RowFilter | None = None,
    sample: int | None = None,
    sample_seed: int = 0,
    keep_fields: Sequence[str] | None = None,
) -> list[Problem]:
    """Problems from a local .jsonl/.json/.parquet file or a Hugging Face dataset id.

    Fields not given are detected (see PROBLEM_FIELDS, ANSWER_FIELDS, ID_FIELDS); ids default
    to ``{stem}-{row}`` (0-based row of the source). ``answer_from_solution`` takes the gold from
    the last ``\\boxed{}`` of ``solution`` where a row has one (the Qwen suite's rule for Minerva).
    Rows that fail ``row_filter`` (tested on the source row) are skipped; then ``sample`` keeps a
    seeded random subset; then ``limit`` the first N. ``meta`` holds every field of the row not
    read as the id, question, answer or source (a ``meta`` object of the row is merged in), or
    only ``keep_fields`` where they are given. Bad rows raise RecordError with the line (JSONL)
    or 1-based row number.
    """
    stdin = source == STDIO
    local = Path(source).suffix.lower() in LOCAL_SUFFIXES
    if local and not Path(source).is_file():
        raise RecordError(source, None, "is a directory, expected a file" if Path(source).is_dir() else "no such file")
    stem = "stdin" if stdin else Path(source).stem if local else source.rstrip("/").split("/")[-1]
    unit = "line" if stdin or source.endswith(".jsonl") else "row"
    shown = "<stdin>" if stdin else source
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for index, (where, row) in enumerate(_iter_rows(source, split)):
        if limit is not None and sample is None and len(problems) >= limit:
            break
        try:
            if row_filter is not None and not row_filter.matches(row):
                continue
            record = _record(row, f"{stem}-{index}", problem_field, answer_field, id_field, answer_from_solution,
                             keep_fields)
            problem = from_dict(Problem, record)
        except ValueError as err:
            raise RecordError(shown, where, str(err)) from None
        if problem.id in seen:
            raise RecordError(shown, where, f"duplicate id {problem.id!r} (first at {unit} {seen[problem.id]})")
        seen[problem.id] = where
        problems.append(problem)
    chosen = [problems[i] for i in sample_indices(len(problems), sample, sample_seed)]
    return chosen[:limit] if limit is not None else chosen


def _record(row: dict[str, Any], default_id: str, problem_field: str | None, answer_field: str | None,
            id_field: str | None, answer_from_solution: bool, keep_fields: Sequence[str] | None) -> dict[str, Any]:
    """A problem record's fields from one source row (P2OError naming the field that is wrong)."""
    pfield, pvalue = _find(row, problem_field, PROBLEM_FIELDS, "problem")
    afield, avalue = _find(row, answer_field, ANSWER_FIELDS, "answer")
    solution = row.get("solution")
    if answer_from_solution and answer_field is None and isinstance(solution, str) and last_boxed(solution):
        afield, avalue = "solution", solution
    try:
        ifield, ivalue = _find(row, id_field, ID_FIELDS, "id")
    except ValueError:
        if id_field is not None:
            raise
        ifield, ivalue = "id", default_id
    if isinstance(ivalue, bool) or not isinstance(ivalue, (str, int)):
        raise P2OError(f"field {ifield!r} must be a string or an integer")
    sfield = "source" if "source" in row else "data_source"
    source_name = row.get(sfield)
    read_source = source_name is None or isinstance(source_name, str)
    record = {
        "id": str(ivalue),
        "problem": _problem_text(pfield, pvalue),
        "answer": _answer_text(afield, avalue),
        "source": source_name if isinstance(source_name, str) else None,
    }
    if keep_fields is not None:
        meta = {name: _kept(row, name) for name in keep_fields}
    else:
        meta = _other_fields(row, (pfield, afield, ifield, sfield if read_source else ""))
    if meta:
        record["meta"] = meta
    return record


def _other_fields(row: dict[str, Any], taken: Sequence[str]) -> dict[str, Any]:
    """The row's fields besides those read into the record (a nested ``meta`` object merged in)."""
    own = row.get("meta")
    other = {k: v for k, v in row.items() if k not in ("schema", "meta", *taken)}
    return {**own, **other} if isinstance(own, dict) else other


def _kept(row: dict[str, Any], name: str) -> Any:
    value = get_field(row, name)
    if value is _MISSING:
        raise ValueError(f"no field {name!r}")
    return value
