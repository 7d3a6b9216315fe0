"""The retrying client and the openai engine against a loopback server (a real vLLM one is in test_vllm.py).

The errors are the ones the openai client raises for real HTTP replies, so the tests need nothing
of the client's insides (its HTTP library changed between releases).
"""

from __future__ import annotations

import threading
import time

import openai
import pytest

from helpers import LoopbackServer, Reply, Request
from p2o_cli.data.prompts import render
from p2o_cli.engines import Engine, load_engine, resolve_engine
from p2o_cli.engines.openai import VLLM_EXTRAS
from p2o_cli.engines.openai_client import is_retryable, make_client, map_bounded, with_retries


def client_error(reply: Reply, timeout: float = 5.0) -> Exception:
    """What the openai client raises when a server answers ``reply``."""
    with LoopbackServer(lambda request: reply) as server, make_client(server.url, timeout=timeout) as client:
        try:
            client.models.list()
        except openai.OpenAIError as err:
            return err
    raise AssertionError(f"the client accepted {reply}")


def error_reply(status: int, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, {"error": {"message": f"HTTP {status}"}}, headers or {})


def status_error(status: int, headers: dict[str, str] | None = None) -> Exception:
    return client_error(error_reply(status, headers))


def test_the_client_raises_its_own_typed_errors() -> None:
    assert type(status_error(400)) is openai.BadRequestError
    assert type(status_error(401)) is openai.AuthenticationError
    limited = status_error(429, {"retry-after": "7"})
    assert type(limited) is openai.RateLimitError and limited.response.headers["retry-after"] == "7"
    assert type(status_error(503)) is openai.InternalServerError
    assert type(client_error(Reply(delay_s=1.0), timeout=0.05)) is openai.APITimeoutError


# ---------------------------------------------------------------- with_retries, map_bounded


def test_retries_transient_errors_with_growing_jittered_delays() -> None:
    errors = [status_error(429), status_error(503), client_error(Reply(delay_s=1.0), timeout=0.05)]
    calls, sleeps = [], []

    def flaky() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return "ok"

    assert with_retries(flaky, max_retries=5, base_delay=1.0, sleep=sleeps.append, rand=lambda: 0.5) == "ok"
    assert len(calls) == 4
    assert sleeps == [0.5, 1.0, 2.0]  # uniform draw (0.5 here) below base * 2**attempt


def test_retry_after_is_honoured_and_capped() -> None:
    sleeps: list[float] = []
    errors = [status_error(429, {"retry-after": "7"}), status_error(429, {"retry-after": "500"})]

    def fn() -> int:
        if errors:
            raise errors.pop(0)
        return 1

    with_retries(fn, base_delay=0.1, max_delay=30.0, sleep=sleeps.append, rand=lambda: 0.0)
    assert sleeps == [7.0, 30.0]


def test_client_errors_are_not_retried_and_retries_run_out() -> None:
    sleeps: list[float] = []
    with pytest.raises(openai.BadRequestError):
        with_retries(lambda: (_ for _ in ()).throw(status_error(400)), sleep=sleeps.append)
    assert sleeps == []
    with pytest.raises(openai.InternalServerError):
        with_retries(lambda: (_ for _ in ()).throw(status_error(500)), max_retries=2, sleep=sleeps.append)
    assert len(sleeps) == 2
    assert is_retryable(status_error(502)) and is_retryable(ConnectionResetError())
    assert not is_retryable(status_error(401)) and not is_retryable(ValueError("bad"))


def test_map_bounded_keeps_order_bounds_concurrency_and_raises_the_first_error() -> None:
    lock = threading.Lock()
    state = {"now": 0, "peak": 0}
    finished: list[int] = []

    def work(x: int) -> int:
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        time.sleep(0.01 * (x % 3))
        with lock:
            state["now"] -= 1
        return x * x

    out = map_bounded(work, range(12), max_workers=3, on_done=lambda i, r: finished.append(i))
    assert out == [x * x for x in range(12)]
    assert state["peak"] <= 3 and sorted(finished) == list(range(12))
    assert map_bounded(work, [], 4) == []

    def boom(x: int) -> int:
        if x == 2:
            raise RuntimeError("no")
        return x

    with pytest.raises(RuntimeError, match="no"):
        map_bounded(boom, range(6), max_workers=2)


