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
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import setting
from setting import Figure

HERE = Path(__file__).resolve().parent
PY = sys.executable
STEPS = os.environ.get("P2O_BENCH_STEPS", "2")


def worker(script: str, *args: str, env: dict[str, str] | None = None) -> dict:
    return setting.run_json([PY, str(HERE / script), *args], env=env)


def shape() -> str:
    return f"{setting.N_PROBLEMS} prompts × K={setting.K}, ≤{setting.MAX_NEW_TOKENS} new tokens"


def rl_step() -> Figure:
    load0 = setting.load()
    p2o = worker("rl_step.py", "p2o", "--steps", STEPS)
    command = worker("rl_step.py", "p2o-run", "--steps", STEPS)
    trl = worker("rl_step.py", "trl", "--steps", STEPS)
    ratio = trl["step_s"] / p2o["step_s"]
    return Figure(
        "rl-step-vs-trl",
        round(p2o["step_s"], 2),
        round(trl["step_s"], 2),
        "s per RL step (lower is better)",
        round(ratio, 2),
        "≥ 1.5× TRL throughput",
        ratio >= 1.5,
        notes=(
            f"{shape()}; 4M Qwen3 from config; T=0.6, top_k=0, top_p=1; 2 mini-batch updates (TRL "
            f"steps_per_generation=2, per_device_train_batch_size={setting.N_PROBLEMS * setting.K // 2}); beta=0, "
            "epsilon=0.2, token-mean (TRL loss_type=dapo, no accumulation), lr 1e-6 constant, use_vllm=False, "
            "gradient_checkpointing off on both, fp32 CPU. Last of "
            f"{STEPS} RL steps timed per side. p2o: generation {p2o['gen_s']:.1f} s, reward "
            f"{p2o['reward_s']:.2f} s, train {p2o['train_s']:.1f} s (padded micro-batches). "
            "Both sample and train on torch's default threads; p2o prefills each prompt once for its K samples "
            f"and trains a group's responses in one row with their prompt where that costs fewer FLOPs "
            f"({p2o.get('shared_rows', 0):.0f} shared-prompt rows). "
            f"p2o run (the command, --no-gepa, same settings): {command['step_s']:.1f} s per step (timing/policy_step "
            f"of the last; generation {command['gen_s']:.1f} s, train {command['train_s']:.1f} s), "
            f"{trl['step_s'] / command['step_s']:.2f}× TRL. Load {load0}→{setting.load()}."
        ),
    )


RSS_BUDGET = 4096
# glibc keeps freed heap memory for reuse, so after many micro-batches of varying sizes peak RSS
# grows with their number even when nothing is held. Large blocks served by mmap go back to the OS
# on free: with this setting the figure sees what the step holds. The default allocator's
# numbers are measured beside it and go in the notes.
RETURN_FREED = {"MALLOC_MMAP_THRESHOLD_": "65536"}


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
    # A budget that 192 rollouts already fill: with shared-prompt rows a mini-batch of 96 of them
    # is ~5k tokens, so under 16384 neither 192 nor 576 would fill one micro-batch and peak memory
    # would follow the batch for lack of a binding budget. From 192 on this one binds.
    def peak(n: int, env: dict[str, str] | None) -> float:
        return worker("train_bench.py", "rss", "--batch", str(n), "--budget", str(RSS_BUDGET), env=env)["peak_rss_mb"]

    rss = {n: peak(n, RETURN_FREED) for n in (64, 192, 576)}
    default = {n: peak(n, None) for n in (192, 576)}
    growth = rss[576] / rss[192]
    figures.append(
        Figure(
            "train-peak-rss",
            round(rss[576], 0),
            round(rss[192], 0),
            "MB peak RSS, batch 576 vs 192",
            round(growth, 2),
            "tracks the token budget, not the batch (576 rollouts ≤ 1.1× the RSS of 192)",
            growth <= 1.1,
            notes=(
                f"peak RSS of one train step at a {RSS_BUDGET}-token budget: "
                f"{', '.join(f'{n}: {v:.0f} MB' for n, v in rss.items())} (64 rollouts fit under the budget in one "
                "micro-batch, hence less; the budget is below the default 16384 because shared-prompt rows make 192 "
                "rollouts ~5k tokens per mini-batch, which a 16384 budget would not bind). Run with "
                "MALLOC_MMAP_THRESHOLD_=65536 so freed blocks return to the OS; with glibc's default the same steps "
                f"peak at 192: {default[192]:.0f} MB, 576: {default[576]:.0f} MB "
                f"({default[576] / default[192]:.2f}), the "
                "difference being memory the allocator kept, not tensors the step holds."
            ),
        )
    )
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


