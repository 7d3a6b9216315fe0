"""Helpers several test modules share: a miniature run's flags, a small rollout batch, scripted
GEPA stand-ins, TensorBoard read-back, a loopback HTTP server, what a directory holds and which
processes a session still has. Fixtures live in conftest.py."""

from __future__ import annotations

import json
import os
import re
import stat
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest

from p2o_cli.data.prompts import render
from p2o_cli.engines import Completion
from p2o_cli.files.records import Hard, Rollout, to_dict
from p2o_cli.monitor.tracking import STEP_KEY, scalars
from p2o_cli.toy.tiny import char_tokenizer

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def run_args(model: Path, world: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "p2o_cli", "run", "--model", str(model), "--data", str(world / "train.jsonl"),
        "--out", str(out), "--epochs", "2", "--batch-size", "4", "--k", "2", "--max-new-tokens", "6",
        "--temperature", "1.0", "--lr", "1e-3", "--min-hard", "2", "--reflector", "toy", "--width", "2",
        "--minibatch", "2", "--budget", "16", "--dev-size", "2", "--gepa-max-new-tokens", "6",
        "--bench", "toy-mini", "--data-dir", str(world / "bench"), "--eval-n", "1",
        "--eval-temperature", "0", "--eval-every", "2", "--save-every", "1", "--keep-last", "2", *extra,
    ]


TOK = char_tokenizer()


HINT = "Add the tens first."


def make(pid: str, k: int, response: str, reward: float, template: str | None = None) -> Rollout:
    x = render(TOK, f"{pid}: 12+30?")
    xt = render(TOK, f"{pid}: 12+30?", template) if template else x
    return Rollout(id=pid, k=k, prompt=xt, response=response, reward=reward, pred=None, finish_reason="stop",
                   n_tokens=len(response) + 1, template_id="t1" if template else None, template=template,
                   original_prompt=x if template else None)


def batch(tag: str = "") -> list[Rollout]:
    """Two problems × 3 rollouts, mixed rewards, one templated rollout in each group."""
    return [
        make(f"a{tag}", 0, "42", 1.0, HINT), make(f"a{tag}", 1, "24", 0.0), make(f"a{tag}", 2, "4 2", 0.0),
        make(f"b{tag}", 0, "The sum is 42", 1.0), make(f"b{tag}", 1, "43", 0.0, HINT), make(f"b{tag}", 2, "42!", 1.0),
    ]


def write_rollouts(path: Path, rollouts: list[Rollout]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(to_dict(r)) + b"\n" for r in rollouts))
    return path


def tensorboard_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the event files under ``log_dir``: tag -> [(step, value)] in write order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[tuple[int, float]]] = {}
    runs = sorted({p.parent for p in log_dir.rglob("events.out.tfevents.*")})
    assert runs, f"no event files under {log_dir}"
    for run in runs:
        acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return out


def jsonl_scalars(path: Path) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for line in path.read_bytes().splitlines():
        row = scalars(orjson.loads(line))
        for key, value in row.items():
            out.setdefault(key, []).append((int(row.get(STEP_KEY, 0)), value))
    return out


def assert_same_metrics(log_dir: Path, metrics_path: Path) -> None:
    written, logged = jsonl_scalars(metrics_path), tensorboard_scalars(log_dir)
    assert set(logged) == set(written)
    for tag, points in written.items():
        assert [s for s, _ in logged[tag]] == [s for s, _ in points], tag
        # TensorBoard stores float32.
        assert [v for _, v in logged[tag]] == pytest.approx([v for _, v in points], rel=1e-6, abs=1e-30), tag


CATEGORIES = ("alpha", "beta", "gamma", "delta")


def make_hard(n: int = 12) -> list[Hard]:
    return [
        Hard(f"h{i}", f"[{CATEGORIES[i % 4]}] Q{i}: what is the secret number?", str(1000 + 37 * i), [0.0] * 6, 0.0)
        for i in range(n)
    ]


class ChatTokenizer:
    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True, **kwargs):
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"


class SkillEngine:
    """Solves a problem iff its prompt says "use <category>"; counts calls and prompts."""

    def __init__(self, hard: list[Hard]):
        self.gold = {h.problem.split(":")[0]: h.answer for h in hard}
        self.calls: list[int] = []
        self.temperatures: list[float] = []

    def generate(self, prompts, n=1, temperature=0.6, top_p=1.0, max_new_tokens=16, seed=0, progress=None):
        self.calls.append(len(prompts) * n)
        self.temperatures.append(temperature)
        out = []
        for prompt in prompts:
            key = re.search(r"\[(\w+)\] Q\d+", prompt)
            category = key.group(1)
            answer = self.gold[key.group(0)] if f"use {category}" in prompt else "0"
            out.append([Completion(f"So the number is \\boxed{{{answer}}}", 8, "stop") for _ in range(n)])
        return out

    @property
    def rollouts(self) -> int:
        return sum(self.calls)


@dataclass
class Result:
    reward: float
    pred: str | None


class BoxScorer:
    def score(self, responses, problems):
        preds = [re.search(r"\\boxed\{(.*)\}", r).group(1) for r in responses]
        return [Result(float(p == problem["answer"]), p) for p, problem in zip(preds, problems)]

    def leaks(self, problem):
        return [problem["answer"]]