def test_make_client_turns_off_the_clients_own_retries(monkeypatch) -> None:
    monkeypatch.setenv("P2O_TEST_KEY", "sk-test")
    client = make_client("http://127.0.0.1:9/v1", api_key_env="P2O_TEST_KEY", timeout=5)
    assert client.max_retries == 0 and client.api_key == "sk-test"
    assert str(client.base_url).startswith("http://127.0.0.1:9/v1")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert make_client("http://127.0.0.1:9/v1").api_key == "EMPTY"  # local servers take any key


# ---------------------------------------------------------------- the engine, on a loopback server


class CompletionsServer:
    """Answers like a vLLM server (token ids when asked) or a strict one (400 on vLLM's extra fields).

    The "model" echoes the prompt's length plus the sample's index; the last of n > 1 samples is
    cut short. ``calls`` are the JSON bodies sent to /v1/completions, in arrival order.
    """

    def __init__(self, tokenizer, models=("served-a",), strict: bool = False, fail_first: int = 0):
        self.tokenizer = tokenizer
        self.models = models
        self.strict = strict
        self.fail_first = fail_first
        self.calls: list[dict] = []

    def __call__(self, request: Request) -> Reply:
        if request.method == "GET" and request.path.endswith("/models"):
            return Reply(body={"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "p2o"}
                                                          for m in self.models]})
        body = request.json()
        self.calls.append(body)
        if self.fail_first:
            self.fail_first -= 1
            return error_reply(503)
        extras = VLLM_EXTRAS.keys() & body.keys()
        if self.strict and extras:
            return error_reply(400)
        choices = []
        for i in range(body["n"]):
            text = f"\\boxed{{{len(body['prompt']) + i}}}"
            reason = "length" if i == body["n"] - 1 and body["n"] > 1 else "stop"
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            ids = ids + [self.tokenizer.eos_token_id] if reason == "stop" else ids
            choice = {"index": i, "text": text, "finish_reason": reason, "logprobs": None}
            choices.append({**choice, "token_ids": ids} if body.get("return_token_ids") else choice)
        used = sum(len(self.tokenizer(c["text"])["input_ids"]) + 1 for c in choices)
        return Reply(body={"id": "cmpl-1", "object": "text_completion", "created": 0, "model": body["model"],
                           "choices": list(reversed(choices)),
                           "usage": {"prompt_tokens": 1, "completion_tokens": used, "total_tokens": used + 1}})


def test_openai_engine_on_a_vllm_like_server(tiny_model_dir, loopback) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    fake = CompletionsServer(tok)
    engine = load_engine("openai", str(tiny_model_dir), base_url=loopback(fake).url, max_concurrency=2)
    assert isinstance(engine, Engine) and engine.served_model == "served-a"  # the only model served
    prompts = [render(engine.tokenizer, f"What is {i}+1?") for i in range(5)]
    seen = []
    out = engine.generate(prompts, n=3, temperature=0.7, top_p=0.9, max_new_tokens=20, seed=4,
                          progress=lambda done, tokens: seen.append((done, tokens)))
    assert engine.vllm_extras is True
    assert [[c.text for c in row] for row in out] == [
        [f"\\boxed{{{len(p) + i}}}" for i in range(3)] for p in prompts
    ]
    assert [c.finish_reason for c in out[0]] == ["stop", "stop", "length"]
    assert out[0][0].n_tokens == len(out[0][0].token_ids) == len(tok(out[0][0].text)["input_ids"]) + 1
    assert sum(d for d, _ in seen) == 15 and sum(t for _, t in seen) == sum(c.n_tokens for r in out for c in r)
    sent = sorted(fake.calls, key=lambda c: c["seed"])
    assert [c["seed"] for c in sent] == [4 * 1_000_003 + i for i in range(5)]  # one seed per prompt
    assert all(c["n"] == 3 and c["max_tokens"] == 20 and c["temperature"] == 0.7 and c["top_p"] == 0.9 for c in sent)
    assert all(c["prompt"] == p for c, p in zip(sent, prompts))
    assert {k: sent[0][k] for k in VLLM_EXTRAS} == VLLM_EXTRAS and sent[0]["model"] == "served-a"
    greedy = engine.generate(prompts[:1], n=1, temperature=0.0, top_p=0.5, max_new_tokens=8, seed=None)
    assert greedy[0][0].finish_reason == "stop"
    assert fake.calls[-1]["temperature"] == 0.0 and fake.calls[-1]["top_p"] == 1.0 and "seed" not in fake.calls[-1]
    with pytest.raises(NotImplementedError):
        engine.update_weights({})
    engine.close()


