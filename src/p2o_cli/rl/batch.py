"""Rollouts → token sequences → token-budget micro-batches for the train step.

A rollout becomes ``prompt ids + response ids``. Which prompt is the *training* prompt is the
context-distillation decision: ``distill="original"`` trains on x (the rollout's template
stripped), ``distill="none"`` on x̃, the prompt the model actually saw.

The rows a micro-batch takes (packed, padded, shared-prompt) are built in rl/rows.py;
this module decides which sequences go together.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import P2OError
from .attention import PACKING_MODES, RowCost, attention_path, is_varlen_attention  # noqa: F401 - re-exported
from .config import DISTILL_MODES
from .logprobs import length_mask, pad_rows, stack_rows  # noqa: F401 - re-exported
from .rows import MicroBatch, collate, collate_padded, collate_shared, dummy_micro_batch


@dataclass
class TokenSeq:
    """One rollout as token ids. ``index`` is the rollout's position in the batch."""

    index: int
    group: str
    prompt_ids: list[int]
    response_ids: list[int]
    # x̃'s ids when the model trains on x but saw x̃ (for the template ratio mask); else None.
    templated_prompt_ids: list[int] | None = None

    @property
    def n_tokens(self) -> int:
        return len(self.prompt_ids) + len(self.response_ids)


def training_prompt(rollout: Any, distill: str) -> str:
    """The prompt whose log-probs and gradient train ``rollout``: x (``original``) or x̃ (``none``)."""
    if distill not in DISTILL_MODES:
        raise P2OError(f"--distill must be one of {', '.join(DISTILL_MODES)}, got {distill!r}")
    if distill == "original" and rollout.original_prompt is not None:
        return rollout.original_prompt
    return rollout.prompt


def is_templated(rollout: Any) -> bool:
    return rollout.original_prompt is not None and rollout.original_prompt != rollout.prompt


def encode_rollouts(
    rollouts: Sequence[Any], tokenizer: Any, distill: str = "original", keep_templated: bool = False
) -> list[TokenSeq]:
    """Tokenize rollouts as the engine did: prompt without special tokens, response + eos if it stopped.

    The response uses the sampled token ids when the record carries them; otherwise it is
    re-tokenized from its text (eos appended if it stopped). ``keep_templated`` also encodes x̃
    for templated rollouts trained on x, for the ratio mask.
    """
    eos = tokenizer.eos_token_id
    if eos is None:
        raise P2OError("the tokenizer has no eos token; cannot mark responses that stopped")
    cache: dict[str, list[int]] = {}

    def encode(text: str) -> list[int]:
        if text not in cache:
            cache[text] = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        return cache[text]

    out: list[TokenSeq] = []
    for index, rollout in enumerate(rollouts):
        prompt_ids = encode(training_prompt(rollout, distill))
        if not prompt_ids:
            raise P2OError(f"rollout {rollout.id!r} (k={rollout.k}) has an empty prompt")
        if getattr(rollout, "response_ids", None):
            response_ids = list(rollout.response_ids)
        else:
            response_ids = list(tokenizer(rollout.response, add_special_tokens=False)["input_ids"])
            if rollout.finish_reason == "stop":
                response_ids.append(eos)
        templated = None
        if keep_templated and distill == "original" and is_templated(rollout):
            templated = encode(rollout.prompt)
        out.append(TokenSeq(index, rollout.id, prompt_ids, response_ids, templated))
    return out


# ---------------------------------------------------------------- splitting and packing



def check_token_ids(seqs: Sequence[TokenSeq], vocab_size: int) -> None:
    """Every response token must index the model's embedding (ValueError naming the rollout)."""
    for seq in seqs:
        bad = next((t for t in seq.response_ids if not 0 <= t < vocab_size), None)
        if bad is not None:
            raise P2OError(
                f"rollout {seq.group!r} has response token id {bad}, outside the model's vocabulary "
                f"of {vocab_size}; its response_ids come from another tokenizer or are corrupt"
            )