# ---------------------------------------------------------------- a loopback HTTP server
# For the tests of p2o's HTTP clients (the openai engine, the API reflectors): a test's function
# answers each request, so the client library under test builds its own requests, responses and
# errors, whatever its release does inside. The ``loopback`` fixture (conftest.py) starts servers
# and closes them after the test.


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Reply:
    status: int = 200
    body: Any = b""  # bytes are sent as they are, anything else as JSON
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # wait before answering (a server that hangs)


Answer = Callable[[Request], Reply]


class LoopbackServer:
    """Serves ``answer(request)`` on 127.0.0.1 (any free port); ``url`` ends in ``/v1``.

    Requests are recorded in ``requests`` and answered one at a time, so a scripted answer sees
    them in arrival order; the delay of a reply is waited out concurrently.
    """

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server._respond(self)

            def do_POST(self) -> None:
                server._respond(self)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def _respond(self, handler: BaseHTTPRequestHandler) -> None:
        raw = handler.rfile.read(int(handler.headers.get("content-length", 0)))
        request = Request(handler.command, handler.path, {k.lower(): v for k, v in handler.headers.items()}, raw)
        with self.lock:
            self.requests.append(request)
            reply = self.answer(request)
        time.sleep(reply.delay_s)
        body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        try:
            handler.send_response(reply.status)
            handler.send_header("content-type", "application/json")
            handler.send_header("content-length", str(len(body)))
            for key, value in reply.headers.items():
                handler.send_header(key, value)
            handler.end_headers()
            handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting

    @property
    def count(self) -> int:
        return len(self.requests)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> LoopbackServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def chat_completion(content: str | None, choices: bool = True) -> dict:
    """A /v1/chat/completions reply whose one choice says ``content`` (no choice: ``choices=False``)."""
    message = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [message] if choices else [],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


class ChatScript:
    """A chat server's faults, scripted: each POST gets the script's next action, then ``default``.

    Actions: "429" (with Retry-After ``retry_after`` seconds), "500", "401", "hang" (answers only
    after ``hang_s``), "garbage" (HTML), "badjson" (cut-off JSON), "empty" (no choices), "huge" (a
    5 MB answer), "ok:<content>", and "ok" (``ok`` as the content). A GET lists the one model "m".
    """

    def __init__(self, script: list[str], default: str = "ok", ok: str = "", retry_after: int = 0,
                 hang_s: float = 0.6) -> None:
        self.script, self.default, self.ok = list(script), default, ok
        self.retry_after, self.hang_s = retry_after, hang_s

    def __call__(self, request: Request) -> Reply:
        if request.method == "GET":
            return Reply(body={"object": "list", "data": [{"id": "m", "object": "model"}]})
        action = self.script.pop(0) if self.script else self.default
        errors = {"429": "slow down", "500": "boom", "401": "bad key"}
        if action in errors:
            headers = {"retry-after": str(self.retry_after)} if action == "429" else {}
            return Reply(int(action), {"error": {"message": errors[action]}}, headers)
        raw = {"garbage": b"<html>this is not json", "badjson": b'{"choices": ['}
        if action in raw:
            return Reply(body=raw[action])
        if action == "empty":
            return Reply(body=chat_completion(None, choices=False))
        if action == "huge":
            return Reply(body=chat_completion("```\n" + "x" * 5_000_000 + "\n```"))
        content = self.ok if action in ("ok", "hang") else action.removeprefix("ok:")
        return Reply(body=chat_completion(content), delay_s=self.hang_s if action == "hang" else 0.0)


def echo_key(status: int) -> Answer:
    """Refuse every request with ``status``, the error message echoing the Authorization header."""

    def answer(request: Request) -> Reply:
        message = f"Incorrect API key provided: {request.headers.get('authorization', '')}"
        return Reply(status, {"error": {"message": message, "type": "invalid_request_error"}})

    return answer


# ---------------------------------------------------------------- files and processes

T = TypeVar("T")


def tree(root: Path) -> dict[str, bytes | str]:
    """Every path under ``root`` with its bytes (files) or its kind (directories, FIFOs, devices)."""
    out: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        mode = path.lstat().st_mode
        out[str(path.relative_to(root))] = path.read_bytes() if stat.S_ISREG(mode) else stat.filemode(mode)
    return out


def kept(target: Path, action: Callable[[], T]) -> T:
    """``action()``'s result, asserting that ``target`` (a file, or a directory's whole tree) is
    byte for byte what it was before."""

    def look() -> object:
        return tree(target) if target.is_dir() else target.read_bytes()

    before = look()
    result = action()
    assert look() == before, f"{target} changed"
    return result


def fake_run_dir(path: Path) -> Path:
    """What p2o report reads from a run directory: its config and its metrics (nothing else)."""
    path.mkdir(parents=True)
    (path / "config.json").write_text('{"name": "a"}')
    rows = [{"training/step": s, "epoch": 0, "critic/rewards/mean": 0.1 * s} for s in range(1, 4)]
    (path / "metrics.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


def process_state(pid: int) -> str:
    """The state letter of ``/proc/PID/stat`` (R, S, T stopped, Z zombie …), "gone" when there is none."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"


def session_pids(sid: int) -> list[int]:
    """Live (not zombie) processes of session ``sid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(entry.name))
    return found
