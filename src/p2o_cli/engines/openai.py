"""The openai engine: rollouts and evaluation against any OpenAI-compatible server.

Prompts are rendered here with a local tokenizer's chat template (``tokenizer`` or the model
directory / hub id) and sent as plain text to ``/v1/completions`` (not chat), so the server
sees the same prompt string as every other engine. Each prompt is one request asking for
``n`` samples; requests run concurrently on a bounded pool, each retried with backoff
(``openai_client``).

vLLM extras: a vLLM server (and SGLang) accepts a few fields beyond the OpenAI spec. The
engine sends ``top_k=-1`` (otherwise vLLM applies the model's generation_config top-k, say
Qwen3's 20, and samples from a different distribution than the other engines),
``add_special_tokens=false`` (the prompt is already rendered) and ``return_token_ids=true``
(exact token counts). ``vllm_extras=None`` (auto) tries them on the first request and drops
them for good if the server answers 400/422; True/False forces the choice.

Token counts come from the returned token ids, else from per-token logprobs, else (n=1) from
``usage.completion_tokens``, else from re-tokenizing the text (+1 for the end-of-turn token
when the server reports ``stop``). The engine cannot load weights: ``update_weights`` raises.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..config import MAX_NEW_TOKENS, TEMPERATURE
from ..errors import P2OError
from .base import Completion, ProgressFn, request_seed
from .openai_client import make_client, map_bounded, status_of, with_retries

VLLM_EXTRAS: dict[str, Any] = {"top_k": -1, "add_special_tokens": False, "return_token_ids": True}


class ServerReplyError(ValueError):
    """The server answered with something p2o cannot use (exit status 2, one line)."""


def valid_text(text: Any) -> str:
    """``text`` as UTF-8-encodable str: lone surrogates (which JSON allows) become U+FFFD.

    Otherwise the rollout could not be written: orjson refuses such strings.
    """
    if not isinstance(text, str):
        raise ServerReplyError(f"the server returned a completion text of type {type(text).__name__}")
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


class OpenAIEngine:
    """``generate`` through an OpenAI-compatible ``/v1/completions`` endpoint."""

    def __init__(
        self,
        model: str | None = None,
        base_url: str | None = None,
        served_model: str | None = None,
        tokenizer: Any = None,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 16,
        timeout: float = 600.0,
        max_retries: int = 6,
        base_delay: float = 0.5,
        logprobs: bool = False,
        vllm_extras: bool | None = None,
        client: Any = None,
        device: str | None = None,
        batch_size: int | None = None,
    ):
        del device, batch_size  # the server decides both
        if tokenizer is None or isinstance(tokenizer, str):
            source = tokenizer or model
            if not source:
                raise P2OError("the openai engine needs a tokenizer: give --model (a directory or hub id)")
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(source)
        self.tokenizer = tokenizer
        self.client = client or make_client(base_url, api_key=api_key, api_key_env=api_key_env, timeout=timeout)
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.base_delay = base_delay
        self.served_model = served_model or self._pick_served_model(model)
        self.want_logprobs = logprobs
        self.vllm_extras = vllm_extras
        self._probe_lock = threading.Lock()

    def _pick_served_model(self, model: str | None) -> str:
        """Without --served-model: ``model`` if the server lists it, else the only model it lists."""
        listing = with_retries(lambda: self.client.models.list(), self.max_retries, self.base_delay)
        ids = [m.id for m in getattr(listing, "data", listing)]
        if model in ids:
            return model
        if len(ids) == 1:
            return ids[0]
        shown = ", ".join(ids[:5]) + (", …" if len(ids) > 5 else "")
        raise P2OError(f"the server serves {len(ids)} models ({shown}); pick one with --served-model")

    # ------------------------------------------------------------------ sampling

    def _request(
        self, prompt: str, n: int, temperature: float, top_p: float, max_new_tokens: int, seed: int | None, extras: bool
    ) -> Any:
        greedy = temperature <= 0
        kwargs: dict[str, Any] = {
            "model": self.served_model,
            "prompt": prompt,
            "n": n,
            "max_tokens": max_new_tokens,
            "temperature": 0.0 if greedy else temperature,
            "top_p": 1.0 if greedy else top_p,
        }
        if seed is not None:
            kwargs["seed"] = seed
        if self.want_logprobs:
            kwargs["logprobs"] = 0 if extras else 1  # vLLM: 0 = the sampled token only
        if extras:
            kwargs["extra_body"] = dict(VLLM_EXTRAS)
        return with_retries(
            lambda: self.client.completions.create(**kwargs), max_retries=self.max_retries, base_delay=self.base_delay
        )

    def _request_probing(self, *args: Any) -> Any:
        """The first request settles ``vllm_extras`` (auto): extras kept unless the server rejects them."""
        if self.vllm_extras is not None:
            return self._request(*args, extras=self.vllm_extras)
        with self._probe_lock:
            if self.vllm_extras is None:
                try:
                    response = self._request(*args, extras=True)
                except Exception as err:
                    if status_of(err) not in (400, 422):
                        raise
                    self.vllm_extras = False
                else:
                    self.vllm_extras = True
                    return response
        return self._request(*args, extras=self.vllm_extras)

    def generate(
        self,
        prompts: Sequence[str],
        n: int = 1,
        temperature: float = TEMPERATURE,
        top_p: float = 1.0,
        max_new_tokens: int = MAX_NEW_TOKENS,
        seed: int | None = 0,
        progress: ProgressFn | None = None,
    ) -> list[list[Completion]]:
        if not prompts:
            return []

        def one(job: tuple[int, str]) -> list[Completion]:
            index, prompt = job
            response = self._request_probing(prompt, n, temperature, top_p, max_new_tokens, request_seed(seed, index))
            return self._completions(response, n)

        def done(_: int, row: list[Completion]) -> None:
            if progress:
                progress(len(row), sum(c.n_tokens for c in row))

        jobs = list(enumerate(prompts))
        if self.vllm_extras is None:  # settle the probe before going concurrent
            first = one(jobs[0])
            done(0, first)
            rest = map_bounded(one, jobs[1:], self.max_concurrency, done)
            return [first, *rest]
        return map_bounded(one, jobs, self.max_concurrency, done)

    def _completions(self, response: Any, n: int) -> list[Completion]:
        choices = sorted(response.choices or [], key=lambda c: c.index)
        if len(choices) != n:
            raise ServerReplyError(f"the server returned {len(choices)} choices where {n} were asked for")
        usage = getattr(response, "usage", None)
        out = []
        for choice in choices:
            reason = "length" if choice.finish_reason == "length" else "stop"
            token_ids = getattr(choice, "token_ids", None)
            logprobs = None
            lp = getattr(choice, "logprobs", None)
            if lp is not None and getattr(lp, "token_logprobs", None) is not None:
                logprobs = [float(x) if x is not None else float("nan") for x in lp.token_logprobs]
            if token_ids is not None:
                n_tokens = len(token_ids)
            elif logprobs is not None:
                n_tokens = len(logprobs)
            elif n == 1 and usage is not None and getattr(usage, "completion_tokens", None) is not None:
                n_tokens = int(usage.completion_tokens)
            else:
                ids = self.tokenizer(choice.text, add_special_tokens=False)["input_ids"]
                n_tokens = len(ids) + (1 if reason == "stop" else 0)
            out.append(
                Completion(
                    text=valid_text(choice.text),
                    n_tokens=n_tokens,
                    finish_reason=reason,
                    token_ids=list(token_ids) if token_ids is not None else None,
                    logprobs=logprobs if self.want_logprobs else None,
                )
            )
        return out

    def update_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        raise NotImplementedError(
            "the openai engine samples a remote server and cannot load weights; "
            "restart the server on the new checkpoint, or use --engine vllm/hf for training"
        )

    def close(self) -> None:
        close = getattr(self.client, "close", None)
        if callable(close):
            close()
