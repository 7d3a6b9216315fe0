"""Reflectors: given a parent template and its failures on a minibatch, propose a child.

The meta-prompt and the answer parsing are GEPA's own (``InstructionProposalSignature``),
imported from the ``gepa`` package so p2o proposes templates exactly as GEPA does. Three
kinds of reflector share one batched protocol (W proposals per iteration):

- ``OpenAIReflector``: any OpenAI-compatible chat endpoint (presets ``kimi`` and ``openai``),
  with our own retries (exponential backoff + jitter, Retry-After honoured) on 429, 5xx,
  timeouts, dropped connections and unparseable replies;
- ``SelfReflector``: the reference model through the local engine;
- ``toy``: the toy world's offline reflector (``p2o_cli.toy.reflector``), imported lazily.

API keys are read from an environment variable and live only inside the HTTP client: they
are never printed, logged or written to disk.
"""

from __future__ import annotations

import logging
import os
import random
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

log = logging.getLogger(__name__)

REFLECTORS = ("kimi", "openai", "api", "self", "toy")


@dataclass(frozen=True)
class Preset:
    base_url: str
    model: str
    key_env: str


# Kimi K2 on Moonshot's international endpoint. The 2025 preview ids (kimi-k2-0905-preview …)
# were retired in 2026; kimi-k2.6 is the current K2 model. Override with --reflector-model.
PRESETS: dict[str, Preset] = {
    "kimi": Preset("https://api.moonshot.ai/v1", "kimi-k2.6", "MOONSHOT_API_KEY"),
    "openai": Preset("https://api.openai.com/v1", "gpt-4.1-mini", "OPENAI_API_KEY"),
}

# Responses can be 12k tokens; the reflector needs the approach and the final answer, so a
# long response keeps its head and its tail (where the answer is) within this many characters.
MAX_RESPONSE_CHARS = 6000


class ReflectorError(RuntimeError):
    """The reflector cannot work at all (bad key, unknown model, wrong URL): stop the search."""


@dataclass
class FeedbackRecord:
    """One minibatch problem as the parent template fared on it."""

    problem_id: str
    problem: str
    response: str
    pred: str | None
    correct: bool
    gold: str


@dataclass
class ReflectionRequest:
    """Everything a reflector may see for one proposal: the parent text and its feedback."""

    parent_id: str
    parent_text: str
    feedback: list[FeedbackRecord] = field(default_factory=list)
    # For reflectors that sample: derived from (search seed, iteration, slot), so a resumed
    # search asks exactly what the uninterrupted one asked.
    seed: int = 0
    iteration: int = 0  # the GEPA iteration asking, for log lines


@runtime_checkable
class Reflector(Protocol):
    def propose(self, requests: Sequence[ReflectionRequest]) -> list[str | None]:
        """One child template text per request, or None where the proposal failed (it is skipped)."""
        ...


# ---------------------------------------------------------------- GEPA's meta-prompt


def _signature() -> Any:
    from gepa.strategies.instruction_proposal import InstructionProposalSignature

    return InstructionProposalSignature


def shorten(text: str, max_chars: int = MAX_RESPONSE_CHARS) -> str:
    """``text`` if it fits, else its head and tail around a marker saying how much was cut."""
    if len(text) <= max_chars:
        return text
    head = max_chars // 3
    tail = max_chars - head
    return f"{text[:head]}\n[… {len(text) - head - tail} characters omitted …]\n{text[-tail:]}"


def feedback_text(record: FeedbackRecord) -> str:
    if record.correct:
        return f"The response is correct: its final answer {record.pred!s} matches the correct answer {record.gold}."
    extracted = record.pred if record.pred is not None else "nothing (no final answer could be extracted)"
    return f"The response is incorrect. Its final answer was {extracted}; the correct answer is {record.gold}."


def reflective_dataset(request: ReflectionRequest, max_response_chars: int = MAX_RESPONSE_CHARS) -> list[dict[str, str]]:
    """The feedback as GEPA's default adapter shapes it: Inputs / Generated Outputs / Feedback."""
    return [
        {
            "Inputs": record.problem,
            "Generated Outputs": shorten(record.response, max_response_chars),
            "Feedback": feedback_text(record),
        }
        for record in request.feedback
    ]


def meta_prompt(request: ReflectionRequest, max_response_chars: int = MAX_RESPONSE_CHARS) -> str:
    """GEPA's reflection prompt for this parent and feedback (one user message)."""
    rendered = _signature().prompt_renderer(
        {
            "current_instruction_doc": request.parent_text,
            "dataset_with_feedback": reflective_dataset(request, max_response_chars),
        }
    )
    if not isinstance(rendered, str):  # only happens with images, which we never send
        raise TypeError("GEPA's prompt renderer returned messages, expected text")
    return rendered


_THINK = re.compile(r"^.*?</think>", re.DOTALL)