def test_openai_engine_drops_extras_for_a_strict_server_and_retries_503(tiny_model_dir, loopback) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    fake = CompletionsServer(tok, models=("a", "b"), strict=True, fail_first=1)
    engine = load_engine("openai", str(tiny_model_dir), base_url=loopback(fake).url, served_model="b",
                         base_delay=0.0)
    out = engine.generate([render(tok, "hi"), render(tok, "ho")], n=2, max_new_tokens=16)
    assert engine.vllm_extras is False
    assert [{k: c.get(k) for k in VLLM_EXTRAS} for c in fake.calls[:2]] == [VLLM_EXTRAS] * 2  # 503, then 400
    assert all(not VLLM_EXTRAS.keys() & c.keys() for c in fake.calls[2:])
    assert len(fake.calls) == 4 and all(c["model"] == "b" for c in fake.calls)
    # No token ids from a strict server with n=2: counts come from re-tokenizing (+1 for the stop token).
    first = out[0][0]
    assert first.token_ids is None and first.n_tokens == len(tok(first.text)["input_ids"]) + 1
    assert out[0][1].n_tokens == len(tok(out[0][1].text)["input_ids"])  # "length": no stop token
    engine.close()


def test_openai_engine_needs_a_served_model_when_the_server_has_several(tiny_model_dir, loopback) -> None:
    server = loopback(CompletionsServer(None, models=("a", "b")))
    with pytest.raises(ValueError, match="--served-model"):
        load_engine("openai", str(tiny_model_dir), base_url=server.url)


# ---------------------------------------------------------------- choosing an engine


def test_auto_engine_is_hf_without_cuda_and_unknown_names_fail(monkeypatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_engine("auto") == "hf" and resolve_engine("vllm") == "vllm"
    with pytest.raises(ValueError, match="unknown engine"):
        load_engine("tgi", "x")


def test_cli_engine_errors_are_one_line(tiny_model_dir, tmp_path) -> None:
    from typer.testing import CliRunner

    from p2o_cli.cli import app

    data = tmp_path / "p.jsonl"
    data.write_text('{"id": "a", "problem": "1+1?", "answer": "2"}\n')
    runner = CliRunner()
    base = ["rollout", "--model", str(tiny_model_dir), "--data", str(data), "--k", "1", "--max-new-tokens", "2"]
    result = runner.invoke(app, [*base, "--engine", "openai"], env={"OPENAI_BASE_URL": ""})
    assert result.exit_code == 2 and "--base-url" in result.output
    result = runner.invoke(app, [*base, "--engine", "nope"])
    assert result.exit_code == 2 and "--engine must be" in result.output
    try:
        import vllm  # noqa: F401
    except ImportError:
        result = runner.invoke(app, [*base, "--engine", "vllm"])
        assert result.exit_code == 2 and "needs the vllm package" in result.output
