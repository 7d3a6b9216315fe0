"""Lose nothing: the second reliability campaign, one test per case it found (fast tier).

Classes (docs/guarantees.md): an output never eats an input or what p2o did not write; one
run per run directory; no key in any message; nothing hangs or outlives p2o; bad input is one
line and exit status 2, never "internal error"; nothing non-finite is accepted or saved; a
resume checks what it resumes. The process-killing cases are in tests/test_guarantees_slow.py.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from helpers import ENV, Reply, echo_key, fake_run_dir, kept, run_args, tree
from p2o_cli.cli import app
from p2o_cli.files.records import Hard, Rollout, write_records

P2O = [sys.executable, "-m", "p2o_cli"]
runner = CliRunner()
SECRET = "sk-proj-" + "Q7fZ2k9XwLmN4vB8" * 3


def invoke(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, list(args), catch_exceptions=False, env=env)


def one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("p2o: error:")]
    assert len(lines) == 1 and "Traceback" not in output and "internal error" not in output, output
    return lines[0]


def exit_2(result) -> str:
    """The one error line of a command that exited with status 2."""
    assert result.exit_code == 2, result.output
    return one_error_line(result.output)


def rollout(k: int, reward: float, id: str = "q0") -> Rollout:
    return Rollout(id=id, k=k, prompt="What is 1+1?", response="\\boxed{2}", reward=reward, pred="2",
                   finish_reason="stop", n_tokens=4, problem="What is 1+1?", answer="2")


@pytest.fixture
def rollouts_file(tmp_path: Path) -> Path:
    write_records(tmp_path / "r.jsonl", [rollout(0, 0.0), rollout(1, 1.0)])
    return tmp_path / "r.jsonl"


@pytest.fixture
def problems_file(tmp_path: Path) -> Path:
    path = tmp_path / "p.jsonl"
    path.write_bytes(b"".join(orjson.dumps({"id": f"q{i}", "problem": f"{i}+1?", "answer": str(i + 1)}) + b"\n"
                              for i in range(4)))
    return path


@pytest.fixture
def hard_file(tmp_path: Path) -> Path:
    path = tmp_path / "hard.jsonl"
    write_records(path, [Hard(f"h{i}", f"{i}+1?", str(i + 1), [0.0], 0.0) for i in range(4)])
    return path


# ---------------------------------------------------------------- an output is never an input


def test_rollout_out_onto_its_own_data_is_refused(tmp_path, tiny_model_dir, problems_file) -> None:
    before = problems_file.read_bytes()
    result = invoke("rollout", "--model", str(tiny_model_dir), "--data", str(problems_file), "--k", "2",
                    "--max-new-tokens", "2", "--out", str(problems_file))
    assert result.exit_code == 2 and "--data" in one_error_line(result.output)
    assert problems_file.read_bytes() == before


def test_mine_hard_out_onto_its_rollouts_is_refused(rollouts_file) -> None:
    before = rollouts_file.read_bytes()
    result = invoke("mine-hard", "--rollouts", str(rollouts_file), "--out", str(rollouts_file))
    assert result.exit_code == 2 and "--rollouts" in one_error_line(result.output)
    assert rollouts_file.read_bytes() == before


def test_gepa_out_onto_its_hard_set_is_refused(tiny_model_dir, hard_file) -> None:
    before = hard_file.read_bytes()
    result = invoke("gepa", "--model", str(tiny_model_dir), "--hard", str(hard_file), "--reflector", "toy",
                    "--dev-size", "2", "--budget", "8", "--out", str(hard_file))
    assert result.exit_code == 2 and "--hard" in one_error_line(result.output)
    assert hard_file.read_bytes() == before


# ---------------------------------------------------------------- replacing what is not ours


def test_run_keep_last_into_a_directory_holding_checkpoints_is_refused(tmp_path, tiny_model_dir, world) -> None:
    out = tmp_path / "run"
    for step in ("step-0", "step-99"):
        shutil.copytree(tiny_model_dir, out / "checkpoints" / step)
        (out / "checkpoints" / step / "trainer_state.json").write_text('{"global_step": 7}')
    before = tree(out)
    result = subprocess.run([*run_args(tiny_model_dir, world, out), "--keep-last", "1"], capture_output=True,
                            env=ENV, timeout=600)
    assert result.returncode == 2, result.stderr.decode()[-2000:]
    one_error_line(result.stderr.decode())
    assert tree(out) == before


def test_train_step_never_replaces_a_hugging_face_trainer_checkpoint(tmp_path, tiny_model_dir, rollouts_file) -> None:
    hf = tmp_path / "checkpoint-500"
    shutil.copytree(tiny_model_dir, hf)
    (hf / "trainer_state.json").write_text('{"global_step": 500, "log_history": []}')
    (hf / "training_args.bin").write_bytes(b"\x80\x04args")
    (hf / "rng_state.pth").write_bytes(b"\x80\x04rng")
    exit_2(kept(hf, lambda: invoke("train-step", "--model", str(tiny_model_dir), "--rollouts", str(rollouts_file),
                                   "--out", str(hf))))


def test_chained_train_step_in_place_keeps_the_users_files(tmp_path, tiny_model_dir, rollouts_file) -> None:
    ck = tmp_path / "ck"
    assert invoke("train-step", "--model", str(tiny_model_dir), "--rollouts", str(rollouts_file), "--lr", "1e-3",
                  "--out", str(ck)).exit_code == 0
    (ck / "results.json").write_text('{"accuracy": 41.5}')
    exit_2(kept(ck, lambda: invoke("train-step", "--model", str(ck), "--rollouts", str(rollouts_file),
                                   "--out", str(ck))))


def test_run_into_a_directory_p2o_did_not_create_is_refused(tmp_path, tiny_model_dir, world) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.json").write_text('{"mine": true}')
    (out / "rollouts.jsonl").write_text('{"id": "mine"}\n')
    (out / "metrics.jsonl").write_text('{"step": 1}\n')
    before = tree(out)
    result = subprocess.run(run_args(tiny_model_dir, world, out), capture_output=True, env=ENV, timeout=600)
    assert result.returncode == 2, result.stderr.decode()[-2000:]
    one_error_line(result.stderr.decode())
    assert tree(out) == before


def test_report_never_overwrites_a_report_it_did_not_write(tmp_path) -> None:
    run = fake_run_dir(tmp_path / "run")
    out = tmp_path / "notes"
    out.mkdir()
    (out / "report.md").write_text("# my own notes\n")
    result = invoke("report", str(run), "--out", str(out))
    assert result.exit_code == 2
    one_error_line(result.output)
    assert (out / "report.md").read_text() == "# my own notes\n"
    assert sorted(p.name for p in out.iterdir()) == ["report.md"]


@pytest.mark.parametrize("kind", ["sweep", "report"])
def test_a_directory_p2o_claims_is_its_own_the_next_time(tmp_path, kind) -> None:
    from p2o_cli.files.outputs import OutputError, claim_directory, read_owner

    fresh, empty = tmp_path / "fresh", tmp_path / "empty"
    empty.mkdir()
    for out in (fresh, empty):
        claim_directory(out, kind)
        (out / "made.txt").write_text("p2o wrote this\n")  # what a sweep or a report leaves
        assert claim_directory(out, kind)["kind"] == kind and read_owner(out) == {"kind": kind}  # a resume
    other = "report" if kind == "sweep" else "sweep"
    with pytest.raises(OutputError, match=f"not a directory p2o made for a {other}"):
        claim_directory(fresh, other)


# ---------------------------------------------------------------- outputs that are not regular files


def test_a_fifo_or_device_given_as_out_is_never_replaced(tmp_path, rollouts_file) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    targets = [fifo]
    if os.geteuid() == 0:  # a real character device (1, 3 is what /dev/null is), made here, not /dev's
        device = tmp_path / "null"
        os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        targets.append(device)
    for target in targets:
        kind = stat.S_IFMT(target.lstat().st_mode)
        result = invoke("mine-hard", "--rollouts", str(rollouts_file), "--out", str(target))
        assert result.exit_code == 2, target
        assert "regular file" in one_error_line(result.output)
        assert stat.S_IFMT(target.lstat().st_mode) == kind


# ---------------------------------------------------------------- bounded reading


def test_an_endless_line_is_refused_within_a_memory_limit(tmp_path) -> None:
    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    result = subprocess.run([*P2O, "mine-hard", "--rollouts", "/dev/zero", "--out", str(tmp_path / "h.jsonl")],
                            capture_output=True, env=ENV, timeout=300, preexec_fn=limit_memory)
    err = result.stderr.decode()
    assert result.returncode == 2, err[-2000:]
    assert "/dev/zero:1:" in one_error_line(err)
    assert not (tmp_path / "h.jsonl").exists()


# ---------------------------------------------------------------- secrets


def test_an_engine_error_never_shows_the_api_key(tmp_path, tiny_model_dir, problems_file, loopback) -> None:
    server = loopback(echo_key(401))
    result = invoke("rollout", "--model", str(tiny_model_dir), "--data", str(problems_file), "--engine", "openai",
                    "--base-url", server.url, "--served-model", "m", "--k", "1", "--out", str(tmp_path / "r.jsonl"),
                    env={"OPENAI_API_KEY": SECRET})
    assert result.exit_code == 2
    line = one_error_line(result.output)
    assert SECRET not in result.output and SECRET[:12] not in result.output
    assert "Incorrect API key provided" in line  # the server's words stay, its echo of the key does not


def test_a_server_error_echoing_the_key_is_shown_without_it(tiny_model_dir, loopback) -> None:
    from p2o_cli.cli._errors import describe
    from p2o_cli.engines.openai import OpenAIEngine
    from p2o_cli.toy.tiny import char_tokenizer

    server = loopback(echo_key(500))
    engine = OpenAIEngine(base_url=server.url, served_model="m", tokenizer=char_tokenizer(), api_key=SECRET,
                          max_retries=0, vllm_extras=False)
    with pytest.raises(Exception) as caught:
        engine.generate(["What is 1+1?"], max_new_tokens=2)
    code, message = describe(caught.value)
    assert code == 2 and SECRET not in message and SECRET[:12] not in message and "500" in message


# ---------------------------------------------------------------- the reflector: up front, interruptible


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


def test_gepa_checks_the_reflector_before_loading_the_model(tmp_path, hard_file) -> None:
    result = invoke("gepa", "--model", str(tmp_path / "no-model-here"), "--hard", str(hard_file), "--reflector", "api",
                    "--reflector-url", closed_port_url(), "--reflector-model", "m", "--dev-size", "2",
                    "--out", str(tmp_path / "t.jsonl"))
    assert result.exit_code == 2
    assert "cannot be reached" in one_error_line(result.output)


BACKOFF_SCRIPT = """
import os, sys
from p2o_cli.entry import install_handlers
install_handlers()
from p2o_cli.gepa.reflect import FeedbackRecord, OpenAIReflector, ReflectionRequest, RetryPolicy
reflector = OpenAIReflector(sys.argv[1], "m", "sk-x", timeout_s=30.0,
                            retry=RetryPolicy(max_retries=4, base_delay=1.0, max_delay=120.0))
