"""Reliability: outputs never lose data, bad input gets one line and exit 2, nothing hangs.

Each test reproduces a defect of the reliability campaign (docs/guarantees.md); the slow
tier (tests/test_reliability_slow.py) kills whole runs and fuzzes every reader.
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
from typer.testing import CliRunner

from p2o_cli.cli import app
from p2o_cli.errors import RecordError
from p2o_cli.files.outputs import atomic_path
from p2o_cli.files.records import Assignment, Hard, Problem, Rollout, Template, read_records, to_dict, write_records

P2O = [sys.executable, "-m", "p2o_cli"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def rollout(id: str = "q0", k: int = 0, **kw) -> Rollout:
    values = dict(id=id, k=k, prompt="What is 1+1?", response="\\boxed{2}", reward=1.0, pred="2",
                  finish_reason="stop", n_tokens=4, problem="What is 1+1?", answer="2")
    values.update(kw)
    return Rollout(**values)


def write_lines(path: Path, objects: list[dict]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(o) + b"\n" for o in objects))
    return path


def one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("p2o: error:")]
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


@pytest.fixture
def rollouts_file(tmp_path: Path) -> Path:
    write_records(tmp_path / "r.jsonl", [rollout(k=0, reward=0.0), rollout(k=1, reward=0.0)])
    return tmp_path / "r.jsonl"


# ---------------------------------------------------------------- 1. outputs never destroy data


def test_file_output_never_replaces_a_directory(tmp_path, rollouts_file) -> None:
    inner = tmp_path / "d" / "inner"
    inner.mkdir(parents=True)
    (inner / "precious.txt").write_text("keep")
    result = invoke("mine-hard", "--rollouts", str(rollouts_file), "--out", str(inner))
    assert result.exit_code == 2
    assert "is a directory" in one_error_line(result.output)
    assert (inner / "precious.txt").read_text() == "keep"


def test_current_directory_is_never_an_output(tmp_path, rollouts_file, monkeypatch) -> None:
    from p2o_cli.files.outputs import OutputError, check_output_path

    monkeypatch.chdir(tmp_path)
    for out in (".", str(tmp_path), str(tmp_path.parent)):
        result = invoke("mine-hard", "--rollouts", str(rollouts_file), "--out", out)
        assert result.exit_code == 2, out
        assert "current directory" in one_error_line(result.output)
    with pytest.raises(OutputError):
        check_output_path(".", "checkpoint")


def test_checkpoint_replaces_only_a_p2o_checkpoint(tmp_path, capfd) -> None:
    from p2o_cli.files.outputs import OutputError, check_output_path

    world = tmp_path / "world"
    (world / "bench").mkdir(parents=True)
    (world / "train.jsonl").write_text("{}\n")
    with pytest.raises(OutputError, match="not a p2o checkpoint"):
        check_output_path(world, "checkpoint")
    with pytest.raises(OutputError, match="not a p2o checkpoint"), atomic_path(world, kind="checkpoint") as tmp:
        tmp.mkdir()
    assert (world / "train.jsonl").is_file() and (world / "bench").is_dir()

    # What a Hugging Face Trainer checkpoint holds too: not enough to be p2o's.
    hf = tmp_path / "checkpoint-500"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    (hf / "trainer_state.json").write_text("{}")
    with pytest.raises(OutputError, match="not a p2o checkpoint"):
        check_output_path(hf, "checkpoint")

    ckpt = tmp_path / "ckpt"
    for text in ('{"old": 1}', '{"new": 1}'):  # the first written by p2o, so the second may replace it
        with atomic_path(ckpt, kind="checkpoint") as tmp:
            tmp.mkdir()
            (tmp / "config.json").write_text(text)
            (tmp / "trainer_state.json").write_text("{}")
    assert (ckpt / "config.json").read_text() == '{"new": 1}'
    assert "replacing the checkpoint" in capfd.readouterr().err
    # a file never replaces a checkpoint directory either
    with pytest.raises(OutputError, match="is a directory"):
        write_records(ckpt, [rollout()])


def test_train_step_refuses_a_world_directory_before_loading(tmp_path, tiny_model_dir, rollouts_file) -> None:
    world = tmp_path / "world"
    (world / "bench").mkdir(parents=True)
    (world / "train.jsonl").write_text("{}\n")
    result = invoke("train-step", "--model", str(tiny_model_dir), "--rollouts", str(rollouts_file),
                    "--out", str(world))
    assert result.exit_code == 2 and "not a p2o checkpoint" in one_error_line(result.output)
    assert sorted(p.name for p in world.iterdir()) == ["bench", "train.jsonl"]


def test_unwritable_output_is_refused_before_the_compute(tmp_path, tiny_model_dir, rollouts_file) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    problems = write_lines(tmp_path / "p.jsonl", [{"id": "q0", "problem": "1+1?", "answer": "2"}])
    cases = [
        ("train-step", "--model", str(tiny_model_dir), "--rollouts", str(rollouts_file), "--out", str(blocker / "ck")),
        ("rollout", "--model", str(tiny_model_dir), "--data", str(problems), "--out", str(blocker / "r.jsonl")),
        ("eval", "--model", str(tiny_model_dir), "--bench", "nope", "--out", str(blocker / "res.json")),
    ]
    for args in cases:
        result = invoke(*args)
        assert result.exit_code == 2, args
        # the output is refused first: before the model loads or the benchmark name is looked at
        assert "is not a directory" in one_error_line(result.output), result.output


# ---------------------------------------------------------------- 2. the directory swap


def test_kill_in_the_swap_window_leaves_a_recoverable_checkpoint(tmp_path) -> None:
    target = tmp_path / "ckpt"
    script = (
        "import sys; from p2o_cli.files.outputs import atomic_path\n"
        "for text in ('old', 'new'):\n"
        "    with atomic_path(sys.argv[1], kind='checkpoint') as tmp:\n"
        "        tmp.mkdir(); (tmp / 'config.json').write_text(text); (tmp / 'trainer_state.json').write_text('{}')\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(target)], env={**ENV, "P2O_FAULT": "swap:1"},
                          capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not target.exists() and (tmp_path / ".ckpt.old").is_dir()  # killed between the renames
    from p2o_cli.files.weights import check_checkpoint_files

    check_checkpoint_files(target)  # what loading (train-step, run --resume) does first
    assert (target / "config.json").read_text() == "old"
    assert not (tmp_path / ".ckpt.old").exists()


def test_interrupt_in_the_swap_window_puts_the_old_directory_back(tmp_path, monkeypatch) -> None:
    import p2o_cli.files.outputs as outputs
    from p2o_cli.files.outputs import recover_swap

    target = tmp_path / "ckpt"
    with atomic_path(target, kind="dir") as tmp:
        tmp.mkdir()
        (tmp / "a").write_text("old")

    def interrupt(point: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(outputs, "_fault", interrupt)
    with pytest.raises(KeyboardInterrupt), atomic_path(target, kind="dir") as tmp:
        tmp.mkdir()
        (tmp / "a").write_text("new")
    assert (target / "a").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no .old, no temp left
    assert not recover_swap(target)


# ---------------------------------------------------------------- 3. temp files and signals


def test_stale_temps_of_dead_writers_are_swept_on_the_next_write(tmp_path) -> None:
    from p2o_cli.files.outputs import sweep_stale_temps

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".out.jsonl.p{dead.pid}.x1y2.tmp"
    stale.mkdir()
    (stale / "out.jsonl").write_bytes(b"x" * 1000)
    live = tmp_path / f".out.jsonl.p{os.getpid()}.abcd.tmp"
    live.mkdir()
    other = tmp_path / ".notes.txt.swp"
    other.write_text("not ours")
    write_records(tmp_path / "out.jsonl", [rollout()])
    assert not stale.exists() and live.exists() and other.exists()
    assert sweep_stale_temps(tmp_path) == []


def handles_sigterm(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    if not status.exists():
        return True  # not Linux: fall back to signalling at once
    caught = next(line for line in status.read_text().splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)))


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signals_exit_cleanly_with_one_line(tmp_path, signum, status) -> None:
    # mine-hard blocks reading stdin; the signal lands during start-up (imports) or the read:
    # either way one line, no traceback, 128 + signal.
    proc = subprocess.Popen([*P2O, "mine-hard", "--rollouts", "-", "--out", str(tmp_path / "h.jsonl")],
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    # Before p2o's own code runs (interpreter start-up, ~50 ms) Python's defaults apply; wait
    # until the process catches SIGTERM (Linux: the SigCgt mask), then signal it at once.
    for _ in range(6000):  # at most ~30 s: a p2o that never installs its handlers fails below
        if handles_sigterm(proc.pid) or proc.poll() is not None:
            break
        time.sleep(0.005)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err.decode()
    text = err.decode()
    assert "Traceback" not in text and text.strip().count("\n") == 0 and "interrupted" in text
    assert not (tmp_path / "h.jsonl").exists()


# ---------------------------------------------------------------- 4. clean errors


def truncated_copy(src: Path, dst: Path, name: str) -> Path:
    shutil.copytree(src, dst)
    data = (dst / name).read_bytes()
    (dst / name).write_bytes(data[: len(data) // 2])
    return dst


def test_truncated_weights_are_named_not_a_traceback(tmp_path, tiny_model_dir, rollouts_file) -> None:
    broken = truncated_copy(tiny_model_dir, tmp_path / "broken", "model.safetensors")
    problems = write_lines(tmp_path / "p.jsonl", [{"id": "q0", "problem": "1+1?", "answer": "2"}])
    hard = write_lines(tmp_path / "h.jsonl", [to_dict(Hard(f"h{i}", "1+1?", "2", [0.0], 0.0)) for i in range(2)])
    for args in (
        ("rollout", "--model", str(broken), "--data", str(problems), "--out", str(tmp_path / "r.jsonl")),
        ("train-step", "--model", str(broken), "--rollouts", str(rollouts_file), "--out", str(tmp_path / "ck")),
        ("gepa", "--model", str(broken), "--hard", str(hard), "--reflector", "toy", "--out", str(tmp_path / "t.jsonl")),
    ):
        result = invoke(*args)
        assert result.exit_code == 2, args
        assert "truncated or corrupt safetensors" in one_error_line(result.output)


def test_truncated_optimizer_state_fails_the_trainer_cleanly(tmp_path, tiny_model_dir) -> None:
    from p2o_cli.rl.trainer import PolicyTrainer, TrainConfig

    ckpt = tmp_path / "ck"
    shutil.copytree(tiny_model_dir, ckpt)
    (ckpt / "optimizer.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":")
    with pytest.raises(ValueError, match="optimizer.safetensors: truncated or corrupt"):
        PolicyTrainer.from_checkpoint(ckpt, TrainConfig())


def test_response_ids_outside_the_vocabulary(tmp_path, tiny_model_dir) -> None:
    write_records(tmp_path / "r.jsonl", [rollout(k=0, response_ids=[5, 10**6]), rollout(k=1, reward=0.0)])
    result = invoke("train-step", "--model", str(tiny_model_dir), "--rollouts", str(tmp_path / "r.jsonl"),
                    "--out", str(tmp_path / "ck"))
    assert result.exit_code == 2 and "outside the model's vocabulary" in one_error_line(result.output)
    assert not (tmp_path / "ck").exists()


def test_corrupt_gepa_state_names_the_file(tmp_path) -> None:
    from p2o_cli.gepa.state import STATE_SCHEMA, load_state

    good = {"schema": STATE_SCHEMA, "fingerprint": {}, "dev_ids": ["a"], "train_ids": ["b"],
            "templates": [to_dict(Template("t0", "", dev_ids=["a"], dev_scores=[0.0]))],
            "rng": [3, list(range(625)), None], "train_order": ["b"], "train_pos": 0, "iteration": 0, "spent": 1}
    path = tmp_path / "state.json"
    for change in ({"spent": "lots"}, {"templates": "x"}, {"rng": [1]}, {"train_pos": 9}):
        path.write_bytes(orjson.dumps({**good, **change}))
        with pytest.raises(ValueError, match="state.json: corrupt GEPA state"):
            load_state(path)
    path.write_bytes(b"{not json")
    with pytest.raises(RecordError, match="state.json: malformed JSON"):
        load_state(path)


def test_openai_server_short_or_surrogate_replies() -> None:
    from types import SimpleNamespace as NS

    from p2o_cli.engines.openai import OpenAIEngine, ServerReplyError

    engine = OpenAIEngine.__new__(OpenAIEngine)
    engine.want_logprobs = False
    engine.tokenizer = lambda text, add_special_tokens=False: {"input_ids": list(text)}
    choice = NS(index=0, text="ok \ud800 done", finish_reason="stop", token_ids=[1, 2], logprobs=None)
    (completion,) = engine._completions(NS(choices=[choice], usage=None), 1)
    assert completion.text == "ok \ufffd\ufffd\ufffd done"
    orjson.dumps(completion.text)  # writable
    with pytest.raises(ServerReplyError, match="returned 1 choices where 3"):
        engine._completions(NS(choices=[choice], usage=None), 3)
    with pytest.raises(ServerReplyError, match="returned 0 choices"):
        engine._completions(NS(choices=None, usage=None), 1)


def test_run_state_and_config_errors_name_the_file(tmp_path) -> None:
    from p2o_cli.config import build, read_config_file
    from p2o_cli.loop.config import RunConfig
    from p2o_cli.loop.rundir import RunDir, RunState

    run = tmp_path / "run"
    run.mkdir()
    RunDir(run).write_state(RunState(epoch=1, batch=2, step=3, checkpoint="c", done=True))
    assert RunDir(run).read_state() == RunState(epoch=1, batch=2, step=3, checkpoint="c", done=True)
    (run / "state.json").write_text('{"epoch": 1,')
    with pytest.raises(RecordError, match="state.json: malformed JSON"):
        RunDir(run).read_state()
    (run / "state.json").write_text('{"epoch": "one"}')
    with pytest.raises(ValueError, match="state.json: field 'epoch' must be an integer"):
        RunDir(run).read_state()
    (run / "config.json").write_text("[1]")
    result = invoke("run", "--resume", str(run))
    assert result.exit_code == 2 and "config.json: expected a JSON object" in one_error_line(result.output)
    toml = tmp_path / "run.toml"
    toml.write_text('[run]\nbatch_size = "eight"\n')
    with pytest.raises(ValueError, match="run.toml: field 'batch_size' must be an integer"):
        build(RunConfig, read_config_file(toml, RunConfig), str(toml))


# ---------------------------------------------------------------- 5. size limits


def test_size_limits_and_short_error_lines(tmp_path) -> None:
    from p2o_cli.files.records import MAX_PROBLEM_CHARS

    big = write_lines(tmp_path / "big.jsonl", [{"id": "q", "problem": "x" * (MAX_PROBLEM_CHARS + 1), "answer": "1"}])
    with pytest.raises(RecordError, match=r"big.jsonl:1: field 'problem' is 50,001 characters; the limit is 50,000"):
        read_records(big, Problem)
    huge_id = "i" * 5_000_000
    dup = write_lines(tmp_path / "dup.jsonl", [{"id": huge_id, "problem": "p", "answer": "1"}] * 2)
    result = invoke("rollout", "--model", "/nonexistent", "--data", str(dup), "--out", str(tmp_path / "r.jsonl"))
    assert result.exit_code == 2
    assert len(one_error_line(result.output)) < 700
    long_template = write_lines(tmp_path / "t.jsonl", [to_dict(Template("t0", "z" * 20_001))])
    with pytest.raises(RecordError, match="'text' is 20,001 characters"):
        read_records(long_template, Template)


def test_over_long_reflector_templates_are_never_evaluated() -> None:
    from helpers import BoxScorer, ChatTokenizer, SkillEngine, make_hard
    from p2o_cli.gepa.config import GepaConfig
    from p2o_cli.gepa.search import run_gepa

    class Verbose:
        def propose(self, requests):
            return ["use alpha " + "w" * 30_000 for _ in requests]

    hard = make_hard(12)
    engine = SkillEngine(hard)
    seen: list[str] = []
    original = engine.generate

    def spy(prompts, **kw):
        seen.extend(prompts)
        return original(prompts, **kw)

    engine.generate = spy
    result = run_gepa(hard, engine, ChatTokenizer(), Verbose(), BoxScorer(),
                      GepaConfig(width=2, minibatch=2, dev_size=4, budget=40, max_iterations=2))
    assert result.skipped == result.reflections > 0 and result.kept == 0
    assert all(len(p) < 20_000 for p in seen)


# ---------------------------------------------------------------- 6. the reflector gives up


class Unreachable:
    """A reflector that never gets a reply (as OpenAIReflector after its retries)."""

    base_url = "http://10.255.255.1/v1"
    last_failure = "connection error"

    def __init__(self) -> None:
        self.failed_proposals = 0
        self.calls = 0

    def propose(self, requests):
        self.calls += 1
        self.failed_proposals += len(requests)
        return [None] * len(requests)


def test_unreachable_reflector_stops_the_search_after_n_failures(tmp_path) -> None:
    from helpers import BoxScorer, ChatTokenizer, SkillEngine, make_hard
    from p2o_cli.gepa.config import GepaConfig
    from p2o_cli.gepa.reflect import ReflectorError
    from p2o_cli.gepa.search import run_gepa

    hard = make_hard(12)
    reflector = Unreachable()
    cfg = GepaConfig(width=1, minibatch=2, dev_size=4, budget=10_000, max_reflector_failures=3)
    with pytest.raises(ReflectorError, match="no usable reply to 3 proposals in a row.*connection error"):
        run_gepa(hard, SkillEngine(hard), ChatTokenizer(), reflector, BoxScorer(), cfg,
                 state_path=tmp_path / "s.json")
    assert reflector.calls == 3
    assert (tmp_path / "s.json").is_file()  # the search so far is saved for --resume


def test_check_reflector_fails_fast(monkeypatch) -> None:
    import socket

    from p2o_cli.gepa.reflect import ReflectorError
    from p2o_cli.gepa.reflectors import ReflectorConfig, check_reflector

    with pytest.raises(ValueError, match="unknown reflector 'kimmi'"):
        check_reflector(ReflectorConfig(reflector="kimmi"))
    monkeypatch.delenv("MOONSHOT_API_KEY", raising=False)
    with pytest.raises(ValueError, match="MOONSHOT_API_KEY is not set"):
        check_reflector(ReflectorConfig(reflector="kimi"))
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ReflectorError, match="cannot be reached"):
        check_reflector(ReflectorConfig(reflector="api", reflector_url=f"http://127.0.0.1:{port}/v1",
                                        reflector_model="m"), timeout_s=2)
    check_reflector(ReflectorConfig(reflector="toy"))


# ---------------------------------------------------------------- 7. bad input is refused


@pytest.mark.parametrize(
    "cls, objects, fragment",
    [
        (Rollout, [to_dict(rollout(reward=1e39))], "rewards lie in [0, 1]"),
        (Rollout, [to_dict(rollout(reward=-0.5))], "rewards lie in [0, 1]"),
        (Rollout, [to_dict(rollout()), to_dict(rollout())], "duplicate (id, k) ('q0', 0)"),
        (Rollout, [to_dict(rollout(n_tokens=-3))], "'n_tokens' is -3"),
        (Template, [to_dict(Template("t0", "", dev_ids=["a", "b"], dev_scores=[1.0]))], "they pair up"),
        (Template, [to_dict(Template("t1", "x", parent_id="t9"))], "parent_id 't9' is not a template"),
        (Assignment, [to_dict(Assignment("q0", []))], "'template_ids' is empty"),
        (Hard, [to_dict(Hard("h", "p", "1", [2.0], 0.5))], "rewards lie in [0, 1]"),
    ],
)
def test_bad_records_are_refused(tmp_path, cls, objects, fragment) -> None:
    path = write_lines(tmp_path / "x.jsonl", objects)
    with pytest.raises(RecordError) as err:
        read_records(path, cls)
    assert fragment in str(err.value) and str(err.value).startswith(f"{path}:")


def test_assignments_must_fit_the_problems_and_k() -> None:
    from p2o_cli.rollout.generate import check_assignments

    templates = {"t0": Template("t0", "")}
    problems = [Problem("q0", "1+1?", "2")]
    check_assignments({"q0": Assignment("q0", ["t0"] * 2)}, templates, problems, k=2)
    with pytest.raises(ValueError, match="names no problem"):
        check_assignments({"zz": Assignment("zz", ["t0"] * 2)}, templates, problems, k=2)
    with pytest.raises(ValueError, match="has 3 template ids; --k is 2"):
        check_assignments({"q0": Assignment("q0", ["t0"] * 3)}, templates, problems, k=2)


def test_gepa_budget_below_the_dev_set_spends_nothing() -> None:
    from helpers import BoxScorer, ChatTokenizer, SkillEngine, make_hard
    from p2o_cli.gepa.config import GepaConfig
    from p2o_cli.gepa.search import run_gepa

    hard = make_hard(12)
    engine = SkillEngine(hard)
    with pytest.raises(ValueError, match="budget of 0 rollouts cannot score the seed"):
        run_gepa(hard, engine, ChatTokenizer(), Unreachable(), BoxScorer(), GepaConfig(dev_size=4, budget=0))
    assert engine.rollouts == 0


def test_gepa_resume_without_state_and_empty_inputs(tmp_path, rollouts_file) -> None:
    hard = write_lines(tmp_path / "h.jsonl", [to_dict(Hard(f"h{i}", "1+1?", "2", [0.0], 0.0)) for i in range(2)])
    result = invoke("gepa", "--model", "/nonexistent", "--hard", str(hard), "--reflector", "toy",
                    "--out", str(tmp_path / "t.jsonl"), "--resume")
    assert result.exit_code == 2 and "no search to resume" in one_error_line(result.output)

    out = tmp_path / "hard.jsonl"
    assert invoke("mine-hard", "--rollouts", str(rollouts_file), "--out", str(out)).exit_code == 0
    before = out.read_bytes()
    assert before
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    result = invoke("mine-hard", "--rollouts", str(empty), "--out", str(out))
    assert result.exit_code == 2 and "no rollout records" in one_error_line(result.output)
    assert out.read_bytes() == before
    result = invoke("rollout", "--model", "/nonexistent", "--data", str(empty), "--out", str(out))
    assert result.exit_code == 2 and "no problems" in one_error_line(result.output)
    assert out.read_bytes() == before
    result = invoke("gepa", "--model", "/nonexistent", "--hard", str(hard), "--reflector", "toy",
                    "--out", str(tmp_path / "t.jsonl"), "--budget", "0")
    assert result.exit_code == 2 and "budget of 0 rollouts" in one_error_line(result.output)


def test_an_empty_benchmark_is_refused_not_averaged_as_zero(tmp_path) -> None:
    from p2o_cli.evaluation.evaluate import EvalConfig, evaluate

    (tmp_path / "empty.jsonl").write_bytes(b"")
    (tmp_path / "one.jsonl").write_bytes(orjson.dumps({"problem": "1+1?", "answer": "2"}) + b"\n")
    with pytest.raises(ValueError, match="benchmark empty: no problems"):
        evaluate(None, None, EvalConfig(bench=["one", "empty"], data_dir=str(tmp_path)), None)
