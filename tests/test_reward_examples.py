"""The rewards' worked examples end to end on CPU: examples/choice (the choice reward with a user
reward beside it) and examples/code (the code reward) through the chained commands, the same
rewards through `p2o run`, and a broken user reward stopping a command with exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from helpers import ENV
from p2o_cli.data.problems import load_problems
from p2o_cli.files.records import Assignment, Hard, Rollout, Template, read_records
from p2o_cli.reward.builtins import choice_reward
from p2o_cli.reward.code import code_reward
from p2o_cli.reward.values import weighted_total

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
BREVITY = EXAMPLES / "rewards" / "brevity.py"
# The chain scripts call `p2o`: the one installed beside this interpreter.
SCRIPT_ENV = {**ENV, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{ENV['PATH']}"}


def test_the_example_problems_are_right() -> None:
    """The gold answers score full marks under their rewards (a wrong file would teach nothing)."""
    choice = load_problems(str(EXAMPLES / "choice" / "problems.jsonl"))
    fields = [{**p.meta, "id": p.id, "answer": p.answer} for p in choice]
    assert choice_reward([f"The answer is ({p.answer})." for p in choice], fields) == [1.0] * len(choice)
    code = load_problems(str(EXAMPLES / "code" / "problems.jsonl"))
    fields = [{**p.meta, "answer": p.answer} for p in code]
    assert code_reward([f"```python\n{p.answer}```" for p in code], fields, timeout=10.0, memory_mb=256) == \
        [1.0] * len(code)
    assert code_reward(["def nothing(): pass"], fields[:1], timeout=10.0, memory_mb=256) == [0.0]
    assert len(BREVITY.read_text().splitlines()) <= 10


def run_chain(example: str, work: Path, model: Path) -> None:
    result = subprocess.run(["bash", str(EXAMPLES / example / "chain.sh"), str(work), str(model)],
                            capture_output=True, text=True, env=SCRIPT_ENV, timeout=1200)
    assert result.returncode == 0, result.stdout + result.stderr


def check_chain(work: Path, n_problems: int, k: int = 4) -> tuple[list[Rollout], list[Hard]]:
    rollouts = read_records(work / "rollouts.jsonl", Rollout, unique=True)
    hard = read_records(work / "hard.jsonl", Hard)
    templates = read_records(work / "templates.jsonl", Template)
    assignments = read_records(work / "assignments.jsonl", Assignment)
    templated = read_records(work / "rollouts-templated.jsonl", Rollout)
    assert len(rollouts) == len(templated) == n_problems * k
    assert templates[0].template_id == "t0" and {a.id for a in assignments} == {h.id for h in hard}
    assert all(r.template_id is not None for r in templated if r.id in {h.id for h in hard})
    state = orjson.loads((work / "step-1" / "trainer_state.json").read_bytes())
    assert state["global_step"] >= 1
    return rollouts, hard


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_choice_example_with_a_user_reward_through_the_chain(tmp_path, tiny_model_dir) -> None:
    run_chain("choice", tmp_path, tiny_model_dir)
    rollouts, hard = check_chain(tmp_path, n_problems=6)
    for r in rollouts:  # each component beside the total, the problem's options carried along
        assert set(r.rewards) == {"choice", "brevity"}
        assert r.reward == pytest.approx(weighted_total([r.rewards["choice"], r.rewards["brevity"]], [1, 0.1]))
        assert r.meta is not None and len(r.meta["options"]) == 4
    assert all(h.meta is not None and "options" in h.meta for h in hard)


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_code_example_through_the_chain(tmp_path, tiny_model_dir) -> None:
    run_chain("code", tmp_path, tiny_model_dir)
    rollouts, hard = check_chain(tmp_path, n_problems=4)
    assert all(r.rewards is None and 0.0 <= r.reward <= 1.0 for r in rollouts)  # one component: the total
    assert all(r.meta is not None and r.meta["tests"] for r in rollouts)
    assert {h.id for h in hard} == {r.id for r in rollouts}  # an untrained model writes no working code


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_a_user_reward_through_p2o_run(tmp_path, tiny_model_dir) -> None:
    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "p2o_cli", "run", "--model", str(tiny_model_dir),
        "--data", str(EXAMPLES / "choice" / "problems.jsonl"), "--out", str(out), "--epochs", "2",
        "--batch-size", "3", "--k", "2", "--max-new-tokens", "8", "--temperature", "1.0", "--lr", "1e-3",
        "--min-hard", "2", "--reflector", "toy", "--width", "2", "--minibatch", "2", "--budget", "8",
        "--dev-size", "2", "--gepa-max-new-tokens", "8",
        "--reward", "choice", "--reward", f"{BREVITY}:brevity", "--reward-weights", "1,0.1",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=1200)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [orjson.loads(line) for line in (out / "metrics.jsonl").read_bytes().splitlines()]
    steps = [row for row in rows if "critic/rewards/mean" in row]
    assert len(steps) == 4  # 2 epochs x 2 batches
    for row in steps:
        assert 0.0 <= row["reward/choice/mean"] <= 1.0 and 0.0 <= row["reward/brevity/mean"] <= 1.0
        assert row["reward/errors"] == row["reward/timeouts"] == 0 and row["reward/unjudged"] == 0
    gepa = [row for row in rows if "gepa/templates" in row]
    assert gepa and all(row["reward/errors"] == 0 for row in gepa)
    rollouts = read_records(out / "epoch-0" / "rollouts-0000.jsonl", Rollout)
    assert all(set(r.rewards) == {"choice", "brevity"} for r in rollouts)


BROKEN = """
def broken(responses, problems):
    return [len(p["tests"]) for p in problems]  # no such field in these problems
