"""A hostile pass over the guarantees: cases beyond the ones the campaign reported, from outside.

Each case is named ``H<nn>`` (docs/guarantees.md holds the table: case, class, result). The
classes: L = nothing lost (an output never eats an input or what p2o did not write), K = no key
in any output or message, P = no process outlives p2o, B = bounded (no hang, no unbounded
read), X = bad input is one line and exit status 2, F = nothing non-finite accepted or saved,
R = a resume checks what it resumes. Cases that start and kill whole processes are marked
``slow_reliability`` (``make test-slow``).
"""

from __future__ import annotations

import json
import os
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

from helpers import ENV, Reply, Request, echo_key, fake_run_dir, kept, process_state, run_args, session_pids, tree
from p2o_cli.cli import app
from p2o_cli.files.records import Assignment, Hard, Rollout, Template, write_records

P2O = [sys.executable, "-m", "p2o_cli"]
runner = CliRunner()
KEY = "sk-hostile-" + "b7Q2" * 10


def invoke(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, list(args), catch_exceptions=False, env=env)


def refused(result, *fragments: str) -> str:
    """Exit status 2 with one ``p2o: error:`` line holding every fragment; the line."""
    output = result.output if hasattr(result, "output") else result.stderr.decode()
    code = result.exit_code if hasattr(result, "exit_code") else result.returncode
    lines = [line for line in output.splitlines() if line.startswith("p2o: error:")]
    assert code == 2 and len(lines) == 1, output[-3000:]
    assert "Traceback" not in output and "internal error" not in output, output[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def rollouts(path: Path, n: int = 2) -> Path:
    write_records(path, [Rollout(id="q0", k=k, prompt="What is 1+1?", response="\\boxed{2}", reward=float(k % 2),
                                 pred="2", finish_reason="stop", n_tokens=4, problem="What is 1+1?", answer="2")
                         for k in range(n)])
    return path


def hard(path: Path, n: int = 4) -> Path:
    write_records(path, [Hard(f"h{i}", f"{i}+1?", str(i + 1), [0.0], 0.0) for i in range(n)])
    return path


def templates(path: Path) -> Path:
    write_records(path, [Template("t0", "", dev_ids=["h0"], dev_scores=[0.0])])
    return path


def problems(path: Path, n: int = 4) -> Path:
    path.write_bytes(b"".join(orjson.dumps({"id": f"q{i}", "problem": f"{i}+1?", "answer": str(i + 1)}) + b"\n"
                              for i in range(n)))
    return path


NO_MODEL = "/nonexistent/p2o-model"


def saved_run(run: Path, world: Path) -> Path:
    """A run directory as a resume reads it first: the saved config of a toy-reflector run."""
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(json.dumps({"model": NO_MODEL, "data": str(world / "train.jsonl"),
                                                 "reflector": {"reflector": "toy"}}))
    return run


def train_step_on(model: Path, tmp_path: Path):
    return invoke("train-step", "--model", str(model), "--rollouts", str(rollouts(tmp_path / "r.jsonl")),
                  "--out", str(tmp_path / "ck"))


def rollout_on(model: Path, tmp_path: Path):
    return invoke("rollout", "--model", str(model), "--data", str(problems(tmp_path / "p.jsonl")), "--k", "1",
                  "--max-new-tokens", "2", "--out", str(tmp_path / "r.jsonl"))


# ---------------------------------------------------------------- L: nothing lost


def test_h01_assign_out_onto_its_templates(tmp_path) -> None:
    t, h = templates(tmp_path / "t.jsonl"), hard(tmp_path / "h.jsonl")
    refused(kept(t, lambda: invoke("assign", "--templates", str(t), "--hard", str(h), "--out", str(t))), "--templates")


def test_h02_assign_out_a_symlink_to_its_hard_set(tmp_path) -> None:
    t, h = templates(tmp_path / "t.jsonl"), hard(tmp_path / "h.jsonl")
    link = tmp_path / "out.jsonl"
    link.symlink_to(h)
    refused(kept(h, lambda: invoke("assign", "--templates", str(t), "--hard", str(h), "--out", str(link))), "--hard")
    assert link.is_symlink()


def test_h03_mine_hard_out_a_hard_link_to_its_rollouts(tmp_path) -> None:
    r = rollouts(tmp_path / "r.jsonl")
    os.link(r, tmp_path / "same.jsonl")
    refused(kept(r, lambda: invoke("mine-hard", "--rollouts", str(r), "--out", str(tmp_path / "same.jsonl"))),
            "--rollouts")


def test_h04_rollout_out_onto_its_assignments(tmp_path) -> None:
    p, t = problems(tmp_path / "p.jsonl"), templates(tmp_path / "t.jsonl")
    a = tmp_path / "a.jsonl"
    write_records(a, [Assignment("q0", ["t0"] * 2)])
    refused(kept(a, lambda: invoke("rollout", "--model", NO_MODEL, "--data", str(p), "--assign", str(a),
                                   "--templates", str(t), "--k", "2", "--out", str(a))), "--assign")


@pytest.mark.parametrize("flag", ["--state", "--metrics"], ids=["h05-state", "h06-metrics-appended"])
def test_h05_h06_gepa_state_or_metrics_onto_its_hard_set(tmp_path, flag) -> None:
    h = hard(tmp_path / "h.jsonl")
    refused(kept(h, lambda: invoke("gepa", "--model", NO_MODEL, "--hard", str(h), "--reflector", "toy", flag, str(h),
                                   "--out", str(tmp_path / "t.jsonl"))), "--hard")


def test_h07_gepa_out_and_state_the_same_file(tmp_path) -> None:
    h = hard(tmp_path / "h.jsonl")
    out = tmp_path / "t.jsonl"
    refused(invoke("gepa", "--model", NO_MODEL, "--hard", str(h), "--reflector", "toy", "--state", str(out),
                   "--out", str(out)))
    assert not out.exists()


def test_h08_train_step_metrics_onto_its_rollouts(tmp_path) -> None:
    r = rollouts(tmp_path / "r.jsonl")
    refused(kept(r, lambda: invoke("train-step", "--model", NO_MODEL, "--rollouts", str(r), "--metrics", str(r),
                                   "--out", str(tmp_path / "ck"))), "--rollouts")


def test_h09_eval_out_onto_a_benchmark_file(tmp_path) -> None:
    bench = tmp_path / "bench"
    bench.mkdir()
    problems(bench / "mini.jsonl")
    before = tree(bench)
    refused(invoke("eval", "--model", NO_MODEL, "--bench", "mini", "--data-dir", str(bench),
                   "--out", str(bench / "mini.jsonl")), "--data-dir")
    assert tree(bench) == before


def test_h10_train_step_out_a_directory_holding_its_rollouts(tmp_path, tiny_model_dir) -> None:
    ck = tmp_path / "ck"
    ck.mkdir()
    r = rollouts(ck / "r.jsonl")
    before = tree(ck)
    refused(invoke("train-step", "--model", str(tiny_model_dir), "--rollouts", str(r), "--out", str(ck)))
    assert tree(ck) == before


def test_h11_train_step_into_an_empty_directory_is_fine(tmp_path, tiny_model_dir) -> None:
    ck = tmp_path / "ck"
    ck.mkdir()
    result = invoke("train-step", "--model", str(tiny_model_dir), "--rollouts", str(rollouts(tmp_path / "r.jsonl")),
                    "--out", str(ck))
    assert result.exit_code == 0, result.output
    assert (ck / "model.safetensors").is_file()


def test_h12_run_out_a_regular_file(tmp_path, world) -> None:
    out = tmp_path / "notes.txt"
    out.write_text("mine")
    refused(invoke("run", "--model", NO_MODEL, "--data", str(world / "train.jsonl"), "--reflector", "toy",
                   "--out", str(out)))
    assert out.read_text() == "mine"


def test_h13_report_out_onto_its_own_run_directory(tmp_path) -> None:
    run = fake_run_dir(tmp_path / "run")
    refused(kept(run, lambda: invoke("report", str(run), "--out", str(run))))


def test_h14_report_out_into_a_directory_that_is_a_run(tmp_path) -> None:
    other = fake_run_dir(tmp_path / "b")
    (other / ".p2o-owner.json").write_text('{"kind": "run", "id": "x"}')
    refused(kept(other, lambda: invoke("report", str(fake_run_dir(tmp_path / "a")), "--out", str(other))))


def test_h15_toy_init_into_a_directory_it_did_not_make(tmp_path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("chapter 1")
    refused(invoke("toy", "init", "--out", str(out), "--pretrain-steps", "1", "--no-measure"))
    assert tree(out) == {"thesis.tex": b"chapter 1"}


def test_h16_data_prepare_out_onto_its_source(tmp_path) -> None:
    source = problems(tmp_path / "src.jsonl")
    before = source.read_bytes()
    refused(invoke("data", "prepare", "deepscaler-5k", "--from", str(source), "--out", str(source)), "--from")
    assert source.read_bytes() == before


def test_h17_out_a_symlink_to_a_fifo(tmp_path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "out.jsonl"
    link.symlink_to(fifo)
    refused(invoke("mine-hard", "--rollouts", str(rollouts(tmp_path / "r.jsonl")), "--out", str(link)),
            "regular file")
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and link.is_symlink()


def test_h18_out_a_unix_socket(tmp_path) -> None:
    path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        refused(invoke("mine-hard", "--rollouts", str(rollouts(tmp_path / "r.jsonl")), "--out", str(path)),
                "socket")
        assert stat.S_ISSOCK(path.lstat().st_mode)


def test_h19_out_through_a_symlink_writes_the_target_and_keeps_the_link(tmp_path) -> None:
    target = tmp_path / "real.jsonl"
    target.write_text("old\n")
    link = tmp_path / "latest.jsonl"
    link.symlink_to(target)
    result = invoke("mine-hard", "--rollouts", str(rollouts(tmp_path / "r.jsonl")), "--tau", "0.9", "--out", str(link))
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and target.read_text().startswith('{"schema":"hard@1"')


def test_h20_checkpoint_with_a_user_subdirectory_is_not_replaced(tmp_path, tiny_model_dir) -> None:
    r = rollouts(tmp_path / "r.jsonl")
    ck = tmp_path / "ck"
    assert invoke("train-step", "--model", str(tiny_model_dir), "--rollouts", str(r), "--out", str(ck)).exit_code == 0
    (ck / "notes").mkdir()
    (ck / "notes" / "eval.md").write_text("41.5%")
    before = tree(ck)
    refused(invoke("train-step", "--model", str(tiny_model_dir), "--rollouts", str(r), "--out", str(ck)), "notes")
    assert tree(ck) == before


def test_h21_resume_a_checkpoint_directory_as_a_run(tmp_path, tiny_model_dir) -> None:
    ck = tmp_path / "ck"
    shutil.copytree(tiny_model_dir, ck)
    before = tree(ck)
    refused(invoke("run", "--resume", str(ck)))
    assert tree(ck) == before


def test_h22_eval_out_a_directory(tmp_path) -> None:
    out = tmp_path / "results"
    out.mkdir()
    (out / "keep.json").write_text("{}")
    refused(invoke("eval", "--model", NO_MODEL, "--bench", "aime24", "--out", str(out)), "is a directory")
    assert tree(out) == {"keep.json": b"{}"}


# ---------------------------------------------------------------- L: one run per directory


def hold_lock(directory: Path) -> subprocess.Popen:
    directory.mkdir(parents=True, exist_ok=True)
    script = ("import fcntl, os, sys, time\n"
              "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
              "fcntl.flock(fd, fcntl.LOCK_EX)\n"
              "os.write(fd, str(os.getpid()).encode())\n"
              "print('held', flush=True)\n"
              "time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(directory / ".p2o-lock")], stdout=subprocess.PIPE)
    assert proc.stdout.readline() == b"held\n"
    return proc


def test_h23_resume_while_another_process_holds_the_run(tmp_path, world) -> None:
    out = tmp_path / "run"
    holder = hold_lock(out)
    try:
        saved_run(out, world)
        (out / "state.json").write_text('{"epoch": 0, "batch": 1, "step": 1}')
        before = tree(out)
        refused(invoke("run", "--resume", str(out)), "in use", str(holder.pid))
        assert tree(out) == before
    finally:
        holder.kill()
        holder.wait()


def test_h24_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path, world) -> None:
    out = tmp_path / "run"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / ".p2o-lock").write_text(f"{dead.pid}\n")
    line = refused(invoke("run", "--model", NO_MODEL, "--data", str(world / "train.jsonl"), "--reflector", "toy",
                          "--out", str(out)))
    assert "in use" not in line and NO_MODEL in line


# ---------------------------------------------------------------- B: bounded, X: one line and exit 2


def endless_line_file(path: Path, size: int = 17 << 20) -> Path:
    with open(path, "wb") as fh:
        fh.write(b'{"id": "' + b"x" * size)
    return path


def test_h25_rollout_data_with_a_17_mib_line(tmp_path) -> None:
    data = endless_line_file(tmp_path / "p.jsonl")
    refused(invoke("rollout", "--model", NO_MODEL, "--data", str(data), "--out", str(tmp_path / "r.jsonl")),
            f"{data}:1:")


def test_h26_gepa_hard_set_with_a_17_mib_line_after_good_ones(tmp_path) -> None:
    h = hard(tmp_path / "h.jsonl")
    with open(h, "ab") as fh:
        fh.write(b"[" * (17 << 20))
    refused(invoke("gepa", "--model", NO_MODEL, "--hard", str(h), "--reflector", "toy",
                   "--out", str(tmp_path / "t.jsonl")), f"{h}:5:")


def test_h27_endless_stdin(tmp_path) -> None:
    with open("/dev/zero", "rb") as zero:
        result = subprocess.run([*P2O, "mine-hard", "--rollouts", "-", "--out", str(tmp_path / "h.jsonl")],
                                stdin=zero, capture_output=True, env=ENV, timeout=300)
    refused(result, "<stdin>:1:")


def test_h28_config_file_that_never_ends(tmp_path) -> None:
    config = tmp_path / "run.toml"
    config.symlink_to("/dev/zero")
    refused(invoke("mine-hard", "--config", str(config), "--rollouts", "x.jsonl"), str(config))


def test_h29_run_state_that_never_ends(tmp_path, world) -> None:
    run = saved_run(tmp_path / "run", world)
    (run / ".p2o-owner.json").write_text('{"kind": "run", "id": "r1"}')
    (run / "state.json").symlink_to("/dev/zero")
    refused(invoke("run", "--resume", str(run)), "state.json")


def test_h30_trainer_state_that_never_ends(tmp_path, tiny_model_dir) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    (model / "trainer_state.json").symlink_to("/dev/zero")
    refused(train_step_on(model, tmp_path), "trainer_state.json")


def test_h31_benchmark_file_with_a_17_mib_line(tmp_path) -> None:
    bench = tmp_path / "bench"
    bench.mkdir()
    endless_line_file(bench / "mini.jsonl")
    refused(invoke("eval", "--model", NO_MODEL, "--bench", "mini", "--data-dir", str(bench),
                   "--out", str(tmp_path / "res.json")), "mini.jsonl")


def test_h32_metrics_appended_after_a_torn_line_stay_readable(tmp_path, tiny_model_dir) -> None:
    metrics = tmp_path / "m.jsonl"
    metrics.write_bytes(b'{"training/step": 1}\n{"training/st')
    result = invoke("train-step", "--model", str(tiny_model_dir), "--rollouts", str(rollouts(tmp_path / "r.jsonl")),
                    "--out", str(tmp_path / "ck"), "--metrics", str(metrics))
    assert result.exit_code == 0, result.output
    rows = [orjson.loads(line) for line in metrics.read_bytes().splitlines()]
    assert rows[0] == {"training/step": 1} and len(rows) == 2 and "actor/pg_loss" in rows[1]


def test_h33_model_config_that_is_not_json(tmp_path) -> None:
    from p2o_cli.toy.tiny import save_tiny_model

    model = save_tiny_model(tmp_path / "model", hidden_size=16, num_layers=1)
    (model / "config.json").write_text("{not json")
    refused(train_step_on(model, tmp_path), str(model))


def test_h34_corrupt_tokenizer_file(tmp_path, tiny_model_dir) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    (model / "tokenizer.json").write_text('{"version": "1.0", "model": 17}')
    refused(rollout_on(model, tmp_path), str(model))


def test_h35_truncated_pytorch_model_bin(tmp_path, tiny_model_dir) -> None:
    import torch
    from safetensors.torch import load_file

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    torch.save(load_file(model / "model.safetensors"), model / "pytorch_model.bin")
    (model / "model.safetensors").unlink()
    data = (model / "pytorch_model.bin").read_bytes()
    (model / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    refused(train_step_on(model, tmp_path), str(model))


def test_h36_negative_global_step_in_trainer_state(tmp_path, tiny_model_dir) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    (model / "trainer_state.json").write_text('{"global_step": -4, "train_steps": 2}')
    refused(rollout_on(model, tmp_path), "trainer_state.json")


@pytest.mark.parametrize("text, fragment", [
    ("[run]\nbatch_size = 0\n", "--batch-size"),
    ("lr = 1e999\n", "--lr"),
    ("[train]\nclip_low = \"wide\"\n", "clip_low"),
])
def test_h37_config_file_values_out_of_range_name_the_file(tmp_path, world, text, fragment) -> None:
    toml = tmp_path / "exp.toml"
    toml.write_text(text)
    line = refused(invoke("run", "--config", str(toml), "--model", NO_MODEL, "--data", str(world / "train.jsonl"),
                          "--out", str(tmp_path / "run")), fragment)
    assert line.startswith(f"p2o: error: {toml}: ")


def test_h38_yaml_config_wrong_type_names_the_file(tmp_path) -> None:
    yaml_file = tmp_path / "exp.yaml"
    yaml_file.write_text("tau: [0.5]\n")
    line = refused(invoke("mine-hard", "--config", str(yaml_file), "--rollouts", str(rollouts(tmp_path / "r.jsonl")),
                          "--out", str(tmp_path / "h.jsonl")))
    assert line.startswith(f"p2o: error: {yaml_file}: ")


def test_h39_data_given_as_a_directory(tmp_path) -> None:
    (tmp_path / "d.jsonl").mkdir()
    refused(invoke("rollout", "--model", NO_MODEL, "--data", str(tmp_path / "d.jsonl"),
                   "--out", str(tmp_path / "r.jsonl")), "d.jsonl")


def test_h40_resume_whose_checkpoint_is_gone(tmp_path, world) -> None:
    run = saved_run(tmp_path / "run", world)
    (run / "state.json").write_text(json.dumps({"epoch": 0, "batch": 1, "step": 1,
                                                "checkpoint": str(run / "checkpoints" / "step-1")}))
    refused(invoke("run", "--resume", str(run)), "step-1")


def test_h41_resume_with_a_corrupt_inputs_file(tmp_path, world) -> None:
    run = saved_run(tmp_path / "run", world)
    (run / "state.json").write_text('{"epoch": 0, "batch": 1, "step": 1}')
    (run / "inputs.json").write_text('{"data": ')
    refused(invoke("run", "--resume", str(run)), "inputs.json")


# ---------------------------------------------------------------- F: nothing non-finite


@pytest.mark.parametrize("flag, value", [("--template-ratio-mask", "nan,10"), ("--template-ratio-mask", "0.01,inf"),
                                         ("--max-grad-norm", "inf"), ("--adam-eps", "inf")])
def test_h42_non_finite_train_options(tmp_path, flag, value) -> None:
    refused(invoke("train-step", "--model", NO_MODEL, "--rollouts", str(rollouts(tmp_path / "r.jsonl")),
                   "--out", str(tmp_path / "ck"), flag, value), flag)


@pytest.mark.parametrize("flag", ["--reflector-timeout", "--reflector-temperature", "--tau"])
def test_h43_non_finite_run_options(tmp_path, world, flag) -> None:
    refused(invoke("run", "--model", NO_MODEL, "--data", str(world / "train.jsonl"), "--reflector", "toy",
                   "--out", str(tmp_path / "run"), flag, "inf"), flag)


def test_h44_a_huge_finite_learning_rate_never_saves_non_finite_weights(tmp_path, tiny_model_dir) -> None:
    result = invoke("train-step", "--model", str(tiny_model_dir), "--rollouts", str(rollouts(tmp_path / "r.jsonl")),
                    "--out", str(tmp_path / "ck"), "--lr", "1.0", "--max-grad-norm", "0")
    if result.exit_code == 0:  # the update stayed finite: then every saved weight must be
        import torch
        from safetensors.torch import load_file

        assert all(torch.isfinite(t).all() for t in load_file(tmp_path / "ck" / "model.safetensors").values())
    else:
        refused(result, "finite")
        assert not (tmp_path / "ck").exists()


def test_h55_a_learning_rate_whose_update_overflows(tmp_path, tiny_model_dir) -> None:
    # Found by varying H44: without warm-up, AdamW's step size (lr / bias correction) overflows float32.
    refused(invoke("train-step", "--model", str(tiny_model_dir), "--rollouts", str(rollouts(tmp_path / "r.jsonl")),
                   "--out", str(tmp_path / "ck"), "--lr", "1e38", "--warmup-ratio", "0"), "--lr")
    assert not (tmp_path / "ck").exists()


def test_h45_dev_scores_overflowing_to_infinity(tmp_path) -> None:
    t = tmp_path / "t.jsonl"
    t.write_text('{"template_id": "t0", "text": "", "dev_ids": ["h0"], "dev_scores": [1e999]}\n')
    refused(invoke("assign", "--templates", str(t), "--hard", str(hard(tmp_path / "h.jsonl")),
                   "--out", str(tmp_path / "a.jsonl")), f"{t}:1:")


# ---------------------------------------------------------------- K: no key in any message


def test_h46_gepa_reflector_refusing_the_key(tmp_path, loopback) -> None:
    server = loopback(echo_key(401))
    result = invoke("gepa", "--model", NO_MODEL, "--hard", str(hard(tmp_path / "h.jsonl")), "--reflector", "api",
                    "--reflector-url", server.url, "--reflector-model", "m", "--reflector-key-env", "HOSTILE_KEY",
                    "--out", str(tmp_path / "t.jsonl"), env={"HOSTILE_KEY": KEY})
    refused(result)
    assert KEY not in result.output and KEY[:14] not in result.output


def test_h47_engine_404_echoing_the_key(tmp_path, tiny_model_dir, loopback) -> None:
    server = loopback(echo_key(404))
    result = invoke("rollout", "--model", str(tiny_model_dir), "--data", str(problems(tmp_path / "p.jsonl")),
                    "--engine", "openai", "--base-url", server.url, "--k", "1", "--out", str(tmp_path / "r.jsonl"),
                    env={"OPENAI_API_KEY": KEY})
    refused(result)
    assert KEY not in result.output and KEY[:14] not in result.output


def test_h48_a_key_of_any_shape_is_never_echoed(tmp_path, tiny_model_dir, loopback) -> None:
    odd = "corp-token:" + "Zq9" * 12  # not sk-…, and the server does not say "Bearer" before it either
    server = loopback(echo_key(403))
    result = invoke("rollout", "--model", str(tiny_model_dir), "--data", str(problems(tmp_path / "p.jsonl")),
                    "--engine", "openai", "--base-url", server.url, "--served-model", "m", "--k", "1",
                    "--out", str(tmp_path / "r.jsonl"), env={"OPENAI_API_KEY": odd})
    refused(result)
    assert odd not in result.output and "Zq9Zq9Zq9" not in result.output


def test_h49_a_key_in_the_reflector_url_is_never_shown(tmp_path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://user:{KEY}@127.0.0.1:{port}/v1"
    result = invoke("gepa", "--model", NO_MODEL, "--hard", str(hard(tmp_path / "h.jsonl")), "--reflector", "api",
                    "--reflector-url", url, "--reflector-model", "m", "--out", str(tmp_path / "t.jsonl"))
    refused(result)
    assert KEY not in result.output and KEY[:14] not in result.output


def test_h50_debug_tracebacks_hold_no_key(tmp_path, tiny_model_dir, loopback) -> None:
    server = loopback(echo_key(401))
    env = {**ENV, "OPENAI_API_KEY": KEY, "P2O_DEBUG": "1"}
    data = problems(tmp_path / "p.jsonl")
    result = subprocess.run([*P2O, "rollout", "--model", str(tiny_model_dir), "--data", str(data),
                             "--engine", "openai", "--base-url", server.url, "--served-model", "m", "--k", "1",
                             "--out", str(tmp_path / "r.jsonl")], capture_output=True, env=env, timeout=300)
    assert result.returncode == 2
    assert KEY.encode() not in result.stdout + result.stderr and KEY[:14].encode() not in result.stderr


# ---------------------------------------------------------------- P, B: processes (make test-slow)


@pytest.mark.slow_reliability
@pytest.mark.timeout(600)
def test_h51_kill_9_of_a_run_mid_gepa_leaves_no_process(tmp_path, tiny_model_dir, world) -> None:
    # The qwen grader judges any number the tiny model samples, so the first eval starts the pool.
    pool_up = ["--grader", "qwen", "--eval-temperature", "1.0", "--eval-n", "4", "--eval-max-new-tokens", "16"]
    proc = subprocess.Popen(run_args(tiny_model_dir, world, tmp_path / "run", *pool_up), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**ENV, "P2O_FAULT": "gepa:1:STOP"},
                            start_new_session=True)
    try:
        end = time.monotonic() + 500
        while time.monotonic() < end and proc.poll() is None and process_state(proc.pid) != "T":
            time.sleep(0.1)
        assert proc.poll() is None, "it ended before the fault point"
        assert len(session_pids(proc.pid)) >= 4, "the reward pool is not up"
        proc.kill()
        proc.wait()
        end = time.monotonic() + 60
        while time.monotonic() < end and session_pids(proc.pid):
            time.sleep(0.2)
        assert not session_pids(proc.pid)
    finally:
        for pid in session_pids(proc.pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow_reliability
@pytest.mark.timeout(600)
def test_h52_sigterm_of_rollout_mid_generation_is_one_line_and_no_output(tmp_path, tiny_model_dir, world) -> None:
    out = tmp_path / "r.jsonl"
    result = subprocess.run([*P2O, "rollout", "--model", str(tiny_model_dir), "--data", str(world / "train.jsonl"),
                             "--k", "2", "--max-new-tokens", "4", "--out", str(out)], capture_output=True,
                            env={**ENV, "P2O_FAULT": "rollout:1:TERM"}, timeout=500)
    err = result.stderr.decode()
    assert result.returncode == 143, err[-2000:]
    assert [line for line in err.splitlines() if line.startswith("p2o:")] == [
        "p2o: interrupted (SIGTERM); outputs are whole or absent"], err[-2000:]
    assert not out.exists() and not list(tmp_path.glob(".r.jsonl.*"))


@pytest.mark.slow_reliability
@pytest.mark.timeout(600)
def test_h53_ctrl_c_of_gepa_waiting_out_a_reflector_back_off(tmp_path, tiny_model_dir, loopback) -> None:
    def slow_down(request: Request) -> Reply:
        if request.method == "GET":
            return Reply(200, {"object": "list", "data": [{"id": "m", "object": "model"}]})
        return Reply(429, {"error": {"message": "slow down"}}, {"retry-after": "100"})

    server = loopback(slow_down)
    proc = subprocess.Popen(
        [*P2O, "gepa", "--model", str(tiny_model_dir), "--hard", str(hard(tmp_path / "h.jsonl", 6)),
         "--reflector", "api", "--reflector-url", server.url, "--reflector-model", "m", "--dev-size", "2",
         "--gepa-max-new-tokens", "4", "--width", "2", "--budget", "40", "--out", str(tmp_path / "t.jsonl")],
        stderr=subprocess.PIPE, env=ENV)
    end = time.monotonic() + 400
    while time.monotonic() < end and not any(r.method == "POST" for r in server.requests) and proc.poll() is None:
        time.sleep(0.1)
    assert any(r.method == "POST" for r in server.requests), "the search never asked the reflector"
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    try:
        err = proc.communicate(timeout=30)[1].decode()
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("Ctrl-C waited for the reflector's back-off")
    assert proc.returncode == 130, err[-2000:]
    assert [line for line in err.splitlines() if line.startswith("p2o:")] == [
        "p2o: interrupted (SIGINT); outputs are whole or absent"], err[-2000:]


@pytest.mark.slow_reliability
@pytest.mark.timeout(900)
def test_h54_resume_after_the_starting_model_changed(tmp_path, tiny_model_dir, world) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    out = tmp_path / "run"
    first = subprocess.run([*run_args(model, world, out, "--no-gepa", "--epochs", "1")], capture_output=True, env=ENV,
                           timeout=600)
    assert first.returncode == 0, first.stderr.decode()[-2000:]
    config = json.loads((model / "config.json").read_text())
    config["rope_theta"] = config.get("rope_theta", 10000) * 2
    (model / "config.json").write_text(json.dumps(config))
    before = tree(out)
    result = subprocess.run([*P2O, "run", "--resume", str(out), "--epochs", "2"], capture_output=True, env=ENV,
                            timeout=600)
    refused(result, "model", "--allow-changed-data")
    after = tree(out)
    assert after.pop(".p2o-lock") and before.pop(".p2o-lock")  # the lock names its last holder
    assert after == before
