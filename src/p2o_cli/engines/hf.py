"""The embedded engine: transformers ``generate`` with KV cache, batched, on CPU or GPU."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from ..config import MAX_NEW_TOKENS, TEMPERATURE
from ..files.weights import loading
from .base import Completion, ProgressFn


def pick_device(device: str | None = None) -> torch.device:
    if device and device != "auto":
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def stop_token_ids(tokenizer: Any, model: PreTrainedModel) -> list[int]:
    """End-of-turn ids: the tokenizer's eos plus the generation config's (Qwen3 has two)."""
    ids: set[int] = set()
    for source in (tokenizer.eos_token_id, model.generation_config.eos_token_id):
        if isinstance(source, int):
            ids.add(source)
        elif source:
            ids.update(source)
    return sorted(ids)


# transformers 5.2x renamed a model's KV cache from `past_key_values` to `cache` (argument and output).
CACHE_NAME = "cache" if "cache" in getattr(CausalLMOutputWithPast, "__dataclass_fields__", {}) else "past_key_values"


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op thread count set for the block, then restored (the trainer wants all cores)."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _FinishStreamer:
    """Reports each sequence of a ``generate`` batch as it ends, not the batch at its end.

    A chunk is one ``generate`` call of up to ``batch_size`` sequences; without this a progress
    bar would sit still for the whole chunk (for a small run: the whole rollout) and then jump.
    transformers hands the streamer the prompt ids first, then each step's new token per row.
    """

    def __init__(self, stop_ids: Sequence[int], progress: ProgressFn):
        self.stop_ids = set(stop_ids)
        self.progress = progress
        self.finished: set[int] | None = None  # None until the prompt ids have gone by
        self.done = 0
        self.tokens = 0

    def put(self, value: torch.Tensor) -> None:
        if self.finished is None:
            self.finished = set()
            return
        newly = 0
        produced = 0
        for row, token in enumerate(value.reshape(-1).tolist()):
            if row in self.finished:
                continue  # a finished row gets padding, not tokens
            produced += 1
            if token in self.stop_ids:
                self.finished.add(row)
                newly += 1
        self.done += newly
        self.tokens += produced
        self.progress(newly, produced)

    def end(self) -> None:
        pass


class HFEngine:
    """Samples a transformers model. ``batch_size`` counts sequences per ``generate`` call.

    ``cpu_threads``: torch intra-op threads while sampling (default: torch's setting, as for training).
    ``share_prompts``: a prompt repeated in a chunk (the n samples of a group) is prefilled once
    and its KV cache copied to its rows, instead of computing the same prompt n times.
    """

    def __init__(
        self,
        model: str | PreTrainedModel,
        tokenizer: Any = None,
        device: str | None = None,
        dtype: str | torch.dtype = "auto",
        batch_size: int = 64,
        cpu_threads: int | None = None,
        share_prompts: bool = True,
    ):
        self.device = pick_device(device)
        if isinstance(model, PreTrainedModel):
            self.model = model
        else:
            if dtype == "auto":
                dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
            with loading(model):
                self.model = AutoModelForCausalLM.from_pretrained(model, dtype=dtype)
            self.model.to(self.device)
        if tokenizer is None:
            with loading(model, "tokenizer"):
                tokenizer = AutoTokenizer.from_pretrained(model)
        self.tokenizer = tokenizer
        self.model.eval()
        self.batch_size = batch_size
        self.share_prompts = share_prompts
        self.cpu_threads = cpu_threads
        self.stop_ids = stop_token_ids(self.tokenizer, self.model)
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.stop_ids[0]

    @torch.inference_mode()
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
        with _torch_threads(self.cpu_threads):
            return self._generate(prompts, n, temperature, top_p, max_new_tokens, seed, progress)

    def _generate(self, prompts: Sequence[str], n: int, temperature: float, top_p: float, max_new_tokens: int,
                  seed: int | None, progress: ProgressFn | None) -> list[list[Completion]]:
        encoded = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        # Each prompt repeated n times; similar lengths batched together to waste less padding.
        jobs = [(i, j) for i in sorted(range(len(prompts)), key=lambda i: len(encoded[i])) for j in range(n)]
        results: list[list[Completion | None]] = [[None] * n for _ in prompts]
        for start in range(0, len(jobs), self.batch_size):
            chunk = jobs[start : start + self.batch_size]
            if seed is not None:
                # Seeded per chunk so a result does not depend on what ran before it.
                torch.manual_seed((seed * 1_000_003 + start) % (2**63 - 1))  # torch seeds are 64-bit
            streamer = _FinishStreamer(self.stop_ids, progress) if progress else None
            outs = self._generate_chunk([encoded[i] for i, _ in chunk], temperature, top_p, max_new_tokens, streamer)
            for (i, j), completion in zip(chunk, outs):
                results[i][j] = completion
            if progress and streamer:
                # What the streamer has not reported yet: rows cut at max_new_tokens.
                progress(len(outs) - streamer.done, sum(c.n_tokens for c in outs) - streamer.tokens)
        return [[c for c in row if c is not None] for row in results]

    def _generate_chunk(
        self, prompt_ids: list[list[int]], temperature: float, top_p: float, max_new_tokens: int,
        streamer: _FinishStreamer | None = None,
    ) -> list[Completion]:
        width = max(len(p) for p in prompt_ids)
        input_ids, attention = self._left_padded(prompt_ids, width)
        cache = self._shared_prefill(prompt_ids, width) if self.share_prompts else None
        sampling: dict[str, Any] = (
            {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0}
            if temperature > 0
            else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        )
        out = self.model.generate(
            input_ids=input_ids.to(self.device),
            attention_mask=attention.to(self.device),
            max_new_tokens=max_new_tokens,
            eos_token_id=self.stop_ids,
            pad_token_id=self.pad_id,
            streamer=streamer,
            **({CACHE_NAME: cache} if cache is not None else {}),
            **sampling,
        )
        new_tokens = out[:, width:].tolist()
        return [self._completion(row) for row in new_tokens]

    def _shared_prefill(self, prompt_ids: list[list[int]], width: int) -> Any:
        """The KV cache of every row's prompt but its last token, each distinct prompt computed once.

        None when no prompt repeats. ``generate`` then runs only the last prompt token and
        samples; positions follow generate's own rule (cumulative attention mask, padding at 0).
        """
        distinct: dict[tuple[int, ...], int] = {}
        rows = [distinct.setdefault(tuple(p), len(distinct)) for p in prompt_ids]
        if len(distinct) == len(prompt_ids) or width < 2:
            return None
        ids, attention = self._left_padded(list(distinct), width)
        positions = (attention.cumsum(-1) - 1).masked_fill(attention == 0, 0)
        out = self.model(input_ids=ids[:, :-1].to(self.device), attention_mask=attention[:, :-1].to(self.device),
                         position_ids=positions[:, :-1].to(self.device), use_cache=True)
        cache = getattr(out, CACHE_NAME)
        cache.batch_select_indices(torch.tensor(rows, device=self.device))
        return cache

    def _left_padded(self, prompt_ids: Sequence[Sequence[int]], width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and attention mask, left-padded so every prompt's last token sits at the same position."""
        ids = torch.full((len(prompt_ids), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros_like(ids)
        for row, prompt in enumerate(prompt_ids):
            ids[row, width - len(prompt) :] = torch.tensor(list(prompt))
            attention[row, width - len(prompt) :] = 1
        return ids, attention

    def _completion(self, tokens: list[int]) -> Completion:
        stop_at = next((k for k, t in enumerate(tokens) if t in self.stop_ids), None)
        if stop_at is None:
            kept, reason = tokens, "length"
        else:
            kept, reason = tokens[: stop_at + 1], "stop"
        text = self.tokenizer.decode(kept, skip_special_tokens=True)
        return Completion(text=text, n_tokens=len(kept), finish_reason=reason, token_ids=kept)

    def update_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        self.model.load_state_dict(dict(state_dict), strict=False)

    def close(self) -> None:
        pass
