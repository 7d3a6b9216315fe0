"""Profile one p2o GRPO step in the issue's setting: where does the train step spend its time?

    python benchmarks/profile_step.py [--packing auto|padded|packed] [--max-tokens N] [--torch-profile]

Prints generation / reward / train timings and the trainer's timing breakdown; with
--torch-profile also torch.profiler's top operators of the train step.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import setting


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packing", default="auto")
    ap.add_argument("--max-tokens", type=int, default=16384)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--torch-profile", action="store_true")
    args = ap.parse_args()

    import torch

    from p2o_cli.engines.hf import HFEngine
    from p2o_cli.reward.pool import RewardScorer
    from p2o_cli.rl.trainer import PolicyTrainer, TrainConfig
    from p2o_cli.rollout.generate import RolloutConfig, generate_rollouts

    cfg = TrainConfig(lr=setting.LR, warmup_ratio=0.0, max_tokens_per_micro_batch=args.max_tokens,
                      packing=args.packing, temperature=setting.TEMPERATURE)
    trainer = PolicyTrainer.from_checkpoint(setting.model_dir(), cfg)
    engine = HFEngine(trainer.model, trainer.tokenizer, batch_size=256)
    problems = setting.problems()
    with RewardScorer(workers=2) as scorer:
        for step in range(args.steps):
            rcfg = RolloutConfig(k=setting.K, temperature=setting.TEMPERATURE, max_new_tokens=setting.MAX_NEW_TOKENS,
                                 seed=step)
            rollouts, t_gen = setting.timed(generate_rollouts, engine, trainer.tokenizer, problems, rcfg, scorer)
            if args.torch_profile and step == args.steps - 1:
                with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                    metrics = trainer.step(rollouts)
                print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
            else:
                metrics = trainer.step(rollouts)
            keys = [k for k in metrics if k.startswith(("timing/", "perf/"))]
            print(json.dumps({"step": step, "gen+reward_s": round(t_gen, 2),
                              **{k: round(metrics[k], 3) for k in keys}}))


if __name__ == "__main__":
    main()