request = ReflectionRequest("t0", "", [FeedbackRecord("h1", "What is 1+2?", "4", "4", False, "3")])
try:
    reflector.propose([request, request])
except KeyboardInterrupt:
    sys.stderr.write("interrupted\\n")
    sys.stderr.flush()
    os._exit(130)
"""


def test_ctrl_c_during_a_reflector_back_off_acts_at_once(loopback) -> None:
    # Each retry waits out a Retry-After of 100 s.
    server = loopback(lambda request: Reply(503, {"error": {"message": "overloaded"}}, {"retry-after": "100"}))
    proc = subprocess.Popen([sys.executable, "-c", BACKOFF_SCRIPT, server.url], stderr=subprocess.PIPE, env=ENV)
    for _ in range(2400):  # both proposals asked once and now waiting out their back-off
        if server.count >= 2 or proc.poll() is not None:
            break
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=30)  # far below the 100 s back-off
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("Ctrl-C waited for the reflector's back-off")
    assert proc.returncode == 130 and b"interrupted" in err, err.decode()[-2000:]
    assert server.count == 2


# ---------------------------------------------------------------- exit status 2 for the user's files


class NotATensor:
    """Pickles as a call of a global that torch's weights_only loader refuses."""

    def __reduce__(self):
        return (print, ("loaded",))