def split_groups(groups: Sequence[str], n_parts: int, seed: int) -> list[list[int]]:
    """Split sample indices into ``n_parts`` mini-batches, whole groups each, shuffled by ``seed``.

    Groups are dealt as evenly as possible; with fewer groups than parts there are fewer parts.
    The result depends only on ``groups`` and ``seed``, so every process gets the same split.
    """
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    order = list(members)
    random.Random(seed).shuffle(order)
    n = max(1, min(n_parts, len(order)))
    size, extra = divmod(len(order), n)
    parts, start = [], 0
    for p in range(n):
        end = start + size + (1 if p < extra else 0)
        parts.append(sorted(i for g in order[start:end] for i in members[g]))
        start = end
    return [p for p in parts if p]


def shard_for_ranks(lengths: dict[int, int], n_ranks: int) -> list[list[int]]:
    """Deal sequences to ranks, longest first to the least-loaded rank, balancing tokens."""
    loads = [0] * n_ranks
    shards: list[list[int]] = [[] for _ in range(n_ranks)]
    for i in sorted(lengths, key=lambda i: (-lengths[i], i)):
        r = min(range(n_ranks), key=lambda r: (loads[r], r))
        shards[r].append(i)
        loads[r] += lengths[i]
    return [sorted(s) for s in shards]


def pack(lengths: dict[int, int], max_tokens: int) -> list[list[int]]:
    """First-fit-decreasing bins of at most ``max_tokens`` tokens (deterministic)."""
    bins: list[list[int]] = []
    room: list[int] = []
    for i in sorted(lengths, key=lambda i: (-lengths[i], i)):
        n = lengths[i]
        if n > max_tokens:
            raise P2OError(
                f"a sequence of {n} tokens exceeds --max-tokens-per-micro-batch {max_tokens}; raise the budget"
            )
        for b, free in enumerate(room):
            if n <= free:
                bins[b].append(i)
                room[b] -= n
                break
        else:
            bins.append([i])
            room.append(max_tokens - n)
    return bins


def pad_bins(lengths: dict[int, int], max_tokens: int) -> list[list[int]]:
    """Length-sorted bins whose rows × longest length stays within ``max_tokens`` (deterministic).

    Longest first, so each bin's padded width is its first sequence's length and neighbours in
    a bin differ little in length: padding stays small without any attention across sequences.
    """
    bins: list[list[int]] = []
    width = 0
    for i in sorted(lengths, key=lambda i: (-lengths[i], i)):
        if lengths[i] > max_tokens:
            raise P2OError(
                f"a sequence of {lengths[i]} tokens exceeds --max-tokens-per-micro-batch {max_tokens}; raise the budget"
            )
        if bins and (len(bins[-1]) + 1) * width <= max_tokens:
            bins[-1].append(i)
        else:
            bins.append([i])
            width = lengths[i]
    return bins


@dataclass
class Plan:
    """How one rollout batch is trained: mini-batches → this rank's micro-batches.

    ``train[m]`` are this rank's micro-batches of mini-batch ``m`` (x prompts, or x̃ with
    ``distill="none"``); ``templated`` are the extra x̃ rows for the ratio mask. Both are
    padded with dummies to the largest count on any rank, so collective ops stay in step.
    """

    seqs: list[TokenSeq]
    mini_batches: list[list[int]]
    train: list[list[MicroBatch]] = field(default_factory=list)
    templated: list[MicroBatch] = field(default_factory=list)
    local: list[int] = field(default_factory=list)


