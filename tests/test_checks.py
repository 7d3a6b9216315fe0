"""Silent surprises made loud: schedule, temperature, K vs assignments, the hard set's model, benchmarks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from p2o_cli.cli import app
from p2o_cli.cli.checks import model_of_hard, resolve_train_temperature, schedule_warning
from p2o_cli.files.records import Assignment, Hard, Rollout, read_records, write_records
from p2o_cli.rollout.mining import mine_hard

runner = CliRunner()


def rollout(temperature: float | None, model: str | None = None, reward: float = 0.0, k: int = 0) -> Rollout:
    return Rollout(id="q1", k=k, prompt="p", response="r", reward=reward, pred=None, finish_reason="stop",
                   n_tokens=1, problem="1+1?", answer="2", temperature=temperature, model=model)


def test_schedule_warning() -> None:
    assert schedule_warning(0, 1000, 1.96e-8) is None  # small, but a real LR inside the schedule
    past = schedule_warning(1000, 1000, 0.0)
    assert past is not None and "train step 1001 is past --total-steps 1000" in past
    zero = schedule_warning(5, 1000, 0.0)
    assert zero is not None and "LR 0" in zero


def test_train_temperature_comes_from_the_rollouts_and_a_mismatch_warns() -> None:
    assert resolve_train_temperature(None, [rollout(1.0), rollout(1.0)]) == (1.0, None)
    assert resolve_train_temperature(None, [rollout(None)]) == (0.6, None)  # old files: the default
    temperature, warning = resolve_train_temperature(0.6, [rollout(1.0)])
    assert temperature == 0.6 and warning is not None and "differs" in warning and "(1)" in warning
    assert resolve_train_temperature(1.0, [rollout(1.0)]) == (1.0, None)
    with pytest.raises(ValueError, match="several temperatures"):
        resolve_train_temperature(None, [rollout(1.0), rollout(0.6)])
    with pytest.raises(ValueError, match="greedily"):
        resolve_train_temperature(None, [rollout(0.0)])


def test_hard_records_carry_the_rollouts_model() -> None:
    hard = mine_hard([rollout(1.0, "ckpt-3", k=i) for i in range(3)])
    assert hard[0].model == "ckpt-3"
    assert model_of_hard(hard) == "ckpt-3"
    assert model_of_hard([Hard("q", "p", "a", [0.0], 0.0)]) is None  # written before the field existed
    with pytest.raises(ValueError, match="several models"):
        model_of_hard([Hard("a", "p", "a", [0.0], 0.0, model="m1"), Hard("b", "p", "a", [0.0], 0.0, model="m2")])


def test_old_rollout_and_hard_files_still_read(tmp_path) -> None:
    path = tmp_path / "old.jsonl"
    old = {"schema": "rollout@1", "id": "q", "k": 0, "prompt": "p", "response": "r", "reward": 1.0, "pred": "2",
           "finish_reason": "stop", "n_tokens": 3}
    path.write_bytes(orjson.dumps(old) + b"\n")
    (record,) = read_records(path, Rollout, unique=False)
    assert record.temperature is None and record.model is None


def test_rollout_records_temperature_and_model_and_refuses_a_k_mismatch(tmp_path, tiny_model_dir) -> None:
    problems = tmp_path / "p.jsonl"
    problems.write_bytes(orjson.dumps({"id": "q1", "problem": "What is 1+1?", "answer": "2"}) + b"\n")
    templates = tmp_path / "t.jsonl"
    templates.write_bytes(b"".join(orjson.dumps({"template_id": f"t{i}", "text": f"Hint {i}."}) + b"\n"
                                   for i in range(6)))
    assign = tmp_path / "a.jsonl"
    write_records(assign, [Assignment("q1", [f"t{i}" for i in range(6)])])
    out = tmp_path / "r.jsonl"
    args = ["rollout", "--model", str(tiny_model_dir), "--data", str(problems), "--temperature", "1.0",
            "--max-new-tokens", "4", "--assign", str(assign), "--templates", str(templates), "--out", str(out)]
    result = runner.invoke(app, [*args, "--k", "4"])  # 6 templates for 4 rollouts: two would never be used
    assert result.exit_code == 2 and "has 6 template ids; --k is 4" in result.output
    result = runner.invoke(app, [*args, "--k", "6"])
    assert result.exit_code == 0, result.output
    records = read_records(out, Rollout, unique=False)
    assert {r.temperature for r in records} == {1.0} and {r.model for r in records} == {str(tiny_model_dir)}

    # train-step takes the rollouts' temperature; an explicit different one is trained but warned about.
    ckpt = tmp_path / "ckpt"
    result = runner.invoke(app, ["train-step", "--model", str(tiny_model_dir), "--rollouts", str(out), "--out",
                                 str(ckpt), "--temperature", "0.6", "--total-steps", "1", "--warmup-ratio", "0"])
    assert result.exit_code == 0, result.output
    assert "--temperature 0.6 differs from the temperature the rollouts were sampled at (1)" in result.output
    config = orjson.loads((ckpt / "p2o_config.json").read_bytes())
    assert config["train"]["temperature"] == 0.6
    # The chain continues past --total-steps 1: said out loud.
    result = runner.invoke(app, ["train-step", "--model", str(ckpt), "--rollouts", str(out), "--out",
                                 str(tmp_path / "ckpt2")])
    assert result.exit_code == 0, result.output
    assert "train step 2 is past --total-steps 1" in result.output
    assert "differs" not in result.output  # no --temperature: the rollouts' own 1.0
    assert orjson.loads((tmp_path / "ckpt2" / "p2o_config.json").read_bytes())["train"]["temperature"] == 1.0


def test_eval_without_benchmark_data_fails_before_the_model_loads(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("P2O_DATA_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    # The model does not exist: had it been opened first, the error would name it.
    result = runner.invoke(app, ["eval", "--model", str(tmp_path / "no-model"), "--bench", "aime24",
                                 "--out", str(tmp_path / "r.json")])
    assert result.exit_code == 2
    assert "p2o: error: benchmark aime24:" in result.output
    assert "--data-dir" in result.output and "P2O_DATA_DIR" in result.output
    assert "no-model" not in result.output and not (tmp_path / "r.json").exists()


def test_gepa_takes_its_model_from_the_hard_file(tmp_path, tiny_model_dir) -> None:
    hard = tmp_path / "hard.jsonl"
    write_records(hard, [Hard(f"q{i}", f"What is {i}+{i}?", str(2 * i), [0.0] * 3, 0.0, model=str(tiny_model_dir))
                         for i in range(4)])
    out = tmp_path / "templates.jsonl"
    args = ["gepa", "--hard", str(hard), "--reflector", "toy", "--out", str(out), "--width", "2",
            "--minibatch", "1", "--budget", "4", "--gepa-max-new-tokens", "4"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert Path(out).is_file()
    nameless = tmp_path / "old-hard.jsonl"
    write_records(nameless, [Hard("q0", "What is 0+0?", "0", [0.0] * 3, 0.0)])
    result = runner.invoke(app, ["gepa", "--hard", str(nameless), "--reflector", "toy", "--out", str(out)])
    assert result.exit_code == 2 and "name no model" in result.output and "--model" in result.output


# ---------------------------------------------------------------- warnings where a user would want one


def test_a_batch_without_learning_signal_is_said_by_train_step_and_counted_by_run(tmp_path, tiny_model_dir) -> None:
    from p2o_cli.loop.summary import RunSummary, format_summary
    from p2o_cli.rl.metrics import learning_signal

    # Every group all right or all wrong: GRPO advantages are all 0.
    flat = [rollout(1.0, reward=r, k=k) for k, r in enumerate((1.0, 1.0))]
    flat += [dataclasses.replace(rollout(1.0, k=k), id="q2") for k in range(2)]
    path = write_rollouts_file(tmp_path / "flat.jsonl", flat)
    result = runner.invoke(app, ["train-step", "--model", str(tiny_model_dir), "--rollouts", str(path),
                                 "--out", str(tmp_path / "c1"), "--total-steps", "4"])
    assert result.exit_code == 0, result.output
    assert "no learning signal: in each of the batch's 2 groups all rewards are equal" in result.output
    mixed = write_rollouts_file(tmp_path / "mixed.jsonl", one_right_one_wrong())
    result = runner.invoke(app, ["train-step", "--model", str(tiny_model_dir), "--rollouts", str(mixed),
                                 "--out", str(tmp_path / "c2"), "--total-steps", "4"])
    assert result.exit_code == 0 and "no learning signal" not in result.output

    assert not learning_signal({"critic/advantages/max": 0.0, "critic/advantages/min": 0.0})
    assert learning_signal({"critic/advantages/max": 0.7, "critic/advantages/min": -0.7})
    text = format_summary(RunSummary(8, 2, [3, 1], {}, no_signal_steps=3), "runs/x")
    assert "train steps with no learning signal (every group's rewards equal): 3 of 8" in text
    assert "no learning signal" not in format_summary(RunSummary(8, 2, [3, 1], {}), "runs/x")


def write_rollouts_file(path: Path, rollouts: list[Rollout]) -> Path:
    write_records(path, rollouts)
    return path


def one_right_one_wrong() -> list[Rollout]:
    return [rollout(1.0, reward=1.0, k=0), rollout(1.0, reward=0.0, k=1)]


def test_a_chained_train_step_still_in_warmup_for_want_of_total_steps_warns(tmp_path, tiny_model_dir) -> None:
    from p2o_cli.cli.checks import warmup_warning

    note = warmup_warning(2, 50, 1000, 5.9e-8, 1e-6)
    assert note is not None and "train step 3 is still in the LR warmup" in note and "--total-steps" in note
    assert warmup_warning(50, 50, 1000, 1e-6, 1e-6) is None  # warmup over

    rollouts = write_rollouts_file(tmp_path / "r.jsonl", one_right_one_wrong())
    result = runner.invoke(app, ["train-step", "--model", str(tiny_model_dir), "--rollouts", str(rollouts),
                                 "--out", str(tmp_path / "c1")])
    assert result.exit_code == 0 and "train step 1 is still in the LR warmup" in result.output
    # The chain continues the stored schedule, still the default 1000 steps: still warned.
    result = runner.invoke(app, ["train-step", "--model", str(tmp_path / "c1"), "--rollouts", str(rollouts),
                                 "--out", str(tmp_path / "c2")])
    assert result.exit_code == 0 and "train step 2 is still in the LR warmup" in result.output
    # The chain's length given: its warmup is the user's choice.
    result = runner.invoke(app, ["train-step", "--model", str(tiny_model_dir), "--rollouts", str(rollouts),
                                 "--out", str(tmp_path / "c3"), "--total-steps", "40"])
    assert result.exit_code == 0 and "warmup" not in result.output


def test_compare_paper_names_every_way_the_protocol_differs_and_protocol_paper_follows_it() -> None:
    from p2o_cli.cli.eval import EvalJob, protocol_layer
    from p2o_cli.config import resolve
    from p2o_cli.evaluation.paper import paper_table, protocol_differences

    cfg, _ = resolve(EvalJob, {"model": "m", "bench": ["aime24"], "eval_limit": 2}, None, protocol_layer)
    differences = protocol_differences(cfg.eval)
    assert [d.split()[0] for d in differences] == ["--grader", "--eval-max-new-tokens", "--eval-limit"]
    assert "--eval-max-new-tokens 2,048 (paper: 12,288)" in differences
    assert "paper's protocol" in str(paper_table({"this run": {"aime24": 10.0}}, differences).caption)
    paper, _ = resolve(EvalJob, {"model": "m", "bench": ["aime24"], "protocol": "paper"}, None, protocol_layer)
    assert (paper.eval.grader, paper.eval.eval_max_new_tokens) == ("qwen", 12_288)
    assert protocol_differences(paper.eval) == []
    given, _ = resolve(EvalJob, {"model": "m", "protocol": "paper", "eval_n": 4}, None, protocol_layer)
    assert protocol_differences(given.eval) == ["--eval-n 4 (paper: 16 at T=0.6 under 100 problems, else greedy)"]


def test_eval_compare_paper_warns_in_the_log_and_in_the_table(tmp_path, tiny_model_dir) -> None:
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "aime24.jsonl").write_bytes(b"".join(
        orjson.dumps({"id": f"q{i}", "problem": f"What is {i}+1?", "answer": str(i + 1)}) + b"\n" for i in range(3)))
    args = ["eval", "--model", str(tiny_model_dir), "--bench", "aime24", "--data-dir", str(bench), "--eval-n", "1",
            "--eval-max-new-tokens", "4", "--out", str(tmp_path / "r.json"), "--compare", "paper"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "--compare paper: this evaluation differs from the paper's protocol (--grader strict" in result.output
    assert "not the paper's protocol: --grader strict (paper: qwen)" in result.output
    assert "--protocol paper evaluates as the paper did" in result.output


def test_gepa_warns_when_its_response_limit_is_far_from_the_rollouts(tmp_path, tiny_model_dir) -> None:
    from p2o_cli.cli.checks import gepa_budget_warning

    cut = [rollout(1.0, k=k) for k in range(3)]
    cut = [dataclasses.replace(r, finish_reason="length", n_tokens=64) for r in cut]
    hard = mine_hard(cut)
    assert [(f.n_tokens, f.finish_reason) for f in hard[0].failures] == [(64, "length")] * 3
    note = gepa_budget_warning(hard, 1024)
    assert note is not None and "3 of the hard set's failed rollouts were cut at 64 tokens" in note
    assert gepa_budget_warning(hard, 64) is None and gepa_budget_warning(hard, 127) is None
    long = mine_hard([dataclasses.replace(r, finish_reason="stop", n_tokens=3000) for r in cut])
    note = gepa_budget_warning(long, 1024)
    assert note is not None and "ended on their own after more than --gepa-max-new-tokens 1,024" in note
    assert gepa_budget_warning([Hard("q", "p", "a", [0.0], 0.0, failures=[])], 1024) is None  # nothing known

    path = tmp_path / "hard.jsonl"
    write_records(path, [dataclasses.replace(hard[0], id=pid, model=str(tmp_path / "no-model")) for pid in "ab"])
    result = runner.invoke(app, ["gepa", "--hard", str(path), "--reflector", "toy", "--out",
                                 str(tmp_path / "t.jsonl"), "--budget", "4"])
    assert "p2o: warning: 6 of the hard set's failed rollouts were cut at 64 tokens" in result.output