REWARD_MISS = (
    " Misses 10×. Profiled (cProfile, 3,000 of these pairs in one process): all the time is math-verify's "
    "LaTeX parsing of predictions (latex2sympy's ANTLR parser) and sympy's verify. Exact shortcuts now skip "
    "sympy where math-verify's verdict is known without it (two plain integers; two plain decimals of at most "
    "6 places and 15 digits, compared exactly; a per-worker cache of normalised (prediction, gold) verdicts; "
    "predictions stripped of surrounding spaces), checked verdict by verdict against the slow path in "
    "tests/test_reward_fastpath.py; each gold is parsed once per worker. What is left is one sympy parse + "
    "verify per distinct (prediction, gold) that is not plain numbers: here the gold itself and another "
    "problem's gold (2 of 6 responses per gold, vs 6 parses + verifies serially), and 2 workers give at most "
    "2× on top (less on a shared machine). Closing it needs more cores or a faster LaTeX parser than ANTLR."
)


VLLM_PY = os.environ.get("P2O_BENCH_VLLM_PY", str(HERE.parent / ".venv-vllm" / "bin" / "python"))


def generation_vllm() -> Figure:
    if not Path(VLLM_PY).is_file():
        return Figure("generation-vllm", 0.0, 0.0, "tokens/s", 0.0, "≥ 0.9× vllm.LLM.generate", False,
                      notes=f"not measured: no vllm environment ({VLLM_PY} missing; `make install-vllm` creates it, "
                            "or set P2O_BENCH_VLLM_PY).")
    load0 = setting.load()
    out = setting.run_json([VLLM_PY, str(HERE / "vllm_bench.py")])
    ratio = out["engine_tokens_per_s"] / out["raw_tokens_per_s"]
    return Figure(
        "generation-vllm",
        round(out["engine_tokens_per_s"], 1),
        round(out["raw_tokens_per_s"], 1),
        "tokens/s",
        round(ratio, 2),
        "≥ 0.9× vllm.LLM.generate",
        ratio >= 0.9,
        notes=(
            f"{shape()}, T=0.6, top_k off, top_p=1; vllm {out['vllm']} (CPU), one LLM built by p2o's VLLMEngine "
            "(fp32, eager, whole prefills) serving both sides: engine.generate (tokenises, one seeded SamplingParams "
            "per prompt) vs llm.generate on the same prompt strings with the same per-request seeds; the two sampled "
            f"identical tokens ({', '.join(map(str, out['tokens_per_call']))} per call, checked). A warm-up call, then "
            f"{out['reps']} pairs of calls, the side going first alternating; median of each side (p2o "
            f"{out['engine_runs']}, raw {out['raw_runs']} tok/s). Load {load0}→{setting.load()}."
        ),
    )


GEPA_SEEDS = os.environ.get("P2O_BENCH_GEPA_SEEDS", "0").split()


def gepa_vs_lib() -> Figure:
    import gepa_bench

    load0 = setting.load()
    prep = worker("gepa_bench.py", "prepare")
    runs = []
    for seed in GEPA_SEEDS:  # p2o first: it writes the dev/train split both sides use
        p2o = worker("gepa_bench.py", "p2o", "--seed", seed)
        lib = worker("gepa_bench.py", "gepa-lib", "--seed", seed)
        runs.append((seed, p2o, lib, gepa_bench.time_to(p2o["curve"], lib["coverage"])))
    covered = all(p["coverage"] >= g["coverage"] for _, p, g, _ in runs)
    reached = [r for *_, r in runs if r is not None]
    p2o_s = sum(reached) / len(reached) if len(reached) == len(runs) else float("inf")
    lib_s = sum(g["wall_s"] for _, _, g, _ in runs) / len(runs)
    ratio = lib_s / p2o_s
    per_seed = "; ".join(
        f"seed {s}: dev coverage p2o {p['coverage']:.3f} vs gepa {g['coverage']:.3f}, p2o reached gepa's final "
        f"coverage after {'never' if r is None else f'{r:.1f} s'}; full budget p2o {p['wall_s']:.1f} s "
        f"({p['spent']} rollouts, {p['iterations']} iterations) vs gepa {g['wall_s']:.1f} s ({g['spent']} metric "
        f"calls, {g['engine_calls']} engine calls)" for s, p, g, r in runs)
    return Figure(
        "gepa-vs-gepa-lib",
        round(p2o_s, 1),
        round(lib_s, 1),
        "s: p2o to reach gepa.optimize's final dev coverage vs gepa.optimize's whole run",
        round(ratio, 2),
        "coverage ≥ gepa's in ≤ 1/3 of its wall-clock",
        covered and ratio >= 3,
        notes=(
            f"toy world seed {gepa_bench.WORLD_SEED} ({'built in this run' if prep['built'] else 'reused'}; "
            f"trigger strength {gepa_bench.TRIGGER_STRENGTH}, {gepa_bench.PRETRAIN_STEPS} pretraining steps), hard set "
            f"of {prep['n_hard']} problems mined from the plain prompt (K=6, T=0.6, mean reward < 0.2); p2o run_gepa "
            f"(W={gepa_bench.WIDTH}) vs gepa.optimize {gepa_version()} through a GEPAAdapter around the same hf engine "
            f"(greedy, ≤{gepa_bench.MAX_NEW_TOKENS} new tokens) and RewardScorer, on p2o's dev/train split "
            f"(dev {gepa_bench.DEV_SIZE}), minibatch {gepa_bench.MINIBATCH}, budget {gepa_bench.BUDGET} rollouts "
            "(gepa max_metric_calls), empty seed template on both. The toy reflector is gepa's "
            "custom_candidate_proposer: each call builds one p2o ReflectionRequest (parent text + the minibatch's "
            "problem, response, extracted answer, correctness, gold, from make_reflective_dataset) and returns its "
            "child (the parent when it gives none); gepa asks for one child per iteration, so the reflector's "
            "within-batch tabu and recombination only work on p2o's side (W parents per call). Wall-clock of the "
            "search only, start-up excluded on both. Ratio = gepa's wall-clock / p2o's time to reach gepa's final "
            f"coverage, {'means over seeds ' if len(GEPA_SEEDS) > 1 else 'seed '}{', '.join(GEPA_SEEDS)}. "
            f"{per_seed}. Load {load0}→{setting.load()}."
        ),
    )