def plan_batch(
    seqs: list[TokenSeq],
    n_mini_batches: int,
    max_tokens: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    pad_token: int = 0,
    path: str = "packed",
    row_cost: RowCost | None = None,
) -> Plan:
    """Split, shard and bin a batch. Every rank computes every rank's plan (no communication).

    ``path`` is :func:`attention_path`'s answer: ``"packed"`` rows hold several sequences (only
    for varlen attention), ``"padded"`` rows one sequence, or, given ``row_cost``, one prompt
    and the responses of its group where :meth:`RowCost.shares` finds that cheaper.
    """
    if path not in ("packed", "padded"):
        raise ValueError(f"unknown micro-batch path {path!r}")
    binner = pack if path == "packed" else pad_bins
    trainable = [s for s in seqs if s.response_ids]
    by_index = {s.index: s for s in trainable}

    def one_per_sequence(triples: list[tuple[int, list[int], list[int]]]) -> MicroBatch:
        return collate(triples) if path == "packed" else collate_padded(triples, pad_token)

    def build(units: list[list[int]]) -> MicroBatch:
        if path == "packed":
            return one_per_sequence([_triple(by_index[u[0]]) for u in units])
        return collate_shared([(by_index[u[0]].prompt_ids, [(i, by_index[i].response_ids) for i in u])
                               for u in units], pad_token)

    groups = [s.group for s in trainable]
    parts = [[trainable[i].index for i in part] for part in split_groups(groups, n_mini_batches, seed)]
    plan = Plan(seqs=seqs, mini_batches=parts)
    templated_bins: list[list[list[int]]] = [[] for _ in range(world_size)]
    sharing = row_cost if path == "padded" else None
    for part in parts:
        units = {u[0]: u for u in _row_units([by_index[i] for i in part], sharing, max_tokens)}
        size = {key: len(by_index[key].prompt_ids) + sum(len(by_index[i].response_ids) for i in unit)
                for key, unit in units.items()}
        shards = shard_for_ranks(size, world_size)
        bins = [binner({key: size[key] for key in shard}, max_tokens) for shard in shards]
        width = max(len(b) for b in bins)
        mine = [build([units[key] for key in b]) for b in bins[rank]]
        mine += [dummy_micro_batch(pad_token) for _ in range(width - len(mine))]
        plan.train.append(mine)
        for r, shard in enumerate(shards):
            members = sorted(i for key in shard for i in units[key])
            if r == rank:
                plan.local += members
            templated = {
                i: len(by_index[i].templated_prompt_ids) + len(by_index[i].response_ids)  # type: ignore[arg-type]
                for i in members
                if by_index[i].templated_prompt_ids is not None
            }
            templated_bins[r] += binner(templated, max_tokens)
    width = max(len(b) for b in templated_bins)
    plan.templated = [
        one_per_sequence([(i, by_index[i].templated_prompt_ids, by_index[i].response_ids) for i in b])  # type: ignore[misc]
        for b in templated_bins[rank]
    ]
    plan.templated += [dummy_micro_batch(pad_token) for _ in range(width - len(plan.templated))]
    return plan


def _row_units(seqs: list[TokenSeq], row_cost: RowCost | None, max_tokens: int) -> list[list[int]]:
    """Sequence indices per row unit: a prompt's sequences together where sharing it is cheaper, else one each."""
    by_prompt: dict[tuple[int, ...], list[TokenSeq]] = {}
    for s in seqs:
        by_prompt.setdefault(tuple(s.prompt_ids), []).append(s)
    units: list[list[int]] = []
    for prompt, members in by_prompt.items():
        responses = [len(s.response_ids) for s in members]
        fits = len(prompt) + sum(responses) <= max_tokens
        if row_cost is not None and fits and row_cost.shares(len(prompt), responses):
            units.append([s.index for s in members])
        else:
            units += [[s.index] for s in members]
    return units


def _triple(s: TokenSeq) -> tuple[int, list[int], list[int]]:
    return s.index, s.prompt_ids, s.response_ids


def plain_anchors(rollouts: Sequence[Any]) -> dict[str, list[float]]:
    """Problem id -> the plain rewards its templated rollouts carry (the rewards that made it hard).

    Feeds ``core_algos.compute_advantages(anchors=...)``; problems rolled out without templates,
    or whose records predate the field, get no anchor and keep plain GRPO statistics.
    """
    anchors: dict[str, list[float]] = {}
    for r in rollouts:
        if r.template is not None and r.plain_rewards and r.id not in anchors:
            anchors[r.id] = [float(v) for v in r.plain_rewards]
    return anchors
