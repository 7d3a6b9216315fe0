"""One GRPO step (generation + reward + 2 mini-batch updates): p2o's library path vs TRL's GRPOTrainer.

    python benchmarks/rl_step.py p2o|p2o-run|trl [--steps N]

Prints one JSON line: the wall-clock of the last RL step (the first one pays warm-up costs),
its generation/train split where the tool exposes it, and the tokens it sampled. Both sides use
the model, problems and knobs of setting.py: K=6 rollouts of each of 32 prompts, at most 64 new
tokens, T=0.6, top_k=0, top_p=1, 2 mini-batches of 16 prompts (96 rollouts), clip 0.2, no KL,
token-mean loss, lr 1e-6, fp32 on CPU, the same prompt text (the chat-rendered question).
``p2o`` calls the library (engine, rollouts, trainer) in one process; ``p2o-run`` runs the
``p2o run`` command as a user would (``--no-gepa``, one epoch per step over the same 32
problems) and reads the last step's ``timing/policy_step`` from its metrics.jsonl.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import setting


def rendered_prompts(tokenizer) -> list[tuple[str, str]]:
    from p2o_cli.data.prompts import render

    return [(render(tokenizer, p.problem), p.answer) for p in setting.problems()]


def run_p2o(steps: int) -> dict:
    from p2o_cli.engines.hf import HFEngine
    from p2o_cli.reward.pool import RewardScorer
    from p2o_cli.rl.trainer import PolicyTrainer, TrainConfig
    from p2o_cli.rollout.generate import RolloutConfig, generate_rollouts

    cfg = TrainConfig(lr=setting.LR, warmup_ratio=0.0, mini_batches=2, temperature=setting.TEMPERATURE,
                      clip_low=0.2, clip_high=0.2, loss_agg="token-mean", kl_coef=0.0)
    trainer = PolicyTrainer.from_checkpoint(setting.model_dir(), cfg)
    engine = HFEngine(trainer.model, trainer.tokenizer, batch_size=setting.N_PROBLEMS * setting.K)
    problems = setting.problems()
    out: dict = {}
    with RewardScorer(workers=2) as scorer:
        for step in range(steps):
            start, reward_before = time.perf_counter(), scorer.seconds
            rcfg = RolloutConfig(k=setting.K, temperature=setting.TEMPERATURE, max_new_tokens=setting.MAX_NEW_TOKENS,
                                 seed=step)
            rollouts = generate_rollouts(engine, trainer.tokenizer, problems, rcfg, scorer)
            gen = time.perf_counter() - start
            metrics = trainer.step(rollouts)
            out = {"step_s": time.perf_counter() - start, "gen_s": gen - scorer.seconds + reward_before,
                   "reward_s": scorer.seconds - reward_before, "train_s": metrics["timing/step"],
                   "completion_tokens": sum(r.n_tokens for r in rollouts), "steps": steps,
                   "attention_path": metrics["perf/attention_path"], "shared_rows": metrics["perf/shared_prompt_rows"]}
    return out


def run_p2o_command(steps: int) -> dict:
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        data, out = Path(tmp) / "problems.jsonl", Path(tmp) / "run"
        data.write_text("".join(json.dumps({"id": p.id, "problem": p.problem, "answer": p.answer}) + "\n"
                                for p in setting.problems()))
        subprocess.run(
            [sys.executable, "-m", "p2o_cli", "run", "--model", str(setting.model_dir()), "--data", str(data),
             "--out", str(out), "--no-gepa", "--epochs", str(steps), "--batch-size", str(setting.N_PROBLEMS),
             "--k", str(setting.K), "--temperature", str(setting.TEMPERATURE), "--top-p", "1.0",
             "--max-new-tokens", str(setting.MAX_NEW_TOKENS), "--gen-batch-size", str(setting.N_PROBLEMS * setting.K),
             "--lr", str(setting.LR), "--warmup-ratio", "0", "--min-lr-ratio", "1", "--mini-batches", "2",
             "--clip-low", "0.2", "--clip-high", "0.2", "--loss-agg", "token-mean", "--kl-coef", "0"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    last = [r for r in rows if "timing/policy_step" in r][-1]
    return {"step_s": last["timing/policy_step"], "gen_s": last["timing/gen"], "reward_s": last["timing/reward"],
            "train_s": last["timing/step"], "steps": steps}


def run_trl(steps: int) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from p2o_cli.reward.verify import score_response

    tokenizer = AutoTokenizer.from_pretrained(setting.model_dir())
    model = AutoModelForCausalLM.from_pretrained(setting.model_dir(), dtype="float32")
    rows = [{"prompt": prompt, "answer": answer} for prompt, answer in rendered_prompts(tokenizer)]

    def reward(completions, answer, **_):
        return [score_response(c, a).reward for c, a in zip(completions, answer)]

    marks: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            marks.append(time.perf_counter())

    per_update = setting.N_PROBLEMS * setting.K // 2
    with tempfile.TemporaryDirectory() as tmp:
        args = GRPOConfig(
            output_dir=tmp,
            per_device_train_batch_size=per_update,
            gradient_accumulation_steps=1,
            steps_per_generation=2,
            num_generations=setting.K,
            num_iterations=1,
            max_completion_length=setting.MAX_NEW_TOKENS,
            temperature=setting.TEMPERATURE,
            top_k=0,
            top_p=1.0,
            beta=0.0,
            epsilon=0.2,
            loss_type="dapo",
            scale_rewards="group",
            learning_rate=setting.LR,
            lr_scheduler_type="constant",
            max_steps=2 * steps,
            logging_steps=1,
            report_to="none",
            save_strategy="no",
            use_cpu=True,
            gradient_checkpointing=False,
            bf16=False,
            use_vllm=False,
            seed=0,
            dataloader_num_workers=0,
            disable_tqdm=True,
        )
        trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=Dataset.from_list(rows),
                              processing_class=tokenizer, callbacks=[Clock()])
        start = time.perf_counter()
        trainer.train()
    bounds = [start, *marks]
    # Optimizer steps 2s-1 and 2s make RL step s (one generation feeds both): time the last pair.
    return {"step_s": bounds[-1] - bounds[-3], "steps": steps,
            "completion_tokens": None}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("tool", choices=["p2o", "p2o-run", "trl"])
    ap.add_argument("--steps", type=int, default=2)
    args = ap.parse_args()
    result = {"p2o": run_p2o, "p2o-run": run_p2o_command, "trl": run_trl}[args.tool](args.steps)
    print(json.dumps({"tool": args.tool, **result}))


if __name__ == "__main__":
    main()
