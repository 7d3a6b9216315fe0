"""A train step's statistics: summed per micro-batch, reduced over processes, reported by name."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from . import core_algos as ca
from .batch import Plan
from .config import TrainConfig


class StepSums:
    """Metric accumulators, reduced over processes once per step (sum, min or max)."""

    def __init__(self) -> None:
        self.sum: dict[str, float] = {}
        self.min: dict[str, float] = {}
        self.max: dict[str, float] = {}

    def add(self, key: str, value: float) -> None:
        self.sum[key] = self.sum.get(key, 0.0) + float(value)

    def low(self, key: str, value: float) -> None:
        self.min[key] = min(self.min.get(key, math.inf), float(value))

    def high(self, key: str, value: float) -> None:
        self.max[key] = max(self.max.get(key, -math.inf), float(value))

    def reduce(self, accelerator: Any) -> None:
        if accelerator.num_processes == 1:
            return
        import torch.distributed as dist

        device = accelerator.device
        for table, op in ((self.sum, dist.ReduceOp.SUM), (self.min, dist.ReduceOp.MIN), (self.max, dist.ReduceOp.MAX)):
            keys = sorted(table)  # every process has the same keys: they come from the shared plan
            t = torch.tensor([table[k] for k in keys], dtype=torch.float64, device=device)
            dist.all_reduce(t, op=op)
            table.update(zip(keys, t.tolist()))


def step_metrics(cfg: TrainConfig, rollouts: Sequence[Any], plan: Plan, adv: Tensor, sums: StepSums, lr: float,
                 n: int, has_ref: bool) -> dict[str, float]:
    """One train step's metrics (verl's names) from its summed statistics."""
    # Counts that every process holds whole (rewards, lengths) were not reduced; sums are.
    s, lo, hi = sums.sum, sums.min, sums.max
    rewards = torch.tensor([float(r.reward) for r in rollouts])
    lengths = torch.tensor([float(len(x.response_ids)) for x in plan.seqs])
    updates = max(s.get("updates", 0.0) / n, 1.0)
    n_mini = max(len(plan.train), 1)
    tokens = max(s["tokens"], 1.0)
    m: dict[str, float] = {
        "actor/lr": lr,
        "actor/pg_loss": s["pg_loss"] / n_mini,
        "actor/pg_clipfrac": s["clipfrac"] / tokens,
        "actor/pg_clipfrac_lower": s["clipfrac_lower"] / tokens,
        "actor/ppo_kl": s["ppo_kl"] / tokens,
        "actor/grad_norm": s.get("grad_norm", 0.0) / n / updates,
        "actor/skipped_updates": s.get("skipped", 0.0) / n,
        "actor/mini_batches": n_mini,
        "actor/loss_tokens": s["tokens"],
        "critic/rewards/mean": rewards.mean().item(),
        "critic/advantages/mean": adv.mean().item(),
        "critic/advantages/max": adv.max().item(),
        "critic/advantages/min": adv.min().item(),
        "frac_reward_zero_std": ca.frac_zero_std(rewards, [r.id for r in rollouts]),
        "response_length/mean": lengths.mean().item(),
        "response_length/max": lengths.max().item(),
        "response_length/clip_ratio": sum(r.finish_reason == "length" for r in rollouts) / len(rollouts),
        "perf/micro_batches": s["micro_batches"],
        "perf/max_tokens_per_micro_batch": hi["micro_batch_tokens"],
        # this process's rows that hold one prompt and its group's responses (rl/rows.py)
        "perf/shared_prompt_rows": float(
            sum(mb.rows for mbs in plan.train for mb in mbs if mb.attention_mask is not None)
        ),
    }
    if cfg.log_entropy:
        m["actor/entropy"] = s["entropy"] / max(s["entropy_tokens"], 1.0)
    if has_ref:
        m["actor/kl_loss"] = s["kl_loss"] / n_mini
    if cfg.ratio_mask is not None:
        # Over the tokens of templated rollouts, the only ones whose ratio is not exactly 1.
        n_ratio = s["ratio/tokens"]
        m["actor/template_ratio/tokens"] = n_ratio
        m["actor/template_ratio/mean"] = s["ratio/sum"] / n_ratio if n_ratio else 1.0
        m["actor/template_ratio/min"] = lo["ratio/min"] if n_ratio else 1.0
        m["actor/template_ratio/max"] = hi["ratio/max"] if n_ratio else 1.0
        m["actor/template_ratio/masked_frac"] = s["ratio/dropped"] / n_ratio if n_ratio else 0.0
    if torch.cuda.is_available():
        m["perf/max_memory_allocated_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return m


# How train-step and p2o run name a batch without learning signal.
NO_SIGNAL = "no learning signal"


def learning_signal(metrics: Mapping[str, float]) -> bool:
    """Whether a step's batch gave the policy loss anything to learn from: not every advantage is 0.

    Under GRPO a group whose K rewards are all equal (all solved or all failed) has advantages
    of 0; a batch of only such groups has no policy gradient at all.
    """
    return metrics["critic/advantages/max"] != 0 or metrics["critic/advantages/min"] != 0