def broken_model(src: Path, dst: Path, how: str) -> Path:
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    if how == "tensor-shape":
        tensors = load_file(dst / "model.safetensors")
        name = next(k for k in tensors if "embed_tokens" in k)
        tensors[name] = torch.zeros(3, 3)
        save_file(tensors, str(dst / "model.safetensors"), metadata={"format": "pt"})
    elif how == "negative-layers":
        config = json.loads((dst / "config.json").read_text())
        config["num_hidden_layers"] = -1
        (dst / "config.json").write_text(json.dumps(config))
    elif how == "trainer-state-types":
        (dst / "trainer_state.json").write_text('{"global_step": "seven", "train_steps": [1], "schedule": 5}')
    elif how == "unsafe-pickle":
        (dst / "model.safetensors").unlink()
        torch.save({"model.embed_tokens.weight": NotATensor()}, dst / "pytorch_model.bin")
    elif how == "sandboxed-template":
        (dst / "chat_template.jinja").write_text("{{ ''.__class__.__mro__[1].__subclasses__() }}")
    return dst


@pytest.mark.parametrize("how", ["tensor-shape", "negative-layers", "trainer-state-types", "unsafe-pickle"])
def test_a_broken_model_directory_is_exit_2_for_train_step(tmp_path, tiny_model_dir, rollouts_file, how) -> None:
    model = broken_model(tiny_model_dir, tmp_path / "model", how)
    result = invoke("train-step", "--model", str(model), "--rollouts", str(rollouts_file),
                    "--out", str(tmp_path / "ck"))
    assert result.exit_code == 2
    assert str(model) in one_error_line(result.output)
    assert not (tmp_path / "ck").exists()