def gepa_version() -> str:
    from importlib.metadata import version

    return version("gepa")


# What the note says when the share misses its target; the figures in it come from the measurement.
LOOP_MISS = (" Misses 10%. The rest is mostly fixed cost, start-up and three checkpoints, on a {steps}-step run of "
             "{wall:.0f} s whose training takes {train:.0f} s; a longer run amortises it. Closing it on this run means "
             "overlapping the start-up (torch and transformers imports, the reward workers' math-verify imports) "
             "with model loading, and writing checkpoints in the background.")


def loop_overhead() -> Figure:
    load0 = setting.load()
    out = worker("loop_bench.py")
    share = out["share"]
    return Figure(
        "loop-overhead",
        round(out["overhead_s"], 1),
        round(out["wall_s"], 1),
        "s outside generation, training and GEPA vs p2o run's wall-clock (ratio = share)",
        round(share, 3),
        "≤ 10% outside generation and training",
        share <= 0.10,
        notes=(
            f"p2o run on the toy world (the toy run config's settings without evaluation; 64 sampled problems, 2 "
            f"epochs: {out['steps']} RL steps of 32 × K=6 and one GEPA phase of {out['gepa_iterations']} metric "
            f"rows) timed from launch to exit: {out['wall_s']:.1f} s; generation {out['gen']:.1f} s (Σ timing/gen), "
            f"training {out['train']:.1f} s (Σ timing/step), GEPA {out['gepa']:.1f} s (timing/gepa_phase: seed "
            f"scoring, {out['gepa_iterations_s']:.1f} s of iterations, assignment); the rest, "
            f"{out['overhead_s']:.1f} s, is overhead: reward {out['reward']:.1f} s, rollout/hard-set writes "
            f"{out['io']:.2f} s, and start-up (imports, model and engine load, reward workers) and checkpoints. "
            f"Load {load0}→{setting.load()}."
            + ("" if share <= 0.10 else LOOP_MISS.format(steps=out["steps"], wall=out["wall_s"], train=out["train"]))
        ),
    )


FIGURES = {"rl-step": rl_step, "train": train_tokens, "generation": generation, "reward": reward,
           "vllm": generation_vllm, "gepa": gepa_vs_lib, "loop": loop_overhead}


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
    started, load0 = time.perf_counter(), setting.load()
    setting.model_dir()
    for name in args.only or FIGURES:
        figure_started = time.perf_counter()
        result = FIGURES[name]()
        setting.write_figures(result if isinstance(result, list) else [result])
        print(f"bench: {name} done in {time.perf_counter() - figure_started:.0f} s (load {setting.load()})", flush=True)
    rows = json.loads(setting.RESULTS.read_text())
    text = (
        f"# p2o benchmarks\n\nMachine: {setting.machine()}. Written by `make bench` "
        "(benchmarks/bench.py); every ratio is p2o against its baseline measured in the same run. "
        f"This run of bench.py ({', '.join(args.only or FIGURES)}): {(time.perf_counter() - started) / 60:.1f} min, "
        f"1-minute load {load0} before, {setting.load()} after.\n\n" + table(rows) + "\n"
    )
    (HERE / "RESULTS.md").write_text(text)
    print(table(rows))


if __name__ == "__main__":
    main()
