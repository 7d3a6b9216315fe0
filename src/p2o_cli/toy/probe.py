"""A cheap held-out check of what pretraining has learned, in one forward pass per batch.

Under teacher forcing, a response whose every token is the model's argmax is exactly what
greedy decoding writes, so "every token argmax-correct" is greedy accuracy without generating.
The probe measures it on held-out problems: easy ones under the plain prompt (the whole
response: its one step line and the boxed sum), and hard ones under their strongest acting
phrase with the step opening given (the arithmetic, whatever the decision): whether the world
can add, step by step. Pretraining logs it and can stop on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..data.prompts import PromptConfig, render
from ..files.records import Problem
from .tasks import operands_of, step_solution


@dataclass(frozen=True)
class ProbeSet:
    """Encoded held-out examples: prompt ids, response ids and where the scored part starts."""

    name: str
    rows: list[tuple[list[int], int, int]]  # (ids, response start, first scored response token)


def probe_set(name: str, tokenizer: Any, problems: Sequence[Problem], template: str | None,
              skip_decision: bool, prompt_cfg: PromptConfig | None = None) -> ProbeSet:
    """``problems`` answered step by step under ``template``; with ``skip_decision`` the first
    response token (the step/direct choice) is given, not scored."""
    prompt_cfg = prompt_cfg or PromptConfig()
    eos = tokenizer.eos_token_id
    rows = []
    for problem in problems:
        text = render(tokenizer, problem.problem, template, prompt_cfg)
        prompt = tokenizer(text, add_special_tokens=False)["input_ids"]
        response = tokenizer(step_solution(operands_of(problem)), add_special_tokens=False)["input_ids"] + [eos]
        rows.append((prompt + response, len(prompt), len(prompt) + int(skip_decision)))
    return ProbeSet(name, rows)


def exact_share(model: Any, probe: ProbeSet, pad_id: int, batch_size: int = 64) -> float:
    """The share of rows whose scored tokens are all the model's argmax (= greedy exact match)."""
    was_training = model.training
    model.eval()
    hits = 0
    with torch.inference_mode():
        for start in range(0, len(probe.rows), batch_size):
            chunk = probe.rows[start : start + batch_size]
            width = max(len(ids) for ids, _, _ in chunk)
            input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            attention = torch.zeros_like(input_ids)
            scored = torch.zeros((len(chunk), width), dtype=torch.bool)
            for row, (ids, _, first) in enumerate(chunk):
                input_ids[row, : len(ids)] = torch.tensor(ids)
                attention[row, : len(ids)] = 1
                scored[row, first : len(ids)] = True
            predicted = model(input_ids=input_ids, attention_mask=attention).logits[:, :-1].argmax(-1)
            wrong = (predicted != input_ids[:, 1:]) & scored[:, 1:]
            hits += int((~wrong.any(1)).sum())
    model.train(was_training)
    return hits / max(len(probe.rows), 1)


def run_probes(model: Any, probes: Sequence[ProbeSet], pad_id: int) -> dict[str, float]:
    return {probe.name: exact_share(model, probe, pad_id) for probe in probes}


def strongest_phrase(strengths: Mapping[str, float]) -> str:
    return max(strengths, key=lambda phrase: strengths[phrase])
