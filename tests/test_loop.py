"""A miniature `p2o run`: two epochs on a tiny model, GEPA included, then kill-and-resume."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import torch
from safetensors.torch import load_file

from helpers import ENV, assert_same_metrics, run_args
from p2o_cli.config import build, read_config_file
from p2o_cli.files.records import Assignment, Hard, Template, read_records
from p2o_cli.loop.config import RunConfig


def metrics(run: Path) -> list[dict]:
    return [orjson.loads(line) for line in (run / "metrics.jsonl").read_bytes().splitlines()]


@pytest.mark.timeout(600)  # two runs, a resume and a finished-run resume, on a shared 2-core machine
def test_miniature_run_then_kill_and_resume_matches(tmp_path, tiny_model_dir, world) -> None:
    straight = tmp_path / "straight"
    result = subprocess.run(run_args(tiny_model_dir, world, straight, "--report-to", "tensorboard"),
                            capture_output=True, env=ENV, timeout=240)
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    # TensorBoard got every metric of metrics.jsonl, under the same name, at the same step.
    assert_same_metrics(straight / "tensorboard", straight / "metrics.jsonl")
    # The run ends with a readable summary, not a dict.
    tail = result.stdout.decode() + result.stderr.decode()
    assert "final eval: toy-mini " in tail and "{" not in tail.split("done:")[-1]
    # Resuming a finished run redoes nothing: no second final eval.
    before = (straight / "metrics.jsonl").read_bytes()
    again = subprocess.run([sys.executable, "-m", "p2o_cli", "run", "--resume", str(straight)],
                           capture_output=True, env=ENV, timeout=120)
    assert again.returncode == 0, again.stderr.decode()[-3000:]
    assert "already finished" in again.stdout.decode() + again.stderr.decode()
    assert (straight / "metrics.jsonl").read_bytes() == before

    rows = metrics(straight)
    steps = [r for r in rows if "actor/pg_loss" in r]
    assert [r["training/step"] for r in steps] == [1, 2, 3, 4]
    assert all(set(r) >= {"critic/rewards/mean", "actor/grad_norm", "rollout/plain_reward_mean"} for r in steps)
    timing = {"timing/gen", "timing/reward", "timing/old_logprob", "timing/update", "timing/io",
              "perf/gen_tokens_per_s", "perf/train_tokens_per_s", "perf/attention_path"}
    assert all(set(r) >= timing and r["timing/gen"] > 0 and r["timing/reward"] >= 0 for r in steps)
    parts = ("timing/gen", "timing/reward", "timing/step", "timing/io")
    assert all(r["timing/policy_step"] >= sum(r[k] for k in parts) for r in steps)
    assert all(r["perf/attention_path"] == 0.0 for r in steps)  # the tiny model runs sdpa: padded rows
    epochs = [r for r in rows if "epoch/hard_count" in r]
    assert [r["epoch"] for r in epochs] == [0, 1]
    evals = [r for r in rows if "eval/toy-mini/accuracy" in r]
    assert [r["training/step"] for r in evals] == [0, 2, 4]
    config = orjson.loads((straight / "config.json").read_bytes())
    assert config["batch_size"] == 4 and config["reflector"]["reflector"] == "toy"
    state = orjson.loads((straight / "state.json").read_bytes())
    assert state["done"] and state["step"] == 4 and state["epoch"] == 2
    assert sorted(p.name for p in (straight / "checkpoints").iterdir()) == ["step-3", "step-4"]

    # An untrained model solves nothing, so epoch 0's hard set goes to GEPA and epoch 1 rolls out
    # those problems with the assigned templates, one per rollout, each carrying the plain
    # rewards that made its problem hard. The last epoch has no prompt phase.
    gepa_rows = [r for r in rows if "gepa/dev_coverage" in r]
    assert [r["epoch"] for r in gepa_rows] == [0]
    assert not (straight / "epoch-1" / "templates.jsonl").exists()
    hard0 = {h.id: h.rewards for h in read_records(straight / "epoch-0" / "hard.jsonl", Hard)}
    templates = read_records(straight / "epoch-0" / "templates.jsonl", Template)
    assignments = read_records(straight / "epoch-0" / "assignments.jsonl", Assignment)
    assert templates[0].template_id == "t0" and len(assignments) == 8
    epoch1 = [orjson.loads(line) for f in sorted((straight / "epoch-1").glob("rollouts-*.jsonl"))
              for line in f.read_bytes().splitlines()]
    assert len(epoch1) == 16  # 8 problems x K=2, every one assigned
    by_id = {a.id: a.template_ids for a in assignments}
    for rollout in epoch1:
        assert rollout["template_id"] == by_id[rollout["id"]][rollout["k"]]
        assert rollout["plain_rewards"] == hard0[rollout["id"]]

    # Kill a second run with SIGKILL once it has a checkpoint, then resume it.
    killed = tmp_path / "killed"
    proc = subprocess.Popen(run_args(tiny_model_dir, world, killed), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=ENV)
    deadline = time.time() + 200
    while not (killed / "checkpoints" / "step-1").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not orjson.loads((killed / "state.json").read_bytes())["done"]

    resumed = subprocess.run([sys.executable, "-m", "p2o_cli", "run", "--resume", str(killed)],
                             capture_output=True, env=ENV, timeout=240)
    assert resumed.returncode == 0, resumed.stderr.decode()[-3000:]
    assert orjson.loads((killed / "state.json").read_bytes())["done"]
    a = load_file(straight / "checkpoints" / "step-4" / "model.safetensors")
    b = load_file(killed / "checkpoints" / "step-4" / "model.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)
    # The resumed run's metrics have each step once, as the uninterrupted run's do.
    assert [r["training/step"] for r in metrics(killed) if "actor/pg_loss" in r] == [1, 2, 3, 4]


def test_config_file_and_validation(tmp_path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('[run]\nmodel = "m"\ndata = "d.jsonl"\nbatch-size = 8\neval_bench = ["toy-hard"]\n')
    values = read_config_file(path, RunConfig)
    assert values == {"model": "m", "data": "d.jsonl", "batch_size": 8, "bench": ["toy-hard"]}
    assert build(RunConfig, values).batch_size == 8
    path.write_text('[run]\nbatchsize = 8\n')
    with pytest.raises(ValueError, match="unknown key 'batchsize'"):
        read_config_file(path, RunConfig)
    with pytest.raises(ValueError, match="--mini-batches cannot exceed --batch-size"):
        build(RunConfig, {"model": "m", "data": "d", "batch_size": 1, "mini_batches": 2})
    # objective options are checked when the config is built, before any model or data loads
    with pytest.raises(ValueError, match="--templated-baseline must be one of group, plain"):
        build(RunConfig, {"model": "m", "data": "d", "templated_baseline": "mean"})
    with pytest.raises(ValueError, match="--template-ratio-mask"):
        build(RunConfig, {"model": "m", "data": "d", "template_ratio_mask": "5,1"})


def test_row_selection_and_eval_grader_keys_are_checked_early() -> None:
    base = {"model": "m", "data": "d"}
    cfg = build(RunConfig, {**base, "sample": 50, "sample_seed": 3, "filter": "difficulty>=7", "grader": "qwen"})
    assert (cfg.problems.sample, cfg.problems.sample_seed, cfg.problems.filter, cfg.eval.grader) == (
        50, 3, "difficulty>=7", "qwen")
    with pytest.raises(ValueError, match="--filter 'difficulty=>7'"):
        build(RunConfig, {**base, "filter": "difficulty=>7"})
    with pytest.raises(ValueError, match="--grader must be one of strict, qwen, got 'suite'"):
        build(RunConfig, {**base, "grader": "suite"})


def test_bad_flag_values_exit_2(tmp_path, tiny_model_dir, world) -> None:
    out = tmp_path / "run"
    result = subprocess.run(run_args(tiny_model_dir, world, out, "--distill", "sideways"), capture_output=True,
                            env=ENV, timeout=120)
    assert result.returncode == 2
    assert "--distill" in result.stderr.decode() and "Traceback" not in result.stderr.decode()


def test_sample_must_be_positive() -> None:
    with pytest.raises(ValueError, match="--sample must be at least 1"):
        build(RunConfig, {"model": "m", "data": "d", "sample": 0})


@pytest.mark.timeout(300)
def test_run_log_tells_a_person_where_the_run_is_and_what_to_do_next(tmp_path, tiny_model_dir, world) -> None:
    """Read as a log file (stderr not a terminal): every step line says step N/M, its seconds and
    the run's ETA; the summary names the wall time, final checkpoint, metrics file and next command."""
    out, log = tmp_path / "run", tmp_path / "run.log"
    with log.open("wb") as stream:
        result = subprocess.run(run_args(tiny_model_dir, world, out, "--epochs", "1", "--no-gepa"),
                                stdout=stream, stderr=subprocess.STDOUT, env=ENV, timeout=240)
    text = log.read_text()
    assert result.returncode == 0, text[-3000:]
    step_lines = [line for line in text.splitlines() if re.search(r" step \d+/\d+ \(epoch \d+\): reward", line)]
    assert [re.search(r"step (\d+)/(\d+)", line).groups() for line in step_lines] == [("1", "2"), ("2", "2")]
    for line in step_lines:
        assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", line), line  # timestamped, as in any log
        assert re.search(r" \d+\.\d s/step  ETA \d+:\d\d", line), line
    assert step_lines[-1].split("ETA ")[1].startswith("0:00")  # the last step leaves nothing to wait for
    summary = text.split("done: ")[1]
    assert re.match(r"2 train steps over 1 epochs in \d+:\d\d", summary)
    checkpoint = re.search(r"final checkpoint: (\S+)", summary).group(1)
    assert Path(checkpoint) == out / "checkpoints" / "step-2" and Path(checkpoint).is_dir()
    assert f"metrics: {out / 'metrics.jsonl'}" in summary
    assert summary.rstrip().splitlines()[-1] == f"next: p2o report {out}"