def extract_template(lm_out: str | None) -> str | None:
    """The new template from a reflector's answer (GEPA's extractor), or None if malformed.

    GEPA asks for the instruction inside ``` blocks; an answer with no ``` at all is prose
    about the task, not a template, so it is refused rather than used verbatim. A thinking
    model's ``<think>…</think>`` is dropped first (it may hold drafts in fences of its own).
    """
    if not lm_out:
        return None
    text = _THINK.sub("", lm_out, count=1) if "</think>" in lm_out else lm_out
    if "```" not in text:
        return None
    template = _signature().output_extractor(text)["new_instruction"].strip()
    return template or None


# ---------------------------------------------------------------- OpenAI-compatible endpoints


@dataclass
class RetryPolicy:
    max_retries: int = 6
    base_delay: float = 1.0  # seconds before the first retry; doubles each time
    max_delay: float = 60.0
    jitter: float = 0.25  # each delay is stretched by up to this fraction, so clients desynchronise

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        backoff = min(self.base_delay * 2**attempt, self.max_delay)
        if retry_after is not None:
            backoff = max(backoff, min(retry_after, self.max_delay))
        return backoff * (1 + self.jitter * rng.random())


def _retry_after(err: Exception) -> float | None:
    response = getattr(err, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return max(float(value) * scale, 0.0)
            except ValueError:
                return None
    return None


class OpenAIReflector:
    """Chat completions through the ``openai`` client, with our own retry loop.

    The client's built-in retries are off (``max_retries=0``) so that every attempt, its
    delay and its cause are ours to count and test. Requests of one batch run concurrently.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str,
        timeout_s: float = 300.0,
        retry: RetryPolicy | None = None,
        concurrency: int = 8,
        temperature: float | None = None,
        max_tokens: int | None = None,
        max_response_chars: int = MAX_RESPONSE_CHARS,
    ):
        from openai import OpenAI

        # The key goes into the client and nowhere else (not an attribute of ours, not a repr).
        self._client = OpenAI(base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=0)
        self.base_url = base_url
        self.model = model
        self.retry = retry or RetryPolicy()
        self.concurrency = max(1, concurrency)
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.max_response_chars = max_response_chars
        self._lock = threading.Lock()
        self.stats = {"requests": 0, "retries": 0, "failed": 0, "malformed": 0}

    def __repr__(self) -> str:
        return f"OpenAIReflector(base_url={self.base_url!r}, model={self.model!r})"

    def _count(self, key: str) -> None:
        with self._lock:
            self.stats[key] += 1

    def propose(self, requests: Sequence[ReflectionRequest]) -> list[str | None]:
        if not requests:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests))) as pool:
            return list(pool.map(self._propose_one, requests))

    def _propose_one(self, request: ReflectionRequest) -> str | None:
        prompt = meta_prompt(request, self.max_response_chars)
        content = self.complete(prompt, where=f"GEPA iteration {request.iteration}, parent {request.parent_id}")
        if content is None:
            return None
        template = extract_template(content)
        if template is None:
            self._count("malformed")
            log.warning("reflector (GEPA iteration %d): answer for parent %s has no ``` block; proposal skipped",
                        request.iteration, request.parent_id)
        return template

    def complete(self, prompt: str, where: str = "") -> str | None:
        """The assistant's text for one user message, or None after the retries are spent.

        ``where`` (e.g. ``GEPA iteration 3, parent g2-0``) goes into the log lines.
        """
        import openai

        kwargs: dict[str, Any] = {}
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        if self.max_tokens is not None:
            kwargs["max_tokens"] = self.max_tokens
        rng = random.Random()
        started = time.monotonic()
        for attempt in range(self.retry.max_retries + 1):
            self._count("requests")
            retry_after: float | None = None
            try:
                response = self._client.chat.completions.create(
                    model=self.model, messages=[{"role": "user", "content": prompt}], **kwargs
                )
                content = _content_of(response)
                if content is not None:
                    return content
                cause = "a reply without message content"
            except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as err:
                # Wrong key, no access or unknown model: every proposal would fail the same way.
                raise ReflectorError(
                    f"reflector endpoint {self.base_url} refused the request "
                    f"(HTTP {err.status_code}: {type(err).__name__}); check the API key and --reflector-model"
                ) from None
            except openai.APIStatusError as err:
                if err.status_code != 429 and err.status_code < 500 and err.status_code != 408:
                    # 400/413/422: this prompt is at fault (e.g. too long), not the service.
                    self._count("failed")
                    log.warning("reflector (%s) rejected a request (HTTP %s); proposal skipped", where or "-", err.status_code)
                    return None
                retry_after = _retry_after(err)
                cause = f"HTTP {err.status_code}"
            except openai.APITimeoutError:
                cause = "timeout"
            except openai.APIConnectionError:
                cause = "connection error"
            except (openai.APIResponseValidationError, ValueError, TypeError, AttributeError, IndexError, KeyError):
                # 200 with a body that is not a chat completion (garbage, truncated JSON).
                cause = "an unparseable reply"
            if attempt == self.retry.max_retries:
                break
            delay = self.retry.delay(attempt, retry_after, rng)
            self._count("retries")
            log.info("reflector (%s): %s; retry %d in %.2fs", where or "-", cause, attempt + 1, delay)
            time.sleep(delay)
        self._count("failed")
        log.warning("reflector (%s): gave up after %d attempts in %.0fs (last: %s); proposal skipped",
                    where or "-", attempt + 1, time.monotonic() - started, cause)
        return None

    def close(self) -> None:
        self._client.close()


def _content_of(response: Any) -> str | None:
    """The first choice's message text; raises on a body that is not a chat completion."""
    if isinstance(response, (str, bytes)):  # the client hands back raw text it could not parse
        raise TypeError("reply is not JSON")
    choices = response.choices
    if not choices:
        return None
    content = choices[0].message.content
    return content if isinstance(content, str) and content.strip() else None


# ---------------------------------------------------------------- the reference model itself


class SelfReflector:
    """The reference model (the initial policy) reflects through the local engine, batched."""

    def __init__(
        self,
        engine: Any,
        tokenizer: Any,
        temperature: float = 0.7,
        top_p: float = 1.0,
        max_new_tokens: int = 1024,
        enable_thinking: bool = False,
        max_response_chars: int = MAX_RESPONSE_CHARS,
    ):
        self.engine = engine
        self.tokenizer = tokenizer
        self.temperature = temperature
        self.top_p = top_p
        self.max_new_tokens = max_new_tokens
        self.enable_thinking = enable_thinking
        self.max_response_chars = max_response_chars

    def propose(self, requests: Sequence[ReflectionRequest]) -> list[str | None]:
        if not requests:
            return []
        prompts = [
            self.tokenizer.apply_chat_template(
                [{"role": "user", "content": meta_prompt(r, self.max_response_chars)}],
                tokenize=False,
                add_generation_prompt=True,
                enable_thinking=self.enable_thinking,
            )
            for r in requests
        ]
        outputs = self.engine.generate(
            prompts,
            n=1,
            temperature=self.temperature,
            top_p=self.top_p,
            max_new_tokens=self.max_new_tokens,
            seed=requests[0].seed,
        )
        return [extract_template(out[0].text) if out else None for out in outputs]


# ---------------------------------------------------------------- factory


def resolve_endpoint(
    name: str, url: str | None, model: str | None, key_env: str | None
) -> tuple[str, str, str | None]:
    """(base_url, model, key env var) for an API reflector; ValueError on what is missing."""
    if name in PRESETS:
        preset = PRESETS[name]
        return url or preset.base_url, model or preset.model, key_env or preset.key_env
    if name == "api":
        if not url or not model:
            raise ValueError("--reflector api needs --reflector-url and --reflector-model")
        return url, model, key_env
    raise ValueError(f"unknown reflector {name!r}; choose one of {', '.join(REFLECTORS)}")


def api_key_from_env(key_env: str | None) -> str:
    """The key in ``$key_env``; a missing variable is named in the error, its value never shown."""
    if key_env is None:
        return "EMPTY"  # local OpenAI-compatible servers (vLLM, SGLang) accept any key
    value = os.environ.get(key_env, "").strip()
    if not value:
        raise ValueError(f"environment variable {key_env} is not set; it must hold the reflector's API key")
    return value


def make_reflector(
    name: str,
    *,
    url: str | None = None,
    model: str | None = None,
    key_env: str | None = None,
    engine: Any = None,
    tokenizer: Any = None,
    seed: int = 0,
    timeout_s: float = 300.0,
    retry: RetryPolicy | None = None,
    concurrency: int = 8,
    temperature: float | None = None,
    max_tokens: int | None = None,
    enable_thinking: bool = False,
) -> Reflector:
    """Build the reflector ``name`` (one of :data:`REFLECTORS`)."""
    if name == "self":
        if engine is None or tokenizer is None:
            raise ValueError("the self reflector needs the local engine and its tokenizer")
        return SelfReflector(
            engine,
            tokenizer,
            temperature=0.7 if temperature is None else temperature,
            max_new_tokens=max_tokens or 1024,
            enable_thinking=enable_thinking,
        )
    if name == "toy":
        try:
            from ..toy.reflector import ToyReflector
        except ImportError as err:
            raise ValueError(f"the toy reflector is not available ({err})") from None
        return ToyReflector(seed=seed)
    base_url, model_name, env = resolve_endpoint(name, url, model, key_env)
    return OpenAIReflector(
        base_url,
        model_name,
        api_key_from_env(env),
        timeout_s=timeout_s,
        retry=retry,
        concurrency=concurrency,
        temperature=temperature,
        max_tokens=max_tokens,
    )