@pytest.mark.parametrize("how", ["tensor-shape", "unsafe-pickle", "sandboxed-template"])
def test_a_broken_model_directory_is_exit_2_for_rollout(tmp_path, tiny_model_dir, problems_file, how) -> None:
    model = broken_model(tiny_model_dir, tmp_path / "model", how)
    result = invoke("rollout", "--model", str(model), "--data", str(problems_file), "--k", "1",
                    "--max-new-tokens", "2", "--out", str(tmp_path / "r.jsonl"))
    assert result.exit_code == 2
    one_error_line(result.output)
    assert not (tmp_path / "r.jsonl").exists()


SWALLOWED_INTERRUPT = """
import os, signal, sys
import p2o_cli.files.records as records
from p2o_cli import entry

def read_records(*args, **kwargs):
    # What a library that swallows KeyboardInterrupt during an import leaves behind: a
    # half-initialised module, and some unrelated error a moment later.
    try:
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):
            pass
    except BaseException:
        pass
    raise RecursionError("maximum recursion depth exceeded")

records.read_records = read_records
sys.argv = ["p2o", "mine-hard", "--rollouts", sys.argv[1], "--out", sys.argv[2]]
entry.main()
"""


def test_ctrl_c_swallowed_during_start_up_is_reported_as_the_interrupt(tmp_path, rollouts_file) -> None:
    result = subprocess.run([sys.executable, "-c", SWALLOWED_INTERRUPT, str(rollouts_file), str(tmp_path / "h.jsonl")],
                            capture_output=True, env=ENV, timeout=120)
    err = result.stderr.decode()
    assert result.returncode == 130, err
    assert err.strip().splitlines() == ["p2o: interrupted (SIGINT); outputs are whole or absent"], err


# A second process sends Ctrl-C the moment torch's C++ start-up (_autograd_init) begins: a
# KeyboardInterrupt raised by a handler there cannot unwind through the C++ and aborts (SIGABRT).
SIGINT_SENDER = """
import os, signal, sys, time
os.read(int(sys.argv[1]), 1)
for _ in range(3):
    os.kill(int(sys.argv[2]), signal.SIGINT)
    time.sleep(0.0002)
"""

