from __future__ import annotations

import io
import json
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from p2o_cli.data.problems import load_problems
from p2o_cli.errors import RecordError
from p2o_cli.evaluation import benchmarks
from p2o_cli.evaluation.benchmarks import BENCHMARKS, load_benchmark, resolve_bench_names
from p2o_cli.files.records import write_records
from p2o_cli.reward.verify import last_boxed

SUFFIX = " Let's think step by step and output the final answer within \\boxed{}."
SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def verl_row(question: str, answer: str, index: int) -> dict:
    return {
        "data_source": "deepscaler",
        "prompt": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question + SUFFIX}],
        "reward_model": {"style": "rule", "ground_truth": answer},
        "extra_info": {"index": index, "split": "train"},
    }


# ---------------------------------------------------------------- load_problems


def test_jsonl_fields_ids_and_answer_types(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "set.jsonl",
        [
            {"id": 7, "problem": "1+1?", "answer": 2},
            {"idx": "b", "question": "Half of 1?", "answer": 0.5},
            {"unique_id": "test/x.json", "Question": "27?", "answer": 27.0},
            {"input": "No id here?", "answer": "x"},
        ],
    )
    problems = load_problems(str(path))
    assert [p.id for p in problems] == ["7", "b", "test/x.json", "set-3"]
    assert [p.problem for p in problems] == ["1+1?", "Half of 1?", "27?", "No id here?"]
    assert [p.answer for p in problems] == ["2", "0.5", "27", "x"]
    assert load_problems(str(path), limit=2) == problems[:2]


def test_json_array_and_data_object(tmp_path: Path) -> None:
    rows = [{"problem": f"q{i}", "answer": str(i)} for i in range(3)]
    (tmp_path / "arr.json").write_text(json.dumps(rows))
    (tmp_path / "obj.json").write_text(json.dumps({"data": rows}))
    arr = load_problems(str(tmp_path / "arr.json"))
    assert [(p.id, p.problem, p.answer) for p in arr] == [
        ("arr-0", "q0", "0"),
        ("arr-1", "q1", "1"),
        ("arr-2", "q2", "2"),
    ]
    assert [p.answer for p in load_problems(str(tmp_path / "obj.json"))] == ["0", "1", "2"]


def test_parquet_olympiad_layout(tmp_path: Path) -> None:
    table = pa.Table.from_pylist(
        [
            {"id": 1606, "question": "Find N.", "final_answer": ["$\\frac{1}{2}$"]},
            {"id": 1607, "question": "Find M.", "final_answer": ["3"]},
        ]
    )
    pq.write_table(table, tmp_path / "olymp.parquet")
    problems = load_problems(str(tmp_path / "olymp.parquet"))
    assert [(p.id, p.problem, p.answer) for p in problems] == [
        ("1606", "Find N.", "\\frac{1}{2}"),
        ("1607", "Find M.", "3"),
    ]


def test_verl_layout_jsonl_and_parquet(tmp_path: Path) -> None:
    rows = [verl_row("What is 2+3?", "5", 11), verl_row("What is 4*4?", "16", 12)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "verl.parquet")
    for path in (write_jsonl(tmp_path / "verl.jsonl", rows), tmp_path / "verl.parquet"):
        problems = load_problems(str(path))
        # The chat list's last user turn, with the appended instruction removed.
        assert [p.problem for p in problems] == ["What is 2+3?", "What is 4*4?"]
        assert [p.answer for p in problems] == ["5", "16"]
        assert [p.source for p in problems] == ["deepscaler", "deepscaler"]
        assert [p.id for p in problems] == ["verl-0", "verl-1"]
    by_index = load_problems(str(tmp_path / "verl.parquet"), id_field="extra_info.index")
    assert [p.id for p in by_index] == ["11", "12"]


def test_field_mapping_with_dotted_paths(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "m.jsonl",
        [{"meta": {"text": "Q?"}, "answer": "wrong", "reward_model": {"ground_truth": "42"}, "key": "k1"}],
    )
    (p,) = load_problems(str(path), problem_field="meta.text", answer_field="reward_model.ground_truth", id_field="key")
    assert (p.id, p.problem, p.answer) == ("k1", "Q?", "42")


def test_answer_from_solution_takes_the_last_balanced_box(tmp_path: Path) -> None:
    sol = "First \\boxed{1}, then finally $\\boxed{\\frac{a}{b^{2}}}$."
    path = write_jsonl(tmp_path / "s.jsonl", [{"problem": "Q", "solution": sol}])
    assert load_problems(str(path))[0].answer == "\\frac{a}{b^{2}}"
    assert last_boxed("no box") is None
    assert last_boxed("\\boxed{a} \\boxed{b") == "a"  # an unclosed last box falls back


