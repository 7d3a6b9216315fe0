"""The benchmark registry and its loader (protocols per shared/data/EVAL_PROTOCOL.md).

A benchmark is read from ``--data-dir`` (``{name}.jsonl``, or the Qwen suite's
``{name}/test.jsonl``), else ``$P2O_DATA_DIR``, else the Hugging Face hub. A name outside the
registry is a custom benchmark when its file exists; its protocol follows its size.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.problems import load_problems
from ..errors import P2OError
from ..files.records import Problem, RecordError


@dataclass(frozen=True)
class Benchmark:
    """One evaluation set and its protocol (EVAL_PROTOCOL.md: < 100 problems -> avg@16 at T=0.6)."""

    name: str
    hub_id: str | None
    hub_split: str
    local_file: str  # under data_dir; load_benchmark returns the absolute path it read
    problem_field: str | None  # for the hub copy; None = detect
    answer_field: str | None
    answer_from_solution: bool
    protocol: str  # "avg@16" or "greedy"
    n: int
    temperature: float


# The paper's protocol: sets under SMALL_BENCH problems are sampled SAMPLES times at
# SAMPLE_TEMPERATURE (avg@16), larger ones once, greedily.
SMALL_BENCH = 100
SAMPLES, SAMPLE_TEMPERATURE = 16, 0.6


def _avg16(name: str, hub_id: str | None, split: str = "test", **fields: Any) -> Benchmark:
    return Benchmark(name, hub_id, split, f"{name}.jsonl", fields.get("problem"), fields.get("answer"),
                     fields.get("from_solution", False), f"avg@{SAMPLES}", SAMPLES, SAMPLE_TEMPERATURE)


def _greedy(name: str, hub_id: str | None, split: str = "test", **fields: Any) -> Benchmark:
    return Benchmark(name, hub_id, split, f"{name}.jsonl", fields.get("problem"), fields.get("answer"),
                     fields.get("from_solution", False), "greedy", 1, 0.0)


# Hub ids from shared/data/README.md. Field names are given only where the hub schema was
# seen; elsewhere detection handles both the Qwen layout and common re-uploads.
BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        _avg16("aime24", "HuggingFaceH4/aime_2024", "train", problem="problem", answer="answer"),
        _avg16("aime25", "math-ai/aime25"),
        _avg16("amc23", "math-ai/amc23"),
        _greedy("math500", "HuggingFaceH4/MATH-500", problem="problem", answer="answer"),
        _greedy("minerva_math", "math-ai/minervamath", from_solution=True),
        _greedy("olympiadbench", "math-ai/olympiadbench"),
    )
}


def resolve_bench_names(names: Sequence[str]) -> list[str]:
    """Expand ``all`` (and comma lists) into benchmark names, keeping order, without repeats."""
    out: list[str] = []
    for entry in names:
        for name in filter(None, (part.strip() for part in entry.split(","))):
            out.extend(BENCHMARKS if name == "all" else [name])
    return list(dict.fromkeys(out))


def _local_bench_file(data_dir: str, name: str) -> Path | None:
    # bench/normalized layout first, then the Qwen eval suite's {name}/test.jsonl.
    for path in (Path(data_dir) / f"{name}.jsonl", Path(data_dir) / name / "test.jsonl"):
        if path.is_file():
            return path
    return None


def load_benchmark(
    name: str, data_dir: str | None = None, limit: int | None = None
) -> tuple[Benchmark, list[Problem]]:
    """A benchmark and its problems, from ``data_dir`` (else ``$P2O_DATA_DIR``, else the hub).

    A name outside the registry is a custom benchmark if ``{data_dir}/{name}.jsonl`` exists;
    its protocol follows its size like the paper's (< 100 problems -> avg@16 at T=0.6).
    """
    data_dir = data_dir or os.environ.get("P2O_DATA_DIR") or None
    bench = BENCHMARKS.get(name)
    path = _local_bench_file(data_dir, name) if data_dir else None
    if bench is None and path is None:
        where = f" and no {name}.jsonl in {data_dir}" if data_dir else " (a custom benchmark needs --data-dir)"
        raise P2OError(f"unknown benchmark {name!r}{where}; known: {', '.join(BENCHMARKS)}, all")
    if path is not None:
        problems = load_problems(str(path))
    elif data_dir:
        raise RecordError(data_dir, None, f"no {name}.jsonl or {name}/test.jsonl here")
    else:
        assert bench is not None and bench.hub_id is not None
        problems = load_problems(
            bench.hub_id,
            problem_field=bench.problem_field,
            answer_field=bench.answer_field,
            split=bench.hub_split,
            answer_from_solution=bench.answer_from_solution,
        )
    if bench is None:
        make = _avg16 if len(problems) < SMALL_BENCH else _greedy
        bench = make(name, None)
    if path is not None:
        bench = dataclasses.replace(bench, local_file=str(path.resolve()))
    return bench, problems[:limit] if limit else problems