CTRL_C_IN_TORCH_START_UP = """
import os, subprocess, sys
from p2o_cli import entry

read_end, write_end = os.pipe()
subprocess.Popen([sys.executable, "-c", sys.argv[1], str(read_end), str(os.getpid())], pass_fds=(read_end,))
reached = []

def at_autograd_init(frame, event, arg):
    if event == "c_call" and getattr(arg, "__name__", "") == "_autograd_init":
        sys.setprofile(None)
        reached.append(True)
        os.write(write_end, b"x")

sys.setprofile(at_autograd_init)
sys.argv = ["p2o", *sys.argv[2:]]
try:
    entry.main()
finally:
    if not reached:
        sys.stderr.write("torch's start-up never reached _autograd_init\\n")
"""


def test_ctrl_c_while_torch_starts_up_is_held_until_its_import_ends(tmp_path, tiny_model_dir, rollouts_file) -> None:
    out = tmp_path / "ck"
    result = subprocess.run([sys.executable, "-c", CTRL_C_IN_TORCH_START_UP, SIGINT_SENDER, "train-step",
                             "--model", str(tiny_model_dir), "--rollouts", str(rollouts_file), "--out", str(out)],
                            capture_output=True, env=ENV, timeout=300)
    err = result.stderr.decode()
    assert result.returncode == 130, err[-3000:]
    assert err.strip().splitlines() == ["p2o: interrupted (SIGINT); outputs are whole or absent"], err[-3000:]
    assert not out.exists()


def test_train_step_out_through_a_symlink_is_decided_up_front(tmp_path, tiny_model_dir, rollouts_file) -> None:
    real = tmp_path / "real-ck"
    assert invoke("train-step", "--model", str(tiny_model_dir), "--rollouts", str(rollouts_file),
                  "--out", str(real)).exit_code == 0
    before = (real / "model.safetensors").read_bytes()
    link = tmp_path / "latest"
    link.symlink_to(real, target_is_directory=True)
    result = invoke("train-step", "--model", str(tiny_model_dir), "--rollouts", str(rollouts_file), "--lr", "1e-3",
                    "--out", str(link))
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and (real / "model.safetensors").read_bytes() != before


# ---------------------------------------------------------------- nothing non-finite


@pytest.mark.parametrize("command, flag", [("train-step", "--lr"), ("train-step", "--weight-decay"),
                                           ("rollout", "--temperature"), ("rollout", "--reward-timeout")])
def test_infinite_option_values_are_refused(tmp_path, rollouts_file, problems_file, command, flag) -> None:
    inputs = {"train-step": ["--rollouts", str(rollouts_file), "--out", str(tmp_path / "ck")],
              "rollout": ["--data", str(problems_file), "--out", str(tmp_path / "r.jsonl")]}[command]
    result = invoke(command, "--model", str(tmp_path / "no-model-here"), *inputs, flag, "inf")
    assert result.exit_code == 2
    assert flag in one_error_line(result.output)


def test_a_non_finite_loss_is_never_saved(tmp_path, tiny_model_dir, rollouts_file) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    tensors = load_file(model / "model.safetensors")
    name = next(k for k in tensors if k.endswith("norm.weight") and "layers" not in k)
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    save_file(tensors, str(model / "model.safetensors"), metadata={"format": "pt"})
    result = invoke("train-step", "--model", str(model), "--rollouts", str(rollouts_file),
                    "--out", str(tmp_path / "ck"))
    assert result.exit_code == 2
    assert "non-finite" in one_error_line(result.output)
    assert not (tmp_path / "ck").exists()


def test_a_non_finite_gradient_stops_the_step(tiny_model_dir) -> None:
    import math

    import torch

    from p2o_cli.rl.metrics import StepSums
    from p2o_cli.rl.trainer import PolicyTrainer, TrainConfig

    trainer = PolicyTrainer.from_checkpoint(tiny_model_dir, TrainConfig())
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    for p in trainer.model.parameters():
        p.grad = torch.full_like(p, math.inf)
    with pytest.raises(ValueError, match="non-finite"):
        trainer._optimizer_step(StepSums())
    assert all(torch.equal(before[n], p) for n, p in trainer.model.named_parameters())


# ---------------------------------------------------------------- run: refused up front