def test_answer_from_solution_flag_prefers_the_box(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "s.jsonl", [{"problem": "Q", "answer": "raw", "solution": "so \\boxed{7}"}])
    assert load_problems(str(path))[0].answer == "raw"
    assert load_problems(str(path), answer_from_solution=True)[0].answer == "7"


@pytest.mark.parametrize(
    ("rows", "kwargs", "expected"),
    [
        (
            [{"problem": "a", "answer": "1"}, {"answer": "2"}],
            {},
            ":2: no problem field (tried: problem, question, Question, input, prompt)",
        ),
        (
            [{"problem": "a"}],
            {},
            ":1: no answer field (tried: answer, final_answer, reward_model.ground_truth, solution)",
        ),
        (
            [{"id": 1, "problem": "a", "answer": "1"}, {"id": "1", "problem": "b", "answer": "2"}],
            {},
            ":2: duplicate id '1' (first at line 1)",
        ),
        ([{"problem": "a", "answer": "1"}], {"answer_field": "gold"}, ":1: no answer field 'gold'"),
        ([{"problem": "a", "solution": "no box"}], {}, ":1: field 'solution' has no \\boxed{} answer"),
        ([{"problem": 3, "answer": "1"}], {}, ":1: field 'problem' must be a string, got int"),
        ([{"problem": "a", "answer": {"x": 1}}], {}, ":1: field 'answer' must be a string or a number, got dict"),
    ],
)
def test_bad_rows_name_path_and_line(tmp_path: Path, rows: list[dict], kwargs: dict, expected: str) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(RecordError) as err:
        load_problems(str(path), **kwargs)
    assert str(err.value) == f"{path}{expected}"


