from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from p2o_cli.errors import RecordError
from p2o_cli.files.records import (
    Assignment,
    Failure,
    Hard,
    Problem,
    Rollout,
    Template,
    problem_fields,
    read_records,
    to_dict,
    write_records,
)

SAMPLES = [
    Problem(id="p1", problem="1+1?", answer="2", source="toy", meta={"level": 1}),
    Rollout(id="p1", k=0, prompt="x~", response="\\boxed{2}", reward=1.0, pred="2", finish_reason="stop",
            n_tokens=9, template_id="t1", template="Think.", policy_version=3, original_prompt="x",
            problem="1+1?", answer="2", rewards={"math": 1.0, "brevity": 1.0}, meta={"level": 1}, source="toy"),
    Hard(id="p1", problem="1+1?", answer="2", rewards=[0.0, 1.0], mean_reward=0.5,
         failures=[Failure(response="3", pred="3", template_id=None)], meta={"tests": ["assert True"]}),
    Template(template_id="t1", text="Think.", parent_id=None, iteration=2, dev_ids=["a", "b"],
             dev_scores=[1.0, 0.0], train_solved=["c"]),
    Assignment(id="p1", template_ids=["t1", "t1", "t2"]),
]


@pytest.mark.parametrize("record", SAMPLES, ids=lambda r: type(r).__name__)
def test_round_trip(tmp_path: Path, record: object) -> None:
    path = tmp_path / "r.jsonl"
    # Rollouts share their id (K per problem); (id, k) is what must be unique.
    records = [record, dataclasses.replace(record, k=1)] if isinstance(record, Rollout) else [record]
    assert write_records(path, records) >= 1
    back = read_records(path, type(record))
    assert back[0] == record
    line = orjson.loads(path.read_bytes().splitlines()[0])
    assert line["schema"].split("@")[0] == type(record).__name__.lower()


def write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


GOOD = orjson.dumps(to_dict(SAMPLES[0]))


@pytest.mark.parametrize(
    "lines, line_no, fragment",
    [
        ([GOOD, b'{"id": "p2", "problem": "x"'], 2, "malformed JSON"),
        ([b'[1, 2]'], 1, "expected a JSON object"),
        ([GOOD, b'{"id": "p2", "problem": "x"}'], 2, "missing field 'answer'"),
        ([b'{"id": "p2", "problem": 5, "answer": "1"}'], 1, "'problem' must be a string"),
        ([b'{"id": 7, "problem": "q", "answer": "1"}'], 1, "'id' must be a string"),
        ([GOOD, b"", GOOD], 3, "duplicate id 'p1' (first on line 1)"),
        ([GOOD, b'{"id": "p\xff", "problem": "q", "answer": "1"}'], 2, "not valid UTF-8"),
        ([b'{"schema": "rollout@1", "id": "p", "problem": "q", "answer": "1"}'], 1, "expected a problem@1 record"),
    ],
)
def test_bad_input_names_path_and_line(tmp_path: Path, lines: list[bytes], line_no: int, fragment: str) -> None:
    path = write_lines(tmp_path / "bad.jsonl", lines)
    with pytest.raises(RecordError) as err:
        read_records(path, Problem)
    assert str(err.value).startswith(f"{path}:{line_no}: ")
    assert fragment in str(err.value)


def test_wrong_nested_type(tmp_path: Path) -> None:
    bad = to_dict(SAMPLES[2])
    bad["failures"] = [{"response": 3, "pred": None}]
    path = write_lines(tmp_path / "hard.jsonl", [orjson.dumps(bad)])
    with pytest.raises(RecordError, match=r":1: field 'response' must be a string"):
        read_records(path, Hard)


def test_bool_is_not_a_number(tmp_path: Path) -> None:
    bad = to_dict(SAMPLES[1])
    bad["reward"] = True
    path = write_lines(tmp_path / "r.jsonl", [orjson.dumps(bad)])
    with pytest.raises(RecordError, match="'reward' must be a number"):
        read_records(path, Rollout)


def test_failed_write_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"

    def records():
        yield SAMPLES[0]
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_records(out, records())
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_previous_file(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    write_records(out, [SAMPLES[0]])
    before = out.read_bytes()

    def records():
        yield SAMPLES[0]
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_records(out, records())
    assert out.read_bytes() == before


def test_stdin_and_stdout() -> None:
    code = (
        "from p2o_cli.files.records import read_records, write_records, Problem;"
        "write_records('-', read_records('-', Problem))"
    )
    data = GOOD + b"\n"
    result = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True, check=True)
    assert orjson.loads(result.stdout) == orjson.loads(GOOD)


def test_records_written_before_reward_components_still_read(tmp_path: Path) -> None:
    """rollout@1 and hard@1 lines without ``rewards``/``meta``/``source`` (older files) read as before."""
    old_rollout = {"schema": "rollout@1", "id": "p1", "k": 0, "prompt": "x", "response": "r", "reward": 0.0,
                   "pred": None, "finish_reason": "stop", "n_tokens": 1}
    old_hard = {"schema": "hard@1", "id": "p1", "problem": "q", "answer": "2", "rewards": [0.0], "mean_reward": 0.0}
    (tmp_path / "r.jsonl").write_bytes(orjson.dumps(old_rollout) + b"\n")
    (tmp_path / "h.jsonl").write_bytes(orjson.dumps(old_hard) + b"\n")
    [rollout] = read_records(tmp_path / "r.jsonl", Rollout)
    [hard] = read_records(tmp_path / "h.jsonl", Hard)
    assert rollout.rewards is None and rollout.meta is None and hard.meta is None and hard.source is None


def test_reward_components_must_lie_in_the_unit_interval(tmp_path: Path) -> None:
    line = to_dict(SAMPLES[1])
    for value, message in [(7, "rewards.brevity[0] is 7.0; rewards lie in [0, 1]"),
                           ("x", "field 'rewards.brevity' must be a number")]:
        line["rewards"] = {"math": 1.0, "brevity": value}
        (tmp_path / "r.jsonl").write_bytes(orjson.dumps(line) + b"\n")
        with pytest.raises(RecordError, match=re.escape(message)):
            read_records(tmp_path / "r.jsonl", Rollout)


def test_problem_fields_are_what_a_reward_sees() -> None:
    problem = Problem(id="p1", problem="q", answer="B", source="mmlu", meta={"options": ["x", "y"], "id": "shadow"})
    assert problem_fields(problem) == {"options": ["x", "y"], "id": "p1", "problem": "q", "answer": "B",
                                       "source": "mmlu"}
    rollout = dataclasses.replace(SAMPLES[1], meta=problem.meta, source="mmlu", problem="q", answer="B")
    assert problem_fields(rollout) == problem_fields(problem)
