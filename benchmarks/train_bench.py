"""Train tokens/s: p2o's train step vs a plain padded PyTorch loop on the same rollouts; peak RSS.

    python benchmarks/train_bench.py compare            # tokens/s, side by side
    python benchmarks/train_bench.py rss --batch N [--budget T]  # peak RSS of one p2o step at N rollouts

The plain loop is what one writes by hand: right-padded [rows, length] batches of at most the
same token budget, one forward for old log-probs and two mini-batch updates (forward/backward,
token-mean PPO-clip loss, AdamW), fp32, no attention mask. Rollouts are synthetic: the setting's
prompts with random 1–64-token responses, so both sides train exactly the same tokens.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import setting

BUDGET = 16384


def synthetic_rollouts(n: int, tokenizer, seed: int = 0) -> list:
    from p2o_cli.data.prompts import render
    from p2o_cli.files.records import Rollout

    rng = random.Random(seed)
    problems = setting.problems(max(1, n // setting.K))
    out = []
    for i in range(n):
        p = problems[(i // setting.K) % len(problems)]
        length = rng.randint(1, setting.MAX_NEW_TOKENS)
        response = "".join(rng.choice("0123456789+= \n") for _ in range(length))
        out.append(Rollout(id=p.id, k=i % setting.K, prompt=render(tokenizer, p.problem), response=response,
                           reward=float(rng.random() < 0.3), pred=None, finish_reason="length", n_tokens=length,
                           template_id=None, template=None))
    return out


def p2o_step(rollouts: list, budget: int = BUDGET) -> tuple[float, int]:
    from p2o_cli.rl.trainer import PolicyTrainer, TrainConfig

    trainer = PolicyTrainer.from_checkpoint(setting.model_dir(), TrainConfig(lr=setting.LR, warmup_ratio=0.0,
                                            max_tokens_per_micro_batch=budget))
    trainer.step(rollouts[: setting.K * 2])  # warm-up
    m = trainer.step(rollouts)
    return m["timing/step"], int(m["actor/loss_tokens"])


def plain_step(rollouts: list) -> float:
    """The hand-written loop: padded batches, old log-probs, 2 mini-batch PPO updates."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(setting.model_dir())
    model = AutoModelForCausalLM.from_pretrained(setting.model_dir(), dtype=torch.float32)
    opt = torch.optim.AdamW(model.parameters(), lr=setting.LR)
    seqs = []
    for r in rollouts:
        p = tok(r.prompt, add_special_tokens=False)["input_ids"]
        y = tok(r.response, add_special_tokens=False)["input_ids"]
        seqs.append((p, y))
    rewards = torch.tensor([r.reward for r in rollouts])
    groups = rewards.view(-1, setting.K)
    adv = ((groups - groups.mean(1, keepdim=True)) / (groups.std(1, keepdim=True) + 1e-6)).view(-1)

    def batches(idx):
        width = max(len(seqs[i][0]) + len(seqs[i][1]) for i in idx)
        rows = max(1, BUDGET // width)
        for s in range(0, len(idx), rows):
            yield idx[s : s + rows]

    def logps(idx):
        width = max(len(seqs[i][0]) + len(seqs[i][1]) for i in idx)
        ids = torch.zeros(len(idx), width, dtype=torch.long)
        mask = torch.zeros(len(idx), width - 1, dtype=torch.bool)
        for row, i in enumerate(idx):
            p, y = seqs[i]
            ids[row, : len(p) + len(y)] = torch.tensor(p + y)
            mask[row, len(p) - 1 : len(p) + len(y) - 1] = True
        logits = model(input_ids=ids, use_cache=False).logits[:, :-1] / setting.TEMPERATURE
        lp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None])[..., 0]
        return lp, mask

    start = time.perf_counter()
    order = list(range(len(seqs)))
    old: dict[int, torch.Tensor] = {}  # each sequence's old log-probs, whatever batch computed them
    with torch.no_grad():
        for b in batches(order):
            lp, _ = logps(b)
            old.update({i: lp[row] for row, i in enumerate(b)})
    half = len(order) // 2
    for part in (order[:half], order[half:]):
        n_tok = sum(len(seqs[i][1]) for i in part)
        for b in batches(part):
            lp, mask = logps(b)
            # Rows are right-padded to each batch's width; positions past a sequence are masked out.
            width = lp.shape[1]
            old_lp = torch.stack([torch.nn.functional.pad(old[i][:width], (0, max(0, width - len(old[i])))) for i in b])
            ratio = torch.exp(lp - old_lp)
            a = adv[b][:, None]
            loss = -torch.min(ratio * a, ratio.clamp(0.8, 1.2) * a)
            ((loss * mask).sum() / n_tok).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["compare", "rss"])
    ap.add_argument("--batch", type=int, default=setting.N_PROBLEMS * setting.K)
    ap.add_argument("--budget", type=int, default=BUDGET)
    args = ap.parse_args()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(setting.model_dir())
    rollouts = synthetic_rollouts(args.batch, tok)
    tokens = sum(len(tok(r.prompt + r.response)["input_ids"]) for r in rollouts)
    if args.mode == "rss":
        p2o_step(rollouts, args.budget)
        print(json.dumps({"batch": args.batch, "budget": args.budget, "peak_rss_mb": setting.peak_rss_mb()}))
        return
    plain_s = plain_step(rollouts)
    p2o_s, _ = p2o_step(rollouts)
    print(json.dumps({"tokens": tokens, "p2o_tokens_per_s": tokens / p2o_s, "plain_tokens_per_s": tokens / plain_s}))


if __name__ == "__main__":
    main()
