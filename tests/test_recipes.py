"""Training-set recipes: --filter, --sample and `p2o data prepare`."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from p2o_cli.data.problems import load_problems
from p2o_cli.data.recipes import prepare, sidecar_path
from p2o_cli.data.selection import RowFilter, parse_filter, sample_indices, select_problems
from p2o_cli.files.records import Problem

FILTERS: list[tuple[str, RowFilter]] = [
    ("difficulty>=7", RowFilter("difficulty", ">=", 7.0)),
    (" difficulty >= 7.5 ", RowFilter("difficulty", ">=", 7.5)),
    ("level!=5", RowFilter("level", "!=", 5.0)),
    ("a.b<-1", RowFilter("a.b", "<", -1.0)),
    ("x<=0", RowFilter("x", "<=", 0.0)),
    ("x>3", RowFilter("x", ">", 3.0)),
    ("source==amc", RowFilter("source", "==", "amc")),
    ("source == '7'", RowFilter("source", "==", "7")),  # quotes make text of a number
]


@pytest.mark.parametrize(("expr", "expected"), FILTERS)
def test_parse_filter(expr: str, expected: RowFilter) -> None:
    assert parse_filter(expr) == expected


@pytest.mark.parametrize("expr", ["difficulty", "difficulty>>7", ">=7", "x=5", "x ~ 3", ""])
def test_bad_filters_say_what_is_expected(expr: str) -> None:
    with pytest.raises(ValueError, match="--filter"):
        parse_filter(expr)


def test_filter_compares_numbers_as_numbers_and_text_as_text() -> None:
    rows = [{"d": 10}, {"d": "9.5"}, {"d": 6.9}, {"d": None}]
    assert [parse_filter("d>=7").matches(r) for r in rows] == [True, True, False, False]
    # as text "10" < "7", which is why unquoted numbers compare as numbers
    assert [parse_filter("d>='7'").matches(r) for r in rows[:3]] == [False, True, False]
    with pytest.raises(ValueError, match="no field 'e'"):
        parse_filter("e>1").matches({"d": 1})
    with pytest.raises(ValueError, match="not a number"):
        parse_filter("d>1").matches({"d": "hard"})


def test_sample_is_seeded_ordered_and_not_the_first_n() -> None:
    first = sample_indices(100, 10, seed=0)
    assert first == sample_indices(100, 10, seed=0) == sorted(first)
    assert len(set(first)) == 10 and first != list(range(10))
    assert sample_indices(100, 10, seed=1) != first
    assert sample_indices(5, 10, seed=0) == [0, 1, 2, 3, 4]  # more than there are: all of them


def test_select_problems_on_records() -> None:
    problems = [Problem(str(i), "q", "1", meta={"difficulty": i}) for i in range(10)]
    chosen = select_problems(problems, parse_filter("meta.difficulty>=5"), sample=3, seed=0)
    assert len(chosen) == 3 and all(p.meta["difficulty"] >= 5 for p in chosen)


def test_load_problems_filters_then_samples_then_limits(shared_data: Path) -> None:
    path = str(shared_data / "train" / "deepmath_5k.jsonl")
    hard = load_problems(path, row_filter=parse_filter("difficulty>=7"), keep_fields=("difficulty",))
    assert len(hard) == 1560 and min(p.meta["difficulty"] for p in hard) >= 7
    sampled = load_problems(path, row_filter=parse_filter("difficulty>=7"), sample=50, sample_seed=3)
    assert len(sampled) == 50 and {p.id for p in sampled} <= {p.id for p in hard}
    assert [p.id for p in load_problems(path, sample=50, sample_seed=3, limit=5)] == [p.id for p in
            load_problems(path, sample=50, sample_seed=3)][:5]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_prepare_deepmath_twice_is_the_same_file(shared_data: Path, tmp_path: Path) -> None:
    source = str(shared_data / "train" / "raw" / "bupo_deepmath-5k.parquet")
    first = prepare("deepmath-5k", tmp_path / "a" / "deepmath-5k.jsonl", source=source, seed=0)
    second = prepare("deepmath-5k", tmp_path / "b" / "deepmath-5k.jsonl", source=source, seed=0)
    assert _sha(first.path) == _sha(second.path) == first.recipe["sha256"]
    rows = [json.loads(line) for line in first.path.read_text().splitlines()]
    # the offline slice has 1,560 rows with difficulty >= 7, fewer than the 5,000 asked for
    assert len(rows) == first.recipe["count"] == 1560 and first.recipe["requested"] == 5000
    assert all(row["meta"]["difficulty"] >= 7 for row in rows)
    assert first.sidecar == sidecar_path(first.path) and first.sidecar.name == "deepmath-5k.recipe.json"
    recipe = json.loads(first.sidecar.read_text())
    assert {k: recipe[k] for k in ("recipe", "source", "filter", "seed")} == {
        "recipe": "deepmath-5k", "source": source, "filter": "difficulty>=7", "seed": 0}
    assert load_problems(str(first.path))[0].id == rows[0]["id"]  # usable as --data


def test_prepare_deepscaler_samples_by_seed(shared_data: Path, tmp_path: Path) -> None:
    source = str(shared_data / "train" / "deepscaler.jsonl")
    a = prepare("deepscaler-5k", tmp_path / "a.jsonl", source=source, seed=0, count=100)
    b = prepare("deepscaler-5k", tmp_path / "b.jsonl", source=source, seed=1, count=100)
    assert a.recipe["count"] == b.recipe["count"] == 100 and a.recipe["filter"] is None
    assert a.recipe["sha256"] != b.recipe["sha256"]
    ids = [json.loads(line)["id"] for line in a.path.read_text().splitlines()]
    assert ids != [f"deepscaler-{i}" for i in range(100)]  # not the first 100


def _p2o(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "p2o_cli", *args], check=False, cwd=cwd, env=env,
                          capture_output=True, text=True)


def test_cli_prepare_and_bad_filter(shared_data: Path, tmp_path: Path) -> None:
    source = str(shared_data / "train" / "deepmath_5k.jsonl")
    done = _p2o("data", "prepare", "deepmath-5k", "--from", source, "--seed", "0", "--out", "d.jsonl", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "1,560 problems" in done.stderr and (tmp_path / "d.recipe.json").is_file()
    bad = _p2o("rollout", "--model", "m", "--data", "d.jsonl", "--filter", "difficulty>>7", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("p2o: error: --filter 'difficulty>>7'")
    unknown = _p2o("data", "prepare", "deepmath-6k", "--out", "x.jsonl", cwd=tmp_path)
    assert unknown.returncode == 2 and "unknown recipe" in unknown.stderr and not (tmp_path / "x.jsonl").exists()
