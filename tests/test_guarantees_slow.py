"""Lose nothing, the process-killing cases (``make test-slow``; marker ``slow_reliability``).

- ``kill -9`` of ``p2o run``: its reward pool (forkserver, resource tracker, workers) goes too;
- two runs on one directory, started half a second apart, or while one is held stopped: one
  runs, the other is refused before it writes anything;
- a run prunes only the checkpoints it wrote, never a name it merely matches;
- SIGTERM: one line on stderr, no leaked-semaphore noise after it;
- Ctrl-C at any moment of start-up: exit 130 with one line, never "internal error".
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from helpers import ENV, process_state, run_args, session_pids, tree

pytestmark = pytest.mark.slow_reliability

P2O = [sys.executable, "-m", "p2o_cli"]


# The tiny model never writes \boxed{}, so the strict grader has nothing to judge and the reward
# pool would never start; the qwen grader judges any number, and sampled answers hold some.
POOL_UP = ("--grader", "qwen", "--eval-temperature", "1.0", "--eval-n", "4", "--eval-max-new-tokens", "16")


def wait_until(condition, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.timeout(600)
def test_kill_9_of_a_run_takes_its_reward_pool_along(tmp_path, tiny_model_dir, world) -> None:
    out = tmp_path / "run"
    # Stopped (SIGSTOP) in the first update: the first eval was scored, so the pool is up.
    proc = subprocess.Popen(run_args(tiny_model_dir, world, out, *POOL_UP), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**ENV, "P2O_FAULT": "update:1:STOP"},
                            start_new_session=True)
    try:
        reached = wait_until(lambda: process_state(proc.pid) == "T" or proc.poll() is not None, 540)
        assert reached, "never reached the update"
        assert proc.poll() is None
        helpers = [pid for pid in session_pids(proc.pid) if pid != proc.pid]
        assert len(helpers) >= 3, helpers  # forkserver, resource tracker, two workers
        proc.kill()
        proc.wait()
        gone = wait_until(lambda: not session_pids(proc.pid), 60)
        assert gone, f"orphans: {session_pids(proc.pid)}"
    finally:
        for pid in session_pids(proc.pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.timeout(900)
def test_two_runs_started_half_a_second_apart_one_is_refused(tmp_path, tiny_model_dir, world) -> None:
    out = tmp_path / "run"
    first = subprocess.Popen(run_args(tiny_model_dir, world, out, "--no-gepa", "--epochs", "1"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    time.sleep(0.5)
    second = subprocess.Popen(run_args(tiny_model_dir, world, out, "--no-gepa", "--epochs", "1"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    errs = [p.communicate(timeout=800)[1].decode() for p in (first, second)]
    codes = sorted([first.returncode, second.returncode])
    assert codes == [0, 2], errs
    refused = errs[[first.returncode, second.returncode].index(2)]
    assert "in use" in refused and "Traceback" not in refused
    steps = [orjson.loads(line)["training/step"] for line in (out / "metrics.jsonl").read_bytes().splitlines()
             if b"actor/pg_loss" in line]
    assert steps == [1, 2]  # one run's metrics, not two interleaved


@pytest.mark.timeout(900)
def test_a_run_directory_held_by_a_stopped_run_is_refused_before_anything_is_written(tmp_path, tiny_model_dir,
                                                                                    world) -> None:
    out = tmp_path / "run"
    first = subprocess.Popen(run_args(tiny_model_dir, world, out), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env={**ENV, "P2O_FAULT": "rollout:1:STOP"})
    try:
        assert wait_until(lambda: process_state(first.pid) == "T" or first.poll() is not None, 540)
        assert first.poll() is None, "the first run ended before it could be held"
        before = tree(out)
        for args in (run_args(tiny_model_dir, world, out), [*P2O, "run", "--resume", str(out)]):
            second = subprocess.run(args, capture_output=True, env=ENV, timeout=600)
            err = second.stderr.decode()
            assert second.returncode == 2, err[-2000:]
            assert str(first.pid) in err and "Traceback" not in err
            assert tree(out) == before
    finally:
        first.kill()
        first.wait()


@pytest.mark.timeout(900)
def test_a_run_prunes_only_the_checkpoints_it_wrote(tmp_path, tiny_model_dir, world) -> None:
    out = tmp_path / "run"
    args = run_args(tiny_model_dir, world, out, "--no-gepa", "--epochs", "1", "--keep-last", "1")
    killed = subprocess.run(args, capture_output=True, env={**ENV, "P2O_FAULT": "update:3"}, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    foreign = out / "checkpoints" / "step-99"
    shutil.copytree(tiny_model_dir, foreign)  # somebody's own checkpoint, put beside the run's
    (foreign / "trainer_state.json").write_text('{"global_step": 99}')
    resumed = subprocess.run([*P2O, "run", "--resume", str(out)], capture_output=True, env=ENV, timeout=600)
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    assert (foreign / "trainer_state.json").read_text() == '{"global_step": 99}'
    state = orjson.loads((out / "state.json").read_bytes())
    assert state["done"] and Path(state["checkpoint"]).name == "step-2" and Path(state["checkpoint"]).is_dir()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-2", "step-99"]


@pytest.mark.timeout(600)
def test_sigterm_leaves_one_line_and_no_leaked_semaphores(tmp_path, tiny_model_dir, world) -> None:
    out = tmp_path / "run"
    proc = subprocess.run(run_args(tiny_model_dir, world, out, *POOL_UP), capture_output=True,
                          env={**ENV, "P2O_FAULT": "update:1:TERM"}, timeout=600)
    err = proc.stderr.decode()
    assert proc.returncode == 143, err[-2000:]
    tail = err[err.index("p2o: interrupted (SIGTERM)"):].strip().splitlines()
    assert tail == ["p2o: interrupted (SIGTERM); outputs are whole or absent"], err[-2000:]
    assert "resource_tracker" not in err and "leaked" not in err


@pytest.mark.timeout(900)
@pytest.mark.parametrize("command", ["train-step", "run"])
def test_ctrl_c_at_any_moment_of_start_up_is_exit_130_with_one_line(tmp_path, tiny_model_dir, world,
                                                                   command) -> None:
    rollouts = tmp_path / "r.jsonl"
    rollouts.write_bytes(b"".join(orjson.dumps({
        "id": "q0", "k": k, "prompt": "What is 1+1?", "response": "2", "reward": float(k), "pred": "2",
        "finish_reason": "stop", "n_tokens": 2}) + b"\n" for k in range(2)))
    seen = []
    for index, delay in enumerate([0.5 + 0.2 * i for i in range(10)]):
        out = tmp_path / f"out-{index}"
        args = ([*P2O, "train-step", "--model", str(tiny_model_dir), "--rollouts", str(rollouts), "--out", str(out)]
                if command == "train-step" else run_args(tiny_model_dir, world, out))
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        err = proc.communicate(timeout=300)[1].decode()
        lines = [line for line in err.splitlines() if line.startswith("p2o:")]
        seen.append((delay, proc.returncode, lines))
        if proc.returncode == 0:
            continue  # it finished before the signal
        assert proc.returncode == 130 and lines == ["p2o: interrupted (SIGINT); outputs are whole or absent"], seen
        assert "Traceback" not in err, err[-2000:]
