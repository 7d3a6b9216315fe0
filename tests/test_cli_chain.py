"""rollout -> mine-hard -> eval through the real command line, via files and via pipes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from p2o_cli.cli import app
from p2o_cli.files.records import Hard, Rollout, read_records

P2O = [sys.executable, "-m", "p2o_cli"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
runner = CliRunner()


@pytest.fixture(scope="module")
def problems(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "problems.jsonl"
    rows = [{"id": f"q{i}", "problem": f"What is {i}+{i}?", "answer": str(2 * i)} for i in range(4)]
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_chain_through_files(tmp_path, tiny_model_dir, problems) -> None:
    rollouts = tmp_path / "rollouts.jsonl"
    result = invoke("rollout", "--model", str(tiny_model_dir), "--data", str(problems), "--k", "3",
                    "--temperature", "1.0", "--max-new-tokens", "8", "--out", str(rollouts))
    assert result.exit_code == 0, result.output
    records = read_records(rollouts, Rollout, unique=False)
    assert len(records) == 12 and {r.id for r in records} == {"q0", "q1", "q2", "q3"}
    assert all(r.n_tokens <= 8 and r.answer == str(2 * int(r.id[1])) for r in records)

    hard = tmp_path / "hard.jsonl"
    result = invoke("mine-hard", "--rollouts", str(rollouts), "--out", str(hard))
    assert result.exit_code == 0, result.output
    mined = read_records(hard, Hard)
    # An untrained model solves nothing: every problem is hard, with all 3 failures kept.
    assert [h.id for h in mined] == ["q0", "q1", "q2", "q3"]
    assert all(len(h.failures) == 3 and h.mean_reward == 0.0 for h in mined)

    bench = tmp_path / "bench"
    bench.mkdir()
    shutil.copy(problems, bench / "toy-q.jsonl")
    out = tmp_path / "results.json"
    result = invoke("eval", "--model", str(tiny_model_dir), "--bench", "toy-q", "--data-dir", str(bench),
                    "--eval-n", "2", "--eval-max-new-tokens", "8", "--out", str(out))
    assert result.exit_code == 0, result.output
    results = orjson.loads(out.read_bytes())
    assert results["benchmarks"]["toy-q"]["n_problems"] == 4
    samples = (tmp_path / "results.samples.jsonl").read_bytes().splitlines()
    assert len(samples) == 8


def test_chain_through_pipes(tmp_path, tiny_model_dir, problems) -> None:
    model = str(tiny_model_dir)
    rollout = subprocess.Popen(
        [*P2O, "rollout", "--model", model, "--data", str(problems), "--k", "2", "--max-new-tokens", "6"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV,
    )
    mine = subprocess.run([*P2O, "mine-hard", "--rollouts", "-", "--out", "-"], stdin=rollout.stdout,
                          capture_output=True, env=ENV, timeout=300)
    rollout.stdout.close()
    assert rollout.wait(timeout=300) == 0, rollout.stderr.read().decode()
    assert mine.returncode == 0, mine.stderr.decode()
    lines = [orjson.loads(line) for line in mine.stdout.splitlines()]
    assert [h["id"] for h in lines] == ["q0", "q1", "q2", "q3"]
    assert all(h["schema"] == "hard@1" and len(h["rewards"]) == 2 for h in lines)
    # Piped output stays free of progress bars and banners.
    assert b"\x1b[" not in mine.stdout


def test_eval_reads_the_shared_benchmarks(tmp_path, tiny_model_dir, shared_data) -> None:
    out = tmp_path / "results.json"
    result = invoke("eval", "--model", str(tiny_model_dir), "--bench", "aime24", "--bench", "math500",
                    "--data-dir", str(shared_data / "bench" / "normalized"), "--eval-limit", "2", "--eval-n", "1",
                    "--eval-max-new-tokens", "4", "--out", str(out))
    assert result.exit_code == 0, result.output
    results = orjson.loads(out.read_bytes())
    assert set(results["benchmarks"]) == {"aime24", "math500"}
    samples = [orjson.loads(s) for s in (tmp_path / "results.samples.jsonl").read_bytes().splitlines()]
    first_aime = next(s for s in samples if s["bench"] == "aime24")
    assert first_aime["answer"] == "204"
    assert "Aya goes for a $9$-kilometer-long walk" in first_aime["prompt"]


@pytest.mark.parametrize(
    "content, message",
    [
        (b'{"id": "a", "k": 0}\n', ":1: missing field"),
        (b"not json\n", ":1: malformed JSON"),
    ],
)
def test_bad_rollouts_exit_2_with_path_line_and_no_output(tmp_path, content: bytes, message: str) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(content)
    out = tmp_path / "hard.jsonl"
    result = subprocess.run([*P2O, "mine-hard", "--rollouts", str(bad), "--out", str(out)],
                            capture_output=True, env=ENV)
    assert result.returncode == 2
    err = result.stderr.decode()
    assert f"{bad}{message}" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_bad_problem_file_keeps_previous_output(tmp_path, tiny_model_dir) -> None:
    bad = tmp_path / "problems.jsonl"
    bad.write_bytes(b'{"id": "a", "problem": "1+1", "answer": "2"}\n{"id": "a", "problem": "x", "answer": "1"}\n')
    out = tmp_path / "rollouts.jsonl"
    out.write_bytes(b"previous\n")
    result = invoke("rollout", "--model", str(tiny_model_dir), "--data", str(bad), "--out", str(out))
    assert result.exit_code == 2
    assert f"{bad}:2: duplicate id 'a'" in result.output
    assert out.read_bytes() == b"previous\n"


def test_missing_model_and_unknown_bench_are_usage_errors(tmp_path, tiny_model_dir, problems) -> None:
    result = invoke("rollout", "--model", str(tmp_path / "nope"), "--data", str(problems))
    assert result.exit_code == 2 and "no such model directory" in result.output
    result = invoke("eval", "--model", str(tiny_model_dir), "--bench", "nonesuch", "--data-dir", str(tmp_path))
    assert result.exit_code == 2 and "nonesuch" in result.output
    result = invoke("rollout", "--model", str(tiny_model_dir), "--data", str(problems), "--assign", "x.jsonl")
    assert result.exit_code == 2 and "--assign and --templates go together" in result.output


def test_help_describes_every_option() -> None:
    for command in ["rollout", "mine-hard", "eval"]:
        result = invoke(command, "--help")
        assert result.exit_code == 0
        assert "--out" in result.output
