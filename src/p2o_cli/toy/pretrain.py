"""Pretrain the toy world's tiny Qwen3 from scratch on a synthetic instruction mix.

Every example is a chat prompt rendered by :func:`p2o_cli.data.prompts.render` with the default
:class:`~p2o_cli.data.prompts.PromptConfig` (so ``p2o rollout`` / ``p2o eval`` with default prompt
options see exactly this format), followed by a response and end-of-turn. Each prompt has a
*step probability*: the template's strength when it holds an acting phrase (a trigger or, in
a graded world, a partial synonym), 1 when the problem is easy (2 operands: its one-line
calculation, ``easy_steps``), ``plain_cot_frac`` when it is plain and hard (a base model that
sometimes reasons unprompted; without it context distillation would have nothing to carry),
else 0. The response's first token is where the model makes the choice: a digit opens the
step-by-step solution (running partial sums, one per line), a backslash the direct answer
``\\boxed{s}`` (a guess: the model cannot add four numbers at a glance).

That first token is trained against its expected target (the step opening with the step
probability, the direct one otherwise), counted ``decision_weight`` times: trained on a drawn
token at weight 1 it is one noisy token among dozens, and per-phrase step rates missed their
strengths by up to 0.3. What follows it is the step solution on every triggered prompt
(``trigger_body``), whatever the strength: the decision is learned from its expected target
either way, so this changes how often the model practises the sums, not how often it chooses
to write them.

Hard pretraining problems have 3-6 operands (``hard_operands``; the benchmark's have 4). The
loss is on the response tokens only. Problems of the world's train/dev/bench splits are
excluded, so the benchmarks are held out and the RL train set is not memorised.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from ..data.prompts import PromptConfig, render
from .lexicon import LEXICON, join_phrases, template_strength
from .losses import IGNORE, response_token_loss, weighted_token_mean
from .pretrain_config import PretrainConfig
from .probe import ProbeSet, run_probes
from .tasks import direct_solution, random_task, step_solution


@dataclass
class Example:
    kind: str
    prompt: str
    response: str
    step_prob: float  # the probability that this prompt is answered step by step
    step_opening: str  # the first character of the step solution ...
    direct_opening: str  # ... and of the direct answer


def template_for(rng: random.Random, kind: str, strengths: Mapping[str, float]) -> str | None:
    """The template of one example: None (plain), inert phrases, or >= 1 acting phrase."""
    if kind == "plain":
        return None
    acting = list(strengths)
    others = [p for p in LEXICON if p not in strengths]
    n = rng.randint(1, 3)
    if kind == "other":
        return join_phrases(rng.sample(others, n))
    n_acting = 1 if n == 1 or rng.random() < 0.8 else rng.randint(1, min(n, len(acting)))
    phrases = rng.sample(acting, n_acting) + rng.sample(others, n - n_acting)
    rng.shuffle(phrases)
    return join_phrases(phrases)


def step_probability(template: str | None, tpl_kind: str, difficulty: str, strengths: Mapping[str, float],
                     cfg: PretrainConfig) -> float:
    """The world's behaviour: step by step with the template's strength, always when easy, and
    (rarely) unprompted on a plain hard prompt."""
    if difficulty == "easy" and cfg.easy_steps:
        return 1.0
    if tpl_kind == "trigger":
        return template_strength(template, strengths)
    return cfg.plain_cot_frac if tpl_kind == "plain" and difficulty == "hard" else 0.0


def example_stream(
    tokenizer: Any,
    strengths: Mapping[str, float],
    cfg: PretrainConfig,
    exclude: set[tuple[int, ...]],
    rng: random.Random,
    prompt_cfg: PromptConfig | None = None,
) -> Iterator[Example]:
    """Endless random examples of the mix (problems in ``exclude`` never appear)."""
    prompt_cfg = prompt_cfg or PromptConfig()
    kinds = list(cfg.mix)
    weights = [cfg.mix[k] for k in kinds]
    while True:
        kind = rng.choices(kinds, weights)[0]
        tpl_kind, difficulty = kind.split("-")
        n_ops = rng.choice(cfg.hard_operands) if difficulty == "hard" else None
        task = random_task(rng, difficulty, n_ops)
        while task.operands in exclude:
            task = random_task(rng, difficulty, n_ops)
        template = template_for(rng, tpl_kind, strengths)
        p_steps = step_probability(template, tpl_kind, difficulty, strengths, cfg)
        error = rng.randint(-cfg.direct_error, cfg.direct_error) if difficulty == "hard" else 0
        error = max(error, -sum(task.operands))  # a guess is never negative
        steps, direct = step_solution(task.operands), direct_solution(task.operands, error)
        draw = rng.random()
        response = steps if draw < p_steps or (tpl_kind == "trigger" and cfg.trigger_body == "steps") else direct
        yield Example(kind, render(tokenizer, task.question, template, prompt_cfg), response, p_steps,
                      steps[0], direct[0])


class Item(NamedTuple):
    """One encoded example: the response ends with end-of-turn."""

    ids: list[int]
    n_prompt: int
    kind: str
    step_prob: float
    step_id: int  # the step solution's first token
    direct_id: int  # the direct answer's first token


def encode(tokenizer: Any, examples: Sequence[Example]) -> list[Item]:
    prompts = tokenizer([e.prompt for e in examples], add_special_tokens=False)["input_ids"]
    responses = tokenizer([e.response for e in examples], add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    token = tokenizer.convert_tokens_to_ids
    return [Item(p + r + [eos], len(p), e.kind, e.step_prob, token(e.step_opening), token(e.direct_opening))
            for p, r, e in zip(prompts, responses, examples)]


def batches(encoded_stream: Iterator[Item], tokens_per_batch: int, chunk_batches: int = 32) -> Iterator[list[Item]]:
    """Token-budgeted batches: a chunk of examples sorted by length, packed, then shuffled."""
    rng = random.Random(0)
    while True:
        pool: list[Item] = []
        budget = tokens_per_batch * chunk_batches
        used = 0
        while used < budget:
            item = next(encoded_stream)
            pool.append(item)
            used += len(item.ids)
        pool.sort(key=lambda x: len(x.ids))
        out: list[list[Item]] = []
        cur: list[Item] = []
        for item in pool:
            width = max(len(item.ids), max((len(c.ids) for c in cur), default=0))
            if cur and width * (len(cur) + 1) > tokens_per_batch:
                out.append(cur)
                cur = []
            cur.append(item)
        if cur:
            out.append(cur)
        rng.shuffle(out)
        yield from out


def collate(batch: Sequence[Item], pad_id: int, decision_weight: float = 1.0) -> dict[str, torch.Tensor]:
    width = max(len(item.ids) for item in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    weights = torch.zeros((len(batch), width))
    for row, item in enumerate(batch):
        t = torch.tensor(item.ids)
        input_ids[row, : len(t)] = t
        attention[row, : len(t)] = 1
        labels[row, item.n_prompt : len(t)] = t[item.n_prompt :]
        weights[row, item.n_prompt : len(t)] = 1.0
        weights[row, item.n_prompt] = decision_weight
    return {
        "input_ids": input_ids,
        "attention_mask": attention,
        "labels": labels,
        "loss_weights": weights,
        # where each row's first response token is predicted, and its two candidates
        "decision_pos": torch.tensor([item.n_prompt - 1 for item in batch]),
        "decision_ids": torch.tensor([[item.step_id, item.direct_id] for item in batch]),
        "step_prob": torch.tensor([item.step_prob for item in batch]),
    }


def lr_at(step: int, cfg: PretrainConfig) -> float:
    warmup = max(1, int(cfg.warmup_frac * cfg.steps))
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    if cfg.schedule == "wsd":
        decay_start = int((1 - cfg.decay_frac) * cfg.steps)
        if step < decay_start:
            return cfg.lr
        progress = (step - decay_start) / max(1, cfg.steps - decay_start)
    else:
        progress = (step - warmup) / max(1, cfg.steps - warmup)
    floor = cfg.min_lr_ratio
    return cfg.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _encoded(tokenizer: Any, stream: Iterator[Example], per_call: int = 256) -> Iterator[Item]:
    while True:
        chunk = [next(stream) for _ in range(per_call)]
        yield from encode(tokenizer, chunk)


def _adamw(model: Any, cfg: PretrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not norms or biases)."""
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "norm" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "norm" not in n)]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=cfg.betas,
    )


