"""Reflectors: GEPA's meta-prompt, answer parsing, and the OpenAI reflector against a loopback server."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import pytest

from helpers import ChatScript, LoopbackServer
from p2o_cli.engines import Completion
from p2o_cli.gepa.reflect import (
    FeedbackRecord,
    OpenAIReflector,
    ReflectionRequest,
    ReflectorError,
    RetryPolicy,
    SelfReflector,
    extract_template,
    meta_prompt,
)
from p2o_cli.gepa.reflectors import PRESETS, make_reflector

SECRET = "sk-test-secret-0123456789"
TEMPLATE = "Check each case separately and add the parts at the end."
GOOD_ANSWER = f"Here is the improved instruction:\n```\n{TEMPLATE}\n```\n"


def request(parent: str = "", seed: int = 0) -> ReflectionRequest:
    feedback = [
        FeedbackRecord("h1", "What is 17+25?", "17+25 = 32. \\boxed{32}", "32", False, "42"),
        FeedbackRecord("h2", "What is 3+4?", "\\boxed{7}", "7", True, "7"),
    ]
    return ReflectionRequest("t0", parent, feedback, seed)


# ---------------------------------------------------------------- the loopback chat server


@pytest.fixture
def serve(loopback) -> Callable[..., LoopbackServer]:
    """``serve(script)``: a chat server answering from ``script``, then with garbage (helpers.ChatScript)."""
    return lambda script, default="garbage": loopback(ChatScript(script, default))


def reflector_for(server: LoopbackServer, retries: int = 5, timeout_s: float = 0.25, **kwargs) -> OpenAIReflector:
    retry = RetryPolicy(max_retries=retries, base_delay=0.005, max_delay=0.02)
    return OpenAIReflector(server.url, "test-model", SECRET, timeout_s=timeout_s, retry=retry, **kwargs)


# ---------------------------------------------------------------- tests


def test_meta_prompt_is_gepas_with_parent_and_feedback() -> None:
    from gepa.strategies.instruction_proposal import InstructionProposalSignature

    req = request("Work carefully.")
    prompt = meta_prompt(req)
    head = InstructionProposalSignature.default_prompt_template.split("<curr_param>")[0]
    assert prompt.startswith(head)
    assert "Work carefully." in prompt and "What is 17+25?" in prompt and "\\boxed{32}" in prompt
    assert "the correct answer is 42" in prompt and "The response is correct" in prompt
    # The empty seed template renders too.
    assert meta_prompt(request("")).startswith(head)


def test_extract_template() -> None:
    assert extract_template(GOOD_ANSWER) == TEMPLATE
    assert extract_template("```text\nUse a table.\n```") == "Use a table."
    assert extract_template("<think>maybe ```draft```</think>\n```\nFinal.\n```") == "Final."
    assert extract_template("Just prose with no block.") is None
    assert extract_template("``````") is None
    assert extract_template(None) is None


def test_retries_through_429_500_timeout_and_garbage(serve, caplog) -> None:
    server = serve(["429", "500", "hang", "garbage", f"ok:{GOOD_ANSWER}"])
    reflector = reflector_for(server)
    with caplog.at_level(logging.DEBUG, logger="p2o_cli"):
        assert reflector.propose([request()]) == [TEMPLATE]
    assert server.count == 5
    assert reflector.stats == {"requests": 5, "retries": 4, "failed": 0, "malformed": 0}
    last = server.requests[-1]
    body = last.json()
    assert last.path == "/v1/chat/completions" and body["model"] == "test-model"
    assert body["messages"] == [{"role": "user", "content": meta_prompt(request())}]
    assert "temperature" not in body  # the provider's default unless asked
    assert last.headers["authorization"] == f"Bearer {SECRET}"
    assert SECRET not in caplog.text and SECRET not in repr(reflector)


def test_garbage_forever_skips_the_proposal(serve, caplog) -> None:
    server = serve([], default="garbage")
    reflector = reflector_for(server, retries=2)
    asking = request()
    asking.iteration = 7
    with caplog.at_level(logging.INFO, logger="p2o_cli"):
        assert reflector.propose([asking]) == [None]
    assert server.count == 3
    assert reflector.stats["failed"] == 1
    # The give-up line says which iteration and parent it cost, and after how long.
    gave_up = [r.getMessage() for r in caplog.records if "gave up" in r.getMessage()]
    assert len(gave_up) == 1
    assert re.match(rf"reflector \(GEPA iteration 7, parent {asking.parent_id}\): gave up after 3 attempts in \d+s",
                    gave_up[0]), gave_up


def test_answer_without_a_block_is_malformed_and_not_retried(serve) -> None:
    server = serve(["ok:I would tell the assistant to be careful."])
    reflector = reflector_for(server)
    assert reflector.propose([request()]) == [None]
    assert server.count == 1 and reflector.stats["malformed"] == 1


def test_batch_runs_concurrently_in_order(serve) -> None:
    server = serve([], default=f"ok:{GOOD_ANSWER}")
    reflector = reflector_for(server, concurrency=3, temperature=0.5)
    assert reflector.propose([request(f"p{i}") for i in range(4)]) == [TEMPLATE] * 4
    assert server.count == 4 and all(r.json()["temperature"] == 0.5 for r in server.requests)
    assert reflector.propose([]) == []


def test_bad_key_stops_the_search_without_showing_it(serve) -> None:
    server = serve(["401"])
    with pytest.raises(ReflectorError) as err:
        reflector_for(server).propose([request()])
    assert "401" in str(err.value) and SECRET not in str(err.value)
    assert server.count == 1


def test_backoff_is_the_shared_clients_and_honours_retry_after() -> None:
    # The reflector retries through engines.openai_client: full jitter below the doubling
    # ceiling, never less than the server's Retry-After (seconds or -ms), both capped.
    from p2o_cli.engines.openai_client import backoff_delay, retry_after

    top = lambda: 1.0  # noqa: E731 - the jitter draw at its maximum
    assert backoff_delay(0, 0.1, 5.0, None, top) == pytest.approx(0.1)
    assert backoff_delay(3, 0.1, 5.0, None, top) == pytest.approx(0.8)
    assert backoff_delay(3, 0.1, 5.0, None, lambda: 0.5) == pytest.approx(0.4)
    assert backoff_delay(0, 0.1, 5.0, 2.0, top) == pytest.approx(2.0)
    assert backoff_delay(0, 0.1, 5.0, 60.0, top) == pytest.approx(5.0)  # capped
    assert backoff_delay(10, 0.1, 5.0, None, top) == pytest.approx(5.0)

    class Err(Exception):
        def __init__(self, headers: dict) -> None:
            self.response = type("R", (), {"headers": headers})()

    assert retry_after(Err({"retry-after-ms": "1500"})) == pytest.approx(1.5)
    assert retry_after(Err({"retry-after": "3"})) == pytest.approx(3.0)
    assert retry_after(Err({})) is None


def test_factory_presets_and_missing_key(monkeypatch) -> None:
    monkeypatch.delenv("MOONSHOT_API_KEY", raising=False)
    with pytest.raises(ValueError, match="MOONSHOT_API_KEY"):
        make_reflector("kimi")
    monkeypatch.setenv("MOONSHOT_API_KEY", SECRET)
    kimi = make_reflector("kimi")
    assert isinstance(kimi, OpenAIReflector)
    assert (kimi.base_url, kimi.model) == (PRESETS["kimi"].base_url, PRESETS["kimi"].model)
    assert SECRET not in repr(kimi) and SECRET not in repr(vars(kimi).get("stats"))
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    custom = make_reflector("openai", url="http://127.0.0.1:1/v1", model="m2")
    assert (custom.base_url, custom.model) == ("http://127.0.0.1:1/v1", "m2")
    with pytest.raises(ValueError, match="--reflector-url"):
        make_reflector("api")
    assert make_reflector("api", url="http://127.0.0.1:1/v1", model="local").model == "local"
    with pytest.raises(ValueError, match="unknown reflector"):
        make_reflector("nope")


class FakeChatTokenizer:
    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True, **kwargs):
        return "<user>" + messages[0]["content"] + "<assistant>"


class FixedEngine:
    def __init__(self, text: str):
        self.text = text
        self.calls: list[tuple[int, float]] = []

    def generate(self, prompts, n=1, temperature=0.6, top_p=1.0, max_new_tokens=16, seed=0, progress=None):
        self.calls.append((len(prompts), temperature))
        return [[Completion(self.text, 5, "stop")] for _ in prompts]


def test_self_reflector_batches_through_the_engine() -> None:
    engine = FixedEngine(GOOD_ANSWER)
    reflector = make_reflector("self", engine=engine, tokenizer=FakeChatTokenizer())
    assert isinstance(reflector, SelfReflector)
    assert reflector.propose([request("a"), request("b")]) == [TEMPLATE, TEMPLATE]
    assert engine.calls == [(2, 0.7)]
    assert SelfReflector(FixedEngine("no block"), FakeChatTokenizer()).propose([request()]) == [None]