def run_flags(model: Path, world: Path, out: Path, *extra: str) -> list[str]:
    return run_args(model, world, out, *extra)[3:]  # without "python -m p2o_cli"


@pytest.mark.parametrize("flag, value, said", [("--budget", "0", "budget"), ("--k", "1", "--k")])
def test_run_refuses_a_budget_or_group_that_cannot_work_before_loading(tmp_path, world, flag, value, said) -> None:
    result = invoke(*run_flags(tmp_path / "no-model-here", world, tmp_path / "run", flag, value))
    assert result.exit_code == 2
    assert said in one_error_line(result.output)
    assert not (tmp_path / "run").exists()


def test_a_config_file_type_error_names_the_file(tmp_path, world) -> None:
    toml = tmp_path / "exp.toml"
    toml.write_text('[run]\nbatch_size = "eight"\n')
    result = invoke("run", "--config", str(toml), "--model", "m", "--data", str(world / "train.jsonl"),
                    "--out", str(tmp_path / "run"))
    assert result.exit_code == 2
    assert one_error_line(result.output).startswith(f"p2o: error: {toml}: ")


def test_a_torn_metrics_tail_does_not_block_resume(tmp_path) -> None:
    from p2o_cli.loop.rundir import RunDir, RunState

    run = tmp_path / "run"
    run.mkdir()
    rows = [{"training/step": 1, "epoch": 0, "x": 1.0}, {"training/step": 2, "epoch": 0, "x": 2.0}]
    (run / "metrics.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows) + b'{"training/step": 3, "ep')
    RunDir(run).truncate_metrics(RunState(epoch=0, batch=2, step=2))
    assert [orjson.loads(line) for line in (run / "metrics.jsonl").read_bytes().splitlines()] == rows


@pytest.mark.timeout(900)
def test_resume_refuses_changed_data_unless_allowed(tmp_path, tiny_model_dir, world) -> None:
    data = tmp_path / "train.jsonl"
    shutil.copy(world / "train.jsonl", data)
    out = tmp_path / "run"
    args = [*P2O, "run", "--model", str(tiny_model_dir), "--data", str(data), "--out", str(out), "--epochs", "1",
            "--batch-size", "4", "--k", "2", "--max-new-tokens", "4", "--temperature", "1.0", "--no-gepa",
            "--keep-last", "1"]
    first = subprocess.run(args, capture_output=True, env=ENV, timeout=600)
    assert first.returncode == 0, first.stderr.decode()[-2000:]
    with open(data, "ab") as fh:
        fh.write(orjson.dumps({"id": "q-new", "problem": "What is 40+2?", "answer": "42"}) + b"\n")
    state = (out / "state.json").read_bytes()
    refused = subprocess.run([*P2O, "run", "--resume", str(out), "--epochs", "2"], capture_output=True, env=ENV,
                             timeout=600)
    assert refused.returncode == 2, refused.stderr.decode()[-2000:]
    assert "--allow-changed-data" in one_error_line(refused.stderr.decode())
    assert (out / "state.json").read_bytes() == state
    allowed = subprocess.run([*P2O, "run", "--resume", str(out), "--epochs", "2", "--allow-changed-data"],
                             capture_output=True, env=ENV, timeout=600)
    assert allowed.returncode == 0, allowed.stderr.decode()[-2000:]
    assert orjson.loads((out / "state.json").read_bytes())["epoch"] == 2


def test_a_full_disk_while_saving_is_named_as_such(tmp_path, tiny_model_dir, rollouts_file) -> None:
    def small_files() -> None:  # the checkpoint's weights (about 500 kB) cannot be written whole
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    result = subprocess.run([*P2O, "train-step", "--model", str(tiny_model_dir), "--rollouts", str(rollouts_file),
                             "--out", str(tmp_path / "ck")], capture_output=True, env=ENV, timeout=600,
                            preexec_fn=small_files)
    err = result.stderr.decode()
    assert result.returncode == 2, err[-2000:]
    line = one_error_line(err)
    assert "corrupt" not in line and "cannot write" in line and "File too large" in line
    assert not (tmp_path / "ck").exists() and not list(tmp_path.glob(".ck.*"))