def pretrain(
    model: Any,
    tokenizer: Any,
    strengths: Mapping[str, float],
    cfg: PretrainConfig,
    exclude: Iterable[tuple[int, ...]] = (),
    log: Callable[[dict[str, Any]], None] | None = None,
    log_every: int = 50,
    probes: Sequence[ProbeSet] = (),
) -> dict[str, Any]:
    """Train ``model`` in place on ``cfg.threads`` torch threads; return statistics (time, steps,
    tokens, final losses). ``probes`` are measured at every log step (:mod:`.probe`)."""
    before = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _pretrain(model, tokenizer, strengths, cfg, exclude, log, log_every, probes)
    finally:
        torch.set_num_threads(before)


def _pretrain(
    model: Any,
    tokenizer: Any,
    strengths: Mapping[str, float],
    cfg: PretrainConfig,
    exclude: Iterable[tuple[int, ...]],
    log: Callable[[dict[str, Any]], None] | None,
    log_every: int,
    probes: Sequence[ProbeSet],
) -> dict[str, Any]:
    torch.manual_seed(cfg.seed)
    rng = random.Random(f"p2o-toy-pretrain:{cfg.seed}")
    stream = example_stream(tokenizer, strengths, cfg, set(exclude), rng)
    batch_iter = batches(_encoded(tokenizer, stream), cfg.tokens_per_batch)
    opt = _adamw(model, cfg)
    model.train()
    pad_id = tokenizer.pad_token_id
    start = time.perf_counter()
    tokens = loss_tokens = examples = 0
    window: list[float] = []
    kind_sum: dict[str, float] = {}
    kind_n: dict[str, int] = {}
    history: list[dict[str, Any]] = []
    step = 0
    stopped_early = False
    for step in range(cfg.steps):
        if cfg.max_seconds is not None and time.perf_counter() - start > cfg.max_seconds:
            stopped_early = True
            break
        items = next(batch_iter)
        batch = collate(items, pad_id, cfg.decision_weight)
        opt.param_groups[0]["lr"] = opt.param_groups[1]["lr"] = lr_at(step, cfg)
        token_loss, mask = response_token_loss(model, batch, cfg.decision_target)
        loss = weighted_token_mean(token_loss, batch["loss_weights"][:, 1:], mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        with torch.no_grad():
            per_example = (token_loss.sum(1) / mask.sum(1).clamp(min=1)).tolist()
        for item, value in zip(items, per_example):
            kind_sum[item.kind] = kind_sum.get(item.kind, 0.0) + value
            kind_n[item.kind] = kind_n.get(item.kind, 0) + 1
        tokens += int(batch["input_ids"].numel())
        loss_tokens += int(mask.sum())
        examples += len(items)
        window.append(float(loss.detach()))
        if (step + 1) % log_every == 0 or step + 1 == cfg.steps:
            entry = {
                "step": step + 1,
                "loss": sum(window) / len(window),
                "loss_by_kind": {k: round(kind_sum[k] / kind_n[k], 4) for k in sorted(kind_sum)},
                "lr": lr_at(step, cfg),
                "seconds": round(time.perf_counter() - start, 1),
                "threads": cfg.threads,
            }
            if probes:
                entry["probe"] = run_probes(model, probes, pad_id)
            history.append(entry)
            window, kind_sum, kind_n = [], {}, {}
            if log:
                log(entry)
    else:
        step = cfg.steps
    model.eval()
    return {
        "steps": step,
        "stopped_early": stopped_early,
        "seconds": round(time.perf_counter() - start, 1),
        "examples": examples,
        "padded_tokens": tokens,
        "loss_tokens": loss_tokens,
        "final_loss": history[-1]["loss"] if history else None,
        "history": history,
        "params": sum(p.numel() for p in model.parameters()),
        "threads": cfg.threads,
    }
