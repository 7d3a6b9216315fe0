"""``make bench``: every figure as a ratio measured side by side in one run; results.json + RESULTS.md.

    python benchmarks/bench.py [--only NAME ...]

Each figure runs its worker script in a subprocess (a fresh process per side, so one side's
memory or threads cannot slow the other) on the same machine, model, data and settings.
Environment: P2O_BENCH_PROBLEMS (default 32 prompts × K=6), P2O_BENCH_STEPS (RL steps per side,
the last one timed; default 2).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import setting
from setting import Figure

HERE = Path(__file__).resolve().parent
PY = sys.executable
STEPS = os.environ.get("P2O_BENCH_STEPS", "2")


def worker(script: str, *args: str) -> dict:
    return setting.run_json([PY, str(HERE / script), *args])


def shape() -> str:
    return f"{setting.N_PROBLEMS} prompts × K={setting.K}, ≤{setting.MAX_NEW_TOKENS} new tokens"


def rl_step() -> Figure:
    load0 = setting.load()
    p2o = worker("rl_step.py", "p2o", "--steps", STEPS)
    trl = worker("rl_step.py", "trl", "--steps", STEPS)
    ratio = trl["step_s"] / p2o["step_s"]
    return Figure(
        "rl-step-vs-trl", round(p2o["step_s"], 2), round(trl["step_s"], 2), "s per RL step (lower is better)",
        round(ratio, 2), "≥ 1.5× TRL throughput", ratio >= 1.5,
        notes=(f"{shape()}; 4M Qwen3 from config; T=0.6, top_k=0, top_p=1; 2 mini-batch updates (TRL "
               f"steps_per_generation=2, per_device_train_batch_size={setting.N_PROBLEMS * setting.K // 2}); beta=0, "
               "epsilon=0.2, token-mean (TRL loss_type=dapo, no accumulation), lr 1e-6 constant, use_vllm=False, "
               "gradient_checkpointing off on both, fp32 CPU. Last of "
               f"{STEPS} RL steps timed per side. p2o: generation {p2o['gen_s']:.1f} s, reward "
               f"{p2o['reward_s']:.2f} s, train {p2o['train_s']:.1f} s (padded micro-batches). "
               "p2o's hf engine samples this small model on 1 CPU thread (engines/hf.py decode_threads), TRL's "
               "model.generate on torch's default; both train on torch's default threads. "
               f"p2o run's per-step time not measured separately (same library calls). Load {load0}→{setting.load()}."),
    )


def train_tokens() -> list[Figure]:
    load0 = setting.load()
    out = worker("train_bench.py", "compare")
    ratio = out["p2o_tokens_per_s"] / out["plain_tokens_per_s"]
    figures = [Figure(
        "train-tokens-per-s", round(out["p2o_tokens_per_s"], 1), round(out["plain_tokens_per_s"], 1), "tokens/s",
        round(ratio, 2), "≥ 1.0× a plain padded PyTorch loop", ratio >= 1.0,
        notes=(f"{out['tokens']} tokens ({setting.N_PROBLEMS * setting.K} synthetic rollouts, responses 1–64 tokens): "
               "old log-probs + 2 PPO-clip mini-batch updates, token budget 16384, fp32. "
               f"Load {load0}→{setting.load()}."),
    )]
    rss = {n: worker("train_bench.py", "rss", "--batch", str(n))["peak_rss_mb"] for n in (64, 192, 576)}
    # 64 rollouts (~13k tokens) fit one micro-batch under the budget; from 192 on the budget binds,
    # so memory tracking the budget means 576 costs what 192 does.
    growth = rss[576] / rss[192]
    figures.append(Figure(
        "train-peak-rss", round(rss[576], 0), round(rss[192], 0), "MB peak RSS, batch 576 vs 192",
        round(growth, 2), "tracks the token budget, not the batch (576 rollouts ≤ 1.1× the RSS of 192)", growth <= 1.1,
        notes=(f"peak RSS of one train step at a 16384-token budget: {', '.join(f'{n}: {v:.0f} MB' for n, v in rss.items())}"
               " (64 rollouts fit under the budget in one micro-batch, hence less)."),
    ))
    return figures


def generation() -> Figure:
    load0 = setting.load()
    out = worker("gen_bench.py")
    ratio = out["engine_tokens_per_s"] / out["raw_tokens_per_s"]
    return Figure(
        "generation-hf", round(out["engine_tokens_per_s"], 1), round(out["raw_tokens_per_s"], 1), "tokens/s",
        round(ratio, 2), "≥ 0.95× model.generate", ratio >= 0.95,
        notes=f"{shape()}, one batch, best of 2 alternated runs each. Load {load0}→{setting.load()}.",
    )


def reward() -> Figure:
    load0 = setting.load()
    out = worker("reward_bench.py")
    ratio = out["scorer_per_s"] / out["serial_per_s"]
    return Figure(
        "reward", round(out["scorer_per_s"], 1), round(out["serial_per_s"], 1), "verifications/s",
        round(ratio, 2), "≥ 10× serial math_verify", ratio >= 10,
        notes=(f"{out['pairs']} (response, gold) pairs from the six benchmarks' golds, 6 per gold; RewardScorer with "
               f"2 workers and a 5 s per-item timeout ({out['timeouts']} items hit it); serial = verify(parse(gold), "
               f"parse(response)) with math_verify's own timeouts on an even sample of {out['serial_sample']} pairs. "
               f"Load {load0}→{setting.load()}." + ("" if ratio >= 10 else REWARD_MISS)),
    )


REWARD_MISS = (" Misses 10×: with every gold parsed once and integers judged without sympy, the rest is parsing each "
               "distinct prediction with sympy (latex2sympy), which batching cannot remove; 2 workers give at most 2× "
               "on top. Closing it needs a cheaper prediction parser (normalised-string match before sympy) or more "
               "cores.")


def not_measured() -> list[Figure]:
    return [
        Figure("generation-vllm", 0.0, 0.0, "tokens/s", 0.0, "≥ 0.9× vllm.LLM.generate", False,
               notes="not measured: needs the .venv-vllm environment (make install-vllm, ~4 min of 2 busy cores); "
                     "run `make bench-vllm` style measurement there to close it."),
        Figure("gepa-vs-gepa-lib", 0.0, 0.0, "dev coverage / wall-clock", 0.0,
               "coverage ≥ gepa's in ≤ 1/3 of its wall-clock", False,
               notes="not measured yet: needs a gepa.optimize adapter around p2o's engine and reward on a toy world."),
        Figure("loop-overhead", 0.0, 0.0, "share of p2o run wall-clock", 0.0, "≤ 10% outside generation and training",
               False, notes="not measured yet: metrics.jsonl now carries timing/gen, reward, old_logprob, update, io "
                            "per step, from which a toy-world p2o run gives this share."),
    ]


FIGURES = {"rl-step": rl_step, "train": train_tokens, "generation": generation, "reward": reward}


def table(rows: list[dict]) -> str:
    lines = ["| figure | p2o | baseline | unit | ratio | target | met | notes |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['p2o']} | {r['baseline']} | {r['unit']} | {r['ratio']} | {r['target']} | "
                     f"{'yes' if r['met'] else 'no'} | {r['notes']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*", choices=sorted(FIGURES))
    args = ap.parse_args()
    setting.model_dir()
    for name in args.only or FIGURES:
        result = FIGURES[name]()
        setting.write_figures(result if isinstance(result, list) else [result])
        print(f"bench: {name} done (load {setting.load()})", flush=True)
    if not args.only:
        setting.write_figures(not_measured())
    rows = json.loads(setting.RESULTS.read_text())
    text = (f"# p2o benchmarks\n\nMachine: {setting.machine()}. Written by `make bench` "
            "(benchmarks/bench.py); every ratio is p2o against its baseline measured in the same run.\n\n"
            + table(rows) + "\n")
    (HERE / "RESULTS.md").write_text(text)
    print(table(rows))


if __name__ == "__main__":
    main()
