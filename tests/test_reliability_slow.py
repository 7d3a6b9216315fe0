"""The reliability campaign as a test tier (``make test-slow``; marker ``slow_reliability``).

- a miniature ``p2o run`` killed (SIGKILL, then SIGTERM) at every fault point in turn —
  mid-rollout, mid-update, in a checkpoint's directory swap, mid-GEPA, with a checkpoint
  written but not in place, mid-eval — and resumed each time ends with weights bit-identical
  to an uninterrupted run's;
- a faulty reflector server on 127.0.0.1 (429 + Retry-After, 500, hang, bad JSON, empty
  choices, a 5 MB reply, an answer leak, connection refused): bounded time, right outcome;
- a hypothesis fuzz of every record and state reader: valid, or a one-line error, never a
  traceback or a hang;
- a planted API key never reaches a file or a log.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
import torch
from safetensors.torch import load_file

from helpers import ChatScript, LoopbackServer

pytestmark = pytest.mark.slow_reliability

P2O = [sys.executable, "-m", "p2o_cli"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


# ---------------------------------------------------------------- kill and resume


# The miniature run of tests/test_loop.py: its world and its flags.
from helpers import run_args  # noqa: E402


@pytest.fixture(scope="module")
def straight(tmp_path_factory, tiny_model_dir, world) -> Path:
    out = tmp_path_factory.mktemp("straight") / "run"
    result = subprocess.run(run_args(tiny_model_dir, world, out), capture_output=True, env=ENV, timeout=300)
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    return out


# Each step resumes the run the step before interrupted; the order follows the run's course:
# epoch 0 (rollouts, updates), its GEPA, the epoch-end save (which swaps step-2 in), epoch 1, the last eval.
CHAIN = ["rollout:2", "update:2", "gepa:1", "swap:1", "save:1", "eval:1"]
TERM_CHAIN = ["rollout:2", "update:2", "gepa:1", "save:1", "eval:1"]


def assert_same_final_weights(a_run: Path, b_run: Path) -> None:
    a = load_file(a_run / "checkpoints" / "step-4" / "model.safetensors")
    b = load_file(b_run / "checkpoints" / "step-4" / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("kind", ["KILL", "TERM"])
def test_interrupted_at_every_point_then_resumed_is_bit_identical(tmp_path, tiny_model_dir, world, straight,
                                                                   kind) -> None:
    out = tmp_path / "run"
    chain = CHAIN if kind == "KILL" else TERM_CHAIN
    for index, point in enumerate(chain):
        args = run_args(tiny_model_dir, world, out) if index == 0 else [*P2O, "run", "--resume", str(out)]
        proc = subprocess.run(args, capture_output=True, env={**ENV, "P2O_FAULT": f"{point}:{kind}"}, timeout=300)
        err = proc.stderr.decode()
        if kind == "KILL":
            assert proc.returncode == -signal.SIGKILL, f"{point}: not killed ({proc.returncode})\n{err[-2000:]}"
        else:
            assert proc.returncode == 143, f"{point}: {proc.returncode}\n{err[-2000:]}"
            assert "Traceback" not in err and "p2o: interrupted (SIGTERM)" in err
        state = orjson.loads((out / "state.json").read_bytes())
        assert not state["done"]
        # no p2o temp is left behind that the next write would not sweep
        assert not list(out.rglob(f"*.p{os.getpid()}.*.tmp"))
    resumed = subprocess.run([*P2O, "run", "--resume", str(out)], capture_output=True, env=ENV, timeout=300)
    assert resumed.returncode == 0, resumed.stderr.decode()[-3000:]
    assert orjson.loads((out / "state.json").read_bytes())["done"]
    assert_same_final_weights(straight, out)
    assert not [p for p in out.rglob("*.tmp")], "stale temps survived the resumed run"
    steps = [orjson.loads(line)["training/step"] for line in (out / "metrics.jsonl").read_bytes().splitlines()
             if b"actor/pg_loss" in line]
    assert steps == [1, 2, 3, 4]


# ---------------------------------------------------------------- the faulty reflector server

TEMPLATE = "Work the sum digit by digit."
GOOD = f"```\n{TEMPLATE}\n```"


@pytest.fixture
def serve(loopback) -> Callable[..., LoopbackServer]:
    """``serve(script, default)``: a faulty chat server (helpers.ChatScript) whose good answer is GOOD."""
    return lambda script, default="ok": loopback(ChatScript(script, default, ok=GOOD, retry_after=1, hang_s=5))


def refused_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


def reflector(url: str, retries: int = 3):
    from p2o_cli.gepa.reflect import OpenAIReflector, RetryPolicy

    return OpenAIReflector(url, "m", "sk-x", timeout_s=1.0,
                           retry=RetryPolicy(max_retries=retries, base_delay=0.01, max_delay=2.0))


def request():
    from p2o_cli.gepa.reflect import FeedbackRecord, ReflectionRequest

    return ReflectionRequest("t0", "", [FeedbackRecord("h1", "What is 1+2?", "\\boxed{4}", "4", False, "3")])


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "script, default, expected, min_seconds",
    [
        (["429"], "ok", TEMPLATE, 1.0),  # Retry-After: 1 is waited out, then the answer is used
        (["500", "500"], "ok", TEMPLATE, 0.0),
        (["hang"], "ok", TEMPLATE, 0.0),  # a 1 s timeout, then a retry
        (["badjson", "empty"], "ok", TEMPLATE, 0.0),
        ([], "500", None, 0.0),  # retries spent: the proposal is skipped
        ([], "empty", None, 0.0),
        ([], "huge", None, 0.0),  # 5 MB: refused as a reply, never a template
    ],
)
def test_reflector_faults_end_in_bounded_time(serve, script, default, expected, min_seconds) -> None:
    server = serve(script, default)
    start = time.monotonic()
    assert reflector(server.url).propose([request()]) == [expected]
    assert time.monotonic() - start >= min_seconds


@pytest.mark.timeout(120)
def test_refused_connections_stop_the_search(tmp_path) -> None:
    from helpers import BoxScorer, ChatTokenizer, SkillEngine, make_hard
    from p2o_cli.gepa.config import GepaConfig
    from p2o_cli.gepa.reflect import ReflectorError
    from p2o_cli.gepa.search import run_gepa

    hard = make_hard(12)
    with pytest.raises(ReflectorError, match="in a row \\(last: connection error\\)"):
        run_gepa(hard, SkillEngine(hard), ChatTokenizer(), reflector(refused_url(), retries=1), BoxScorer(),
                 GepaConfig(width=2, minibatch=2, dev_size=4, budget=10_000), state_path=tmp_path / "s.json")


@pytest.mark.timeout(120)
def test_answer_leaks_are_rejected(serve) -> None:
    from helpers import BoxScorer, ChatTokenizer, SkillEngine, make_hard
    from p2o_cli.gepa.config import GepaConfig
    from p2o_cli.gepa.search import run_gepa

    hard = make_hard(12)
    golds = " ".join(h.answer for h in hard)
    server = serve([], default=f"ok:```\nThe answers are {golds}.\n```")
    result = run_gepa(hard, SkillEngine(hard), ChatTokenizer(), reflector(server.url), BoxScorer(),
                      GepaConfig(width=2, minibatch=2, dev_size=4, budget=60, max_iterations=3))
    assert result.rejected_leaks == result.reflections > 0 and result.kept == 0


@pytest.mark.timeout(300)
def test_cli_gepa_with_an_unreachable_reflector_exits_2(tmp_path, tiny_model_dir, serve) -> None:
    hard = tmp_path / "hard.jsonl"
    hard.write_bytes(b"".join(orjson.dumps({"id": f"h{i}", "problem": f"{i}+1?", "answer": str(i + 1),
                                            "rewards": [0.0], "mean_reward": 0.0}) + b"\n" for i in range(4)))
    args = [*P2O, "gepa", "--model", str(tiny_model_dir), "--hard", str(hard), "--out", str(tmp_path / "t.jsonl"),
            "--reflector", "api", "--reflector-model", "m", "--reflector-retries", "1", "--dev-size", "2",
            "--gepa-max-new-tokens", "4", "--width", "2"]
    # Unreachable: refused by the check before the model loads.
    result = subprocess.run([*args, "--reflector-url", refused_url()], capture_output=True, env=ENV, timeout=240)
    err = result.stderr.decode()
    assert result.returncode == 2, err[-2000:]
    assert "Traceback" not in err and "cannot be reached" in err
    # Reachable, but every proposal fails: the search stops, saved for --resume.
    result = subprocess.run([*args, "--reflector-url", serve([], default="500").url], capture_output=True, env=ENV,
                            timeout=240)
    err = result.stderr.decode()
    assert result.returncode == 2, err[-2000:]
    assert "Traceback" not in err and "in a row" in err and "--resume" in err


# ---------------------------------------------------------------- fuzzing every reader


def _readers():
    from p2o_cli.config import read_config_file
    from p2o_cli.files.records import Assignment, Hard, Problem, Rollout, Template, read_records
    from p2o_cli.gepa.state import load_state
    from p2o_cli.loop.config import RunConfig
    from p2o_cli.loop.rundir import RunDir

    def run_state(path: Path):
        target = path.parent / "state.json"
        path.replace(target)
        return RunDir(path.parent).read_state()

    readers = {cls.__name__: (lambda p, cls=cls: read_records(p, cls)) for cls in
               (Problem, Rollout, Hard, Template, Assignment)}
    readers.update({"gepa-state": load_state, "run-state": run_state, "toml": lambda p: read_config_file(p, RunConfig)})
    return readers


def _fuzz_strategies():
    from hypothesis import strategies as st

    from p2o_cli.files.records import Rollout, Template, to_dict

    scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                        st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30),
                        st.sampled_from(["x" * 300_000, 10**18, -1e308]))
    json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                               | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
    base_rollout = to_dict(Rollout("q", 0, "p", "r", 1.0, None, "stop", 1))
    base_template = to_dict(Template("t0", ""))
    fields = sorted(set(base_rollout) | set(base_template) | {"id", "problem", "answer", "rewards",
                    "mean_reward", "template_ids", "spent", "templates", "rng", "epoch", "step"})
    # Near-valid records: a valid one with some fields replaced by random values.
    mutated = st.builds(lambda base, changes: {**base, **changes}, st.sampled_from([base_rollout, base_template]),
                        st.dictionaries(st.sampled_from(fields), json_values, max_size=3))
    return st.one_of(json_values, mutated)


@pytest.mark.timeout(600)
def test_fuzzed_files_are_valid_or_one_line_errors(tmp_path) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from p2o_cli.errors import RecordError

    readers = _readers()

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(sorted(readers)), st.lists(_fuzz_strategies(), min_size=1, max_size=3),
           st.sampled_from(["jsonl", "raw", "toml"]))
    def check(reader: str, values: list, shape: str) -> None:
        path = tmp_path / "fuzz.in"
        if shape == "jsonl":
            data = b"".join(orjson.dumps(v) + b"\n" for v in values)
        elif shape == "raw":
            data = orjson.dumps(values[0])[: max(1, len(orjson.dumps(values[0])) - 1)]
        else:
            data = "\n".join(f"{k} = {json.dumps(v)}" for k, v in (values[0] if isinstance(values[0], dict)
                                                                   else {"k": values[0]}).items()).encode()
        path.write_bytes(data)
        try:
            readers[reader](path)
        except (RecordError, ValueError) as err:
            message = str(err)
            assert "\n" not in message.strip() or reader == "toml", message[:300]
            assert len(message) < 2_000, message[:300]

    check()


# ---------------------------------------------------------------- secrets


@pytest.mark.timeout(300)
def test_a_planted_api_key_never_reaches_disk_or_logs(tmp_path, tiny_model_dir, serve) -> None:
    secret = "sk-planted-" + "7f3a9c" * 6
    server = serve(["429", "500", "badjson"], default="ok")
    hard = tmp_path / "hard.jsonl"
    hard.write_bytes(b"".join(orjson.dumps({"id": f"h{i}", "problem": f"{i}+1?", "answer": str(i + 1),
                                            "rewards": [0.0], "mean_reward": 0.0}) + b"\n" for i in range(4)))
    env = {**ENV, "PLANTED_KEY": secret}
    result = subprocess.run(
        [*P2O, "gepa", "--model", str(tiny_model_dir), "--hard", str(hard), "--out", str(tmp_path / "t.jsonl"),
         "--reflector", "api", "--reflector-url", server.url, "--reflector-model", "m",
         "--reflector-key-env", "PLANTED_KEY", "--dev-size", "2", "--gepa-max-new-tokens", "4", "--width", "2",
         "--budget", "20", "--metrics", str(tmp_path / "m.jsonl")],
        capture_output=True, env=env, cwd=tmp_path, timeout=240,
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert f"Bearer {secret}" in [r.headers.get("authorization") for r in server.requests]  # the key was used ...
    assert secret.encode() not in result.stdout + result.stderr  # ... and never shown
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) >= 3
    for path in written:
        assert secret.encode() not in path.read_bytes(), path