def test_malformed_files(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text('{"problem": "a", "answer": "1"}\n\n{"problem": \n')
    with pytest.raises(RecordError, match=r"broken\.jsonl:3: malformed JSON"):
        load_problems(str(path))
    (tmp_path / "rows.json").write_text(json.dumps([{"problem": "a", "answer": "1"}, {"problem": "b"}]))
    with pytest.raises(RecordError, match=r"rows\.json:2: no answer field"):
        load_problems(str(tmp_path / "rows.json"))
    (tmp_path / "scalar.json").write_text("3")
    with pytest.raises(RecordError, match="expected a JSON array"):
        load_problems(str(tmp_path / "scalar.json"))
    with pytest.raises(RecordError, match=r"missing\.parquet: no such file"):
        load_problems(str(tmp_path / "missing.parquet"))


def test_hub_ids_go_through_load_dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    calls = []

    def fake_load_dataset(source: str, split: str) -> list[dict]:
        calls.append((source, split))
        return [{"problem": "p", "answer": 5}, {"problem": "q", "answer": "6"}]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    problems = load_problems("org/some-set", split="test")
    assert calls == [("org/some-set", "test")]
    assert [(p.id, p.answer) for p in problems] == [("some-set-0", "5"), ("some-set-1", "6")]

    def failing(source: str, split: str) -> None:
        raise ConnectionError("offline\nmore detail")

    monkeypatch.setattr(datasets, "load_dataset", failing)
    with pytest.raises(RecordError, match=r"^org/x: cannot load dataset \(split 'train'\): offline$"):
        load_problems("org/x")


# ---------------------------------------------------------------- benchmarks


def test_resolve_bench_names() -> None:
    six = ["aime24", "aime25", "amc23", "math500", "minerva_math", "olympiadbench"]
    assert resolve_bench_names(["all"]) == six
    assert resolve_bench_names(["math500,aime24", "aime24", "toy-hard"]) == ["math500", "aime24", "toy-hard"]
    assert list(BENCHMARKS) == six


def test_registry_protocols_follow_the_paper() -> None:
    for name in ("aime24", "aime25", "amc23"):
        b = BENCHMARKS[name]
        assert (b.protocol, b.n, b.temperature) == ("avg@16", 16, 0.6)
    for name in ("math500", "minerva_math", "olympiadbench"):
        b = BENCHMARKS[name]
        assert (b.protocol, b.n, b.temperature) == ("greedy", 1, 0.0)
    assert BENCHMARKS["aime24"].hub_id == "HuggingFaceH4/aime_2024"
    assert BENCHMARKS["minerva_math"].answer_from_solution


def test_load_real_benchmarks(shared_data: Path) -> None:
    normalized = shared_data / "bench" / "normalized"
    expected = {"aime24": 30, "aime25": 30, "amc23": 40, "math500": 500, "minerva_math": 272, "olympiadbench": 675}
    for name, rows in expected.items():
        bench, problems = load_benchmark(name, str(normalized))
        assert len(problems) == rows, name
        assert bench.local_file == str((normalized / f"{name}.jsonl").resolve())
        assert len({p.id for p in problems}) == rows
        assert all(p.problem.strip() and p.answer.strip() for p in problems)
    _, aime24 = load_benchmark("aime24", str(normalized))
    assert (aime24[0].id, aime24[0].answer) == ("0", "204")
    assert load_benchmark("amc23", str(normalized))[1][0].answer == "27"
    assert load_benchmark("minerva_math", str(normalized))[1][0].answer == "1.6"
    assert len(load_benchmark("math500", str(normalized), limit=5)[1]) == 5


def test_data_dir_from_environment(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P2O_DATA_DIR", str(shared_data / "bench" / "normalized"))
    bench, problems = load_benchmark("aime25")
    assert (bench.protocol, len(problems), problems[0].answer) == ("avg@16", 30, "70")


def test_qwen_layout_directory(tmp_path: Path, shared_data: Path) -> None:
    # {data_dir}/{name}/test.jsonl with the verbatim Qwen rows (gold from solution / final_answer).
    for name in ("minerva_math", "olympiadbench"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "test.jsonl").symlink_to(shared_data / "bench" / f"{name}.jsonl")
    normalized = shared_data / "bench" / "normalized"
    for name in ("minerva_math", "olympiadbench"):
        raw = load_benchmark(name, str(tmp_path))[1]
        norm = load_benchmark(name, str(normalized))[1]
        assert [p.answer for p in raw] == [p.answer for p in norm]
        assert [p.problem for p in raw] == [p.problem for p in norm]


def test_custom_bench_protocol_by_size(tmp_path: Path) -> None:
    write_jsonl(
        tmp_path / "toy-hard.jsonl", [{"idx": i, "problem": f"{i}+1=?", "answer": str(i + 1)} for i in range(12)]
    )
    write_jsonl(tmp_path / "toy-big.jsonl", [{"problem": f"{i}+2=?", "answer": str(i + 2)} for i in range(100)])
    bench, problems = load_benchmark("toy-hard", str(tmp_path), limit=4)
    assert (bench.protocol, bench.n, bench.temperature, bench.hub_id) == ("avg@16", 16, 0.6, None)
    assert [p.id for p in problems] == ["0", "1", "2", "3"]
    big, problems = load_benchmark("toy-big", str(tmp_path))
    assert (big.protocol, big.n, big.temperature, len(problems)) == ("greedy", 1, 0.0, 100)
    assert problems[0].id == "toy-big-0"


def test_unknown_and_missing_benchmarks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("P2O_DATA_DIR", raising=False)
    with pytest.raises(ValueError, match="unknown benchmark 'nope'.*known: aime24, aime25, amc23, math500"):
        load_benchmark("nope", str(tmp_path))
    with pytest.raises(ValueError, match="needs --data-dir"):
        load_benchmark("nope")
    # A known name with a data dir that lacks it is an error, not a silent hub download.
    with pytest.raises(RecordError, match="no aime24.jsonl or aime24/test.jsonl"):
        load_benchmark("aime24", str(tmp_path))


def test_known_bench_without_data_dir_uses_the_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("P2O_DATA_DIR", raising=False)
    calls = []

    def fake_load_problems(source: str, **kwargs: object) -> list:
        calls.append((source, kwargs))
        return []

    monkeypatch.setattr(benchmarks, "load_problems", fake_load_problems)
    bench, problems = load_benchmark("aime24")
    assert problems == [] and bench.local_file == "aime24.jsonl"
    assert calls == [("HuggingFaceH4/aime_2024", {"problem_field": "problem", "answer_field": "answer",
                                                  "split": "train", "answer_from_solution": False})]


def test_every_other_field_of_a_row_reaches_meta(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [
        {"id": "c1", "question": "Pick one", "answer": "B", "options": ["x", "y"], "source": "mc", "schema": "x@1"},
        {"id": "c2", "problem": "Code", "answer": "def f(): ...", "tests": ["assert f() is None"],
         "meta": {"level": 3}},
        {"idx": 7, "problem": "Plain", "answer": "1", "data_source": "math"},
    ]
    path = tmp_path / "p.jsonl"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    problems = load_problems(str(path))
    assert [p.meta for p in problems] == [{"options": ["x", "y"]}, {"level": 3, "tests": ["assert f() is None"]},
                                          None]
    assert [p.source for p in problems] == ["mc", None, "math"]
    assert load_problems(str(path), keep_fields=())[0].meta is None  # only the fields asked for
    # Problem records on stdin read the same way (``p2o rollout --data -``), written ones round-trip.
    written = tmp_path / "written.jsonl"
    write_records(written, problems)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(written.read_bytes())))
    assert load_problems("-") == problems
