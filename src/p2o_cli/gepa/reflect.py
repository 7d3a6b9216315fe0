"""Reflectors: given a parent template and its failures on a minibatch, propose a child.

The meta-prompt and the answer parsing are GEPA's own (``InstructionProposalSignature``),
imported from the ``gepa`` package so p2o proposes templates exactly as GEPA does. Three
kinds of reflector share one batched protocol (W proposals per iteration):

- ``OpenAIReflector``: any OpenAI-compatible chat endpoint (presets ``kimi`` and ``openai``),
  through the client shared with the openai engine (``engines.openai_client``: the same
  retryable statuses, backoff, jitter and Retry-After), which also retries unparseable replies;
- ``SelfReflector``: the reference model through the local engine;
- others registered by name in :mod:`p2o_cli.gepa.reflectors` (the toy world registers ``toy``).

API keys are read from an environment variable and live only inside the HTTP client: they
are never printed, logged or written to disk.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..engines.openai_client import Cancelled, is_retryable, make_client, map_bounded, status_of, with_retries
from ..errors import P2OError

log = logging.getLogger(__name__)

# Responses can be 12k tokens; the reflector needs the approach and the final answer, so a
# long response keeps its head and its tail (where the answer is) within this many characters.
MAX_RESPONSE_CHARS = 6000
# A reflector reply longer than this is refused (a template is an instruction, not a book;
# a 5 MB reply must not reach evaluation). Templates themselves: records.MAX_TEMPLATE_CHARS.
MAX_REPLY_CHARS = 100_000

class ReflectorError(P2OError):
    """The reflector cannot work at all (bad key, unknown model, wrong URL, unreachable): stop.

    A P2OError, so every command reports it as bad input: one line, exit status 2.
    """


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


def reflective_dataset(
    request: ReflectionRequest, max_response_chars: int = MAX_RESPONSE_CHARS
) -> list[dict[str, str]]:
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
    """How the shared client (``engines.openai_client.with_retries``) retries one request."""

    max_retries: int = 6
    base_delay: float = 1.0  # seconds; the ceiling doubles each retry ("full jitter" below it)
    max_delay: float = 60.0  # and a Retry-After is honoured up to this


class UnusableReply(ValueError):
    """A 200 whose body is no chat completion, or one without message content: worth a retry."""


def _retry_reflector(err: BaseException) -> bool:
    """The shared client's transient errors, plus replies that are not a usable completion."""
    import openai

    # ValueError: the client's JSON decoding of a garbage body (and UnusableReply).
    return is_retryable(err) or isinstance(err, (ValueError, openai.APIResponseValidationError))


def _cause(err: BaseException) -> str:
    import openai

    if isinstance(err, openai.APITimeoutError):
        return "timeout"
    if isinstance(err, openai.APIConnectionError):
        return "connection error"
    status = status_of(err)
    if status is not None:
        return f"HTTP {status}"
    return str(err) if isinstance(err, UnusableReply) else "an unparseable reply"


class OpenAIReflector:
    """Chat completions through the shared retrying client (``engines.openai_client``).

    Every attempt, its delay and its cause are counted in ``stats``; requests of one batch run
    concurrently. A proposal whose request fails for good returns None and counts in
    ``failed_proposals`` (the search stops after ``max_reflector_failures`` in a row).
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
        # The key goes into the client and nowhere else (not an attribute of ours, not a repr).
        self._client = make_client(base_url, api_key=api_key, timeout=timeout_s)
        self.base_url = base_url
        self.model = model
        self.retry = retry or RetryPolicy()
        self.concurrency = max(1, concurrency)
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.max_response_chars = max_response_chars
        self._lock = threading.Lock()
        self.stats = {"requests": 0, "retries": 0, "failed": 0, "malformed": 0}
        self.last_failure = "none"

    def __repr__(self) -> str:
        return f"OpenAIReflector(base_url={self.base_url!r}, model={self.model!r})"

    @property
    def failed_proposals(self) -> int:
        return self.stats["failed"]

    def _count(self, key: str) -> None:
        with self._lock:
            self.stats[key] += 1

    def propose(self, requests: Sequence[ReflectionRequest]) -> list[str | None]:
        return map_bounded(self._propose_one, requests, self.concurrency)

    def _propose_one(self, request: ReflectionRequest) -> str | None:
        prompt = meta_prompt(request, self.max_response_chars)
        content = self.complete(prompt, where=f"GEPA iteration {request.iteration}, parent {request.parent_id}")
        if content is None:
            return None
        if len(content) > MAX_REPLY_CHARS:
            self._count("malformed")
            log.warning("reflector answer for parent %s is %d characters (limit %d); proposal skipped",
                        request.parent_id, len(content), MAX_REPLY_CHARS)
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
        started = time.monotonic()
        def attempt() -> str:
            self._count("requests")
            response = self._client.chat.completions.create(
                model=self.model, messages=[{"role": "user", "content": prompt}], **kwargs
            )
            return _content_of(response)

        tries = [1]

        def on_retry(err: BaseException, attempt_no: int, delay: float) -> None:
            tries[0] += 1
            self._count("retries")
            log.info("reflector (%s): %s; retry %d in %.2fs", where or "-", _cause(err), attempt_no + 1, delay)

        try:
            return with_retries(attempt, max_retries=self.retry.max_retries, base_delay=self.retry.base_delay,
                                max_delay=self.retry.max_delay, retry_on=_retry_reflector, on_retry=on_retry)
        except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as err:
            # Wrong key, no access or unknown model: every proposal would fail the same way.
            raise ReflectorError(
                f"reflector endpoint {self.base_url} refused the request "
                f"(HTTP {err.status_code}: {type(err).__name__}); check the API key and --reflector-model"
            ) from None
        except Cancelled:
            return None  # the search was interrupted: nothing to report for this proposal
        except Exception as err:  # noqa: BLE001 - whatever the endpoint did, this proposal is skipped
            self._count("failed")
            self.last_failure = _cause(err)
            log.warning("reflector (%s): gave up after %d attempts in %.0fs (last: %s); proposal skipped",
                        where or "-", tries[0], time.monotonic() - started, self.last_failure)
            return None

    def close(self) -> None:
        self._client.close()


def _content_of(response: Any) -> str:
    """The first choice's message text; UnusableReply on a body that is not a chat completion."""
    if isinstance(response, (str, bytes)):  # the client hands back raw text it could not parse
        raise UnusableReply("a reply that is not JSON")
    try:
        choices = response.choices
        content = choices[0].message.content if choices else None
    except (AttributeError, TypeError, IndexError, KeyError):
        raise UnusableReply("a reply that is not a chat completion") from None
    if not isinstance(content, str) or not content.strip():
        raise UnusableReply("a reply without message content")
    return content


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