"""


@pytest.mark.timeout(600)
def test_a_broken_user_reward_stops_the_command_with_exit_2(tmp_path, tiny_model_dir) -> None:
    reward = tmp_path / "broken.py"
    reward.write_text(BROKEN)
    out = tmp_path / "rollouts.jsonl"
    base = [sys.executable, "-m", "p2o_cli", "rollout", "--model", str(tiny_model_dir), "--data",
            str(EXAMPLES / "choice" / "problems.jsonl"), "--k", "2", "--max-new-tokens", "4", "--out", str(out)]
    result = subprocess.run([*base, "--reward", f"{reward}:broken"], capture_output=True, text=True, env=ENV,
                            timeout=600)
    assert result.returncode == 2, result.stderr
    assert f"reward '{reward}:broken' failed on every response of its first batch (12): KeyError: 'tests'" \
        in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()
    # Before any model loads: an unknown reward, or a missing function.
    for spec, message in [("nonesuch", "unknown reward 'nonesuch'"), (f"{reward}:gone", "has no function 'gone'")]:
        result = subprocess.run([*base, "--reward", spec], capture_output=True, text=True, env=ENV, timeout=600)
        assert result.returncode == 2 and message in result.stderr, result.stderr


@pytest.mark.timeout(600)
def test_eval_scores_a_benchmark_with_the_rewards_given(tmp_path, tiny_model_dir) -> None:
    from typer.testing import CliRunner

    from p2o_cli.cli import app

    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "toy-mc.jsonl").write_bytes((EXAMPLES / "choice" / "problems.jsonl").read_bytes())
    out = tmp_path / "results.json"
    result = CliRunner().invoke(app, [
        "eval", "--model", str(tiny_model_dir), "--bench", "toy-mc", "--data-dir", str(bench), "--eval-n", "2",
        "--eval-max-new-tokens", "8", "--out", str(out), "--reward", "choice", "--reward", f"{BREVITY}:brevity",
        "--reward-weights", "1,0.1"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    results = orjson.loads(out.read_bytes())
    assert results["reward"] == {"rewards": ["choice", f"{BREVITY}:brevity"], "weights": [1.0, 0.1],
                                 "reward/errors": 0, "reward/timeouts": 0, "reward/unjudged": 0}
    samples = [orjson.loads(line) for line in (tmp_path / "results.samples.jsonl").read_bytes().splitlines()]
    assert len(samples) == 12 and all(set(s["rewards"]) == {"choice", "brevity"} for s in samples)
