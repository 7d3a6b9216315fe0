"""Micro-batch rows: the tensors one forward pass of the train step takes.

Micro-batches take one of three shapes, chosen by the attention implementation:

- **packed** (varlen kernels: flash-attention): several sequences share one row,
  ``position_ids`` restart at 0 for each, and no attention mask is passed, so the kernel sees
  each sequence's boundaries and a micro-batch costs exactly its token count. Verified in
  tests/test_batch.py against unpacked logits; it needs ``use_cache=False`` (a cache disables
  transformers' packed-sequence detection).
- **padded** (sdpa, eager, anything else): one sequence per row, rows of similar length
  (length-sorted), right-padded. With sdpa/eager a packed row would get a block-diagonal mask
  over the whole row, so attention would cost O(row²) instead of Σ O(seq²). Right padding needs
  no attention mask at all: under the causal mask a real token only sees earlier, real tokens,
  so sdpa keeps its mask-free ``is_causal`` path. The budget counts rows × padded length.
- **shared prompt** (the padded path, where it is cheaper): the K rollouts of one prompt in one
  row, ``prompt + response_1 + … + response_K``, with a boolean ``[L, L]`` mask under which each
  response sees the prompt and its own earlier tokens, and position ids that restart after the
  prompt for each response. The prompt is computed once instead of K times; its gradient is the
  sum over the responses, exactly as in K rows. Chosen per group by ``attention.RowCost`` (fewer
  FLOPs, row at most ``SHARED_ROW_MAX_TOKENS``): short responses after a long prompt share,
  long responses keep rows of their own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


@dataclass
class MicroBatch:
    """Sequences for one forward pass. ``seqs`` index into the batch; ``dummy`` rows carry no loss.

    Packed: one row ``[1, L]`` with restarting ``position_ids``. Padded: ``[R, L]``, one sequence
    per row, ``position_ids`` None. Shared prompt: ``[R, L]`` rows of one prompt and its
    responses, with ``position_ids`` and a boolean ``attention_mask`` ``[R, 1, L, L]``.
    ``logit_positions[i]`` is the position in the flattened ``input_ids`` whose logits predict
    response token ``i`` (flattened over sequences in order); ``lengths`` are the response
    lengths, to split it. ``logits_to_keep`` (padded only) is how many trailing positions of each
    row need logits: every response's first predicting position lies in them.
    """

    seqs: list[int]
    input_ids: Tensor  # [R, L]
    position_ids: Tensor | None  # [1, L] when packed
    logit_positions: Tensor  # [N]
    targets: Tensor  # [N]
    lengths: list[int]
    dummy: bool = False
    logits_to_keep: int = 0
    attention_mask: Tensor | None = None  # [R, 1, L, L], shared-prompt rows only

    @property
    def n_tokens(self) -> int:
        """Tokens the forward pass computes, padding included (the budget's unit)."""
        return int(self.input_ids.numel())

    @property
    def rows(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def packed(self) -> bool:
        return self.position_ids is not None and self.attention_mask is None

    def to(self, device: torch.device | str) -> MicroBatch:
        return dataclasses.replace(
            self,
            input_ids=self.input_ids.to(device),
            position_ids=None if self.position_ids is None else self.position_ids.to(device),
            attention_mask=None if self.attention_mask is None else self.attention_mask.to(device),
            logit_positions=self.logit_positions.to(device),
            targets=self.targets.to(device),
        )

    def forward_kwargs(self) -> dict[str, Any]:
        """Model inputs: no cache, and no attention mask except a shared-prompt row's (module docstring)."""
        if self.packed:
            return {"input_ids": self.input_ids, "position_ids": self.position_ids, "use_cache": False,
                    "logits_to_keep": self.logit_positions}
        shared = {} if self.attention_mask is None else {"position_ids": self.position_ids,
                                                         "attention_mask": self.attention_mask}
        return {"input_ids": self.input_ids, "use_cache": False, "logits_to_keep": self.logits_to_keep, **shared}

    def select_logits(self, logits: Tensor) -> Tensor:
        """The model's ``logits`` (from ``forward_kwargs``) → ``[N, vocab]``, one row per target."""
        if self.packed:
            return logits[0]
        width = self.input_ids.shape[1]
        row, pos = self.logit_positions // width, self.logit_positions % width
        return logits[row, pos - (width - self.logits_to_keep)]


def collate(seqs: Sequence[tuple[int, list[int], list[int]]]) -> MicroBatch:
    """Pack ``(index, prompt_ids, response_ids)`` triples into one row."""
    ids: list[int] = []
    pos: list[int] = []
    logit_positions: list[int] = []
    targets: list[int] = []
    lengths: list[int] = []
    for _, prompt, response in seqs:
        offset = len(ids)
        ids += prompt + response
        pos += range(len(prompt) + len(response))
        # Logits at position t predict token t + 1; the first response token is predicted by
        # the last prompt token, so a sequence never reads across its own start.
        first = offset + len(prompt) - 1
        logit_positions += range(first, first + len(response))
        targets += response
        lengths.append(len(response))
    return MicroBatch(
        seqs=[s[0] for s in seqs],
        input_ids=torch.tensor([ids], dtype=torch.long),
        position_ids=torch.tensor([pos], dtype=torch.long),
        logit_positions=torch.tensor(logit_positions, dtype=torch.long),
        targets=torch.tensor(targets, dtype=torch.long),
        lengths=lengths,
    )


def collate_padded(seqs: Sequence[tuple[int, list[int], list[int]]], pad_token: int) -> MicroBatch:
    """One ``(index, prompt_ids, response_ids)`` triple per row, right-padded to the longest (no mask)."""
    return collate_shared([(prompt, [(index, response)]) for index, prompt, response in seqs], pad_token)


def collate_shared(units: Sequence[tuple[list[int], list[tuple[int, list[int]]]]], pad_token: int) -> MicroBatch:
    """One ``(prompt_ids, [(index, response_ids), …])`` unit per row: the prompt once, then each response.

    Each response's positions restart where the prompt ends, and the mask lets a response token
    see the prompt and its own earlier tokens only. Padding tokens see only themselves (a query
    with no key would give NaN), and no real token sees them. When every unit holds one
    response these are plain right-padded rows: no positions and no mask, so sdpa keeps its
    mask-free causal path.
    """
    width = max(len(prompt) + sum(len(r) for _, r in responses) for prompt, responses in units)
    ids = torch.full((len(units), width), pad_token, dtype=torch.long)
    positions = torch.zeros((len(units), width), dtype=torch.long)
    segment = torch.full((len(units), width), -1, dtype=torch.long)  # 0 prompt, s response s, -1 padding
    seqs: list[int] = []
    logit_positions: list[int] = []
    targets: list[int] = []
    lengths: list[int] = []
    for row, (prompt, responses) in enumerate(units):
        n = len(prompt)
        ids[row, :n] = torch.tensor(prompt, dtype=torch.long)
        positions[row, :n] = torch.arange(n)
        segment[row, :n] = 0
        start = n
        for s, (index, response) in enumerate(responses, start=1):
            end = start + len(response)
            ids[row, start:end] = torch.tensor(response, dtype=torch.long)
            positions[row, start:end] = torch.arange(n, n + len(response))
            segment[row, start:end] = s
            # The prompt's last token predicts every response's first token; then each its own.
            logit_positions += [row * width + n - 1, *range(row * width + start, row * width + end - 1)]
            targets += response
            lengths.append(len(response))
            seqs.append(index)
            start = end
    mask = None
    if any(len(responses) > 1 for _, responses in units):
        key, query = segment[:, None, :], segment[:, :, None]
        mask = torch.ones(width, width, dtype=torch.bool).tril() & (
            ((key == 0) & (query >= 0)) | ((key == query) & (query > 0)))
        mask = (mask | (torch.eye(width, dtype=torch.bool) & (query < 0)))[:, None]
    return MicroBatch(
        seqs=seqs,
        input_ids=ids,
        position_ids=None if mask is None else positions,
        logit_positions=torch.tensor(logit_positions, dtype=torch.long),
        targets=torch.tensor(targets, dtype=torch.long),
        lengths=lengths,
        logits_to_keep=width - min(len(prompt) for prompt, _ in units) + 1,
        attention_mask=mask,
    )


def dummy_micro_batch(token_id: int) -> MicroBatch:
    """A 2-token row whose loss is multiplied by 0: keeps ranks in step when one has less work."""
    mb = collate([(-1, [token_id], [token_id])])
    mb.dummy = True
    return mb
