"""GEPA on a toy world's hard set: p2o's ``run_gepa`` vs the ``gepa`` library's ``gepa.optimize``.

    python benchmarks/gepa_bench.py prepare            # the world and its hard set (once)
    python benchmarks/gepa_bench.py p2o --seed S       # p2o's search; writes the dev/train split
    python benchmarks/gepa_bench.py gepa-lib --seed S  # gepa.optimize on the same split

Both sides: the same toy world (seed 1, all-or-nothing; built by ``p2o toy init`` under the work folder, or
P2O_BENCH_WORLD), the same hard set (the plain prompt rolled out K=6 at T=0.6 on the world's
training problems, mined at mean reward < 0.2), the same dev/train split (p2o's, passed to
gepa as valset/trainset), the same hf engine (greedy, ≤ 80 new tokens), the same RewardScorer,
the same toy reflector, minibatch 3 and the same budget in rollouts (gepa: ``max_metric_calls``;
both count one generated completion as one). Wall-clock is the search alone (model and
scorer start-up excluded on both sides). Dev coverage: the fraction of dev problems solved by
at least one template the search scored on dev.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import setting

WORLD_SEED = 1
# The all-or-nothing world (every trigger always switches step-by-step on) learns what the
# figure needs, templates that move a hard set, in 8000 pretraining steps instead of the graded
# world's 12000, which keeps `make bench` within its 30 minutes. (At 6000 steps the graded world
# left both searches at 2 of 32 dev problems: nothing to compare.)
PRETRAIN_STEPS = 8000
TRIGGER_STRENGTH = "1.0"
BUDGET = 600
WIDTH = 4
MINIBATCH = 3
DEV_SIZE = 32
MAX_NEW_TOKENS = 80
OUT = setting.WORK / "gepa"


def world_dir() -> Path:
    import os

    given = os.environ.get("P2O_BENCH_WORLD")
    return Path(given) if given else setting.WORK / f"world-{WORLD_SEED}"


def p2o_cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "p2o_cli", *args], check=True, stdout=subprocess.DEVNULL)


def prepare() -> dict[str, Any]:
    """Build (or reuse) the world, roll out its plain prompt and mine the hard set."""
    world = world_dir()
    started = time.perf_counter()
    built = False
    if not (world / "world.json").is_file():
        p2o_cli("toy", "init", "--out", str(world), "--seed", str(WORLD_SEED), "--threads", "1", "--pretrain-steps",
                str(PRETRAIN_STEPS), "--trigger-strength", TRIGGER_STRENGTH, "--no-measure", "--force")
        built = True
    world_s = time.perf_counter() - started
    OUT.mkdir(parents=True, exist_ok=True)
    hard = OUT / "hard.jsonl"
    if not hard.is_file() or built:
        rollouts = OUT / "plain-rollouts.jsonl"
        p2o_cli("rollout", "--model", str(world / "model"), "--data", str(world / "train.jsonl"), "--k", "6",
                "--temperature", "0.6", "--max-new-tokens", str(MAX_NEW_TOKENS), "--gen-batch-size", "192",
                "--out", str(rollouts))
        p2o_cli("mine-hard", "--rollouts", str(rollouts), "--out", str(hard))
    n_hard = sum(1 for _ in hard.open())
    return {"world": str(world), "built": built, "world_s": world_s, "hard": str(hard), "n_hard": n_hard}


def _setup() -> tuple[list[Any], Any, Any]:
    from p2o_cli.engines import EngineConfig, open_engine
    from p2o_cli.files.records import Hard, read_records
    from p2o_cli.reward.config import RewardConfig
    from p2o_cli.reward.pool import open_scorer

    hard = read_records(OUT / "hard.jsonl", Hard)
    engine = open_engine(str(world_dir() / "model"), EngineConfig(engine="hf", device="cpu", gen_batch_size=192))
    return hard, engine, open_scorer(RewardConfig(reward_timeout=2.0))


def coverage(scores_by_dev_id: list[dict[str, float]]) -> float:
    """Fraction of dev ids that some scored template solves."""
    dev = set().union(*(s.keys() for s in scores_by_dev_id))
    solved = {i for s in scores_by_dev_id for i, v in s.items() if v > 0}
    return len(solved) / len(dev) if dev else 0.0


def run_p2o(seed: int) -> dict[str, Any]:
    from p2o_cli.gepa.config import GepaConfig
    from p2o_cli.gepa.pareto import dev_coverage
    from p2o_cli.gepa.search import run_gepa
    from p2o_cli.toy.reflector import ToyReflector

    hard, engine, scorer = _setup()
    cfg = GepaConfig(width=WIDTH, minibatch=MINIBATCH, dev_size=DEV_SIZE, budget=BUDGET, seed=seed,
                     gepa_max_new_tokens=MAX_NEW_TOKENS)
    curve: list[tuple[float, float]] = []  # (seconds since the search began, dev coverage so far)

    def on_iteration(progress: Any) -> None:
        curve.append((time.perf_counter() - start, dev_coverage(progress.templates)))

    with scorer:
        start = time.perf_counter()
        result = run_gepa(hard, engine, engine.tokenizer, ToyReflector(seed=seed), scorer, cfg,
                          on_iteration=on_iteration)
        wall = time.perf_counter() - start
    (OUT / f"split-{seed}.json").write_text(json.dumps({"dev_ids": result.dev_ids, "train_ids": result.train_ids}))
    scored = [dict(zip(t.dev_ids, t.dev_scores)) for t in result.templates]
    return {"wall_s": wall, "coverage": coverage(scored), "spent": result.spent, "iterations": result.iterations,
            "templates": len(result.templates), "curve": curve}


class ToyAdapter:
    """gepa's ``GEPAAdapter`` around p2o's engine and scorer: one component, the template text."""

    # gepa reads this optional attribute even when a custom proposer is given (0.1.4).
    propose_new_texts = None

    def __init__(self, by_id: dict[str, Any], engine: Any, scorer: Any, dev_ids: list[str]):
        from p2o_cli.data.prompts import PromptConfig

        self.by_id, self.engine, self.scorer, self.prompt = by_id, engine, scorer, PromptConfig()
        self.calls = 0
        self.dev_ids = dev_ids
        self.solved: set[str] = set()  # dev ids some candidate scored on dev has solved
        self.start = time.perf_counter()
        self.curve: list[tuple[float, float]] = []  # (seconds, dev coverage) after each dev scoring

    def evaluate(self, batch: list[str], candidate: dict[str, str], capture_traces: bool = False) -> Any:
        from gepa import EvaluationBatch

        from p2o_cli.data.prompts import render

        self.calls += 1
        problems = [self.by_id[pid] for pid in batch]
        prompts = [render(self.engine.tokenizer, h.problem, candidate["template"], self.prompt) for h in problems]
        outputs = self.engine.generate(prompts, n=1, temperature=0.0, top_p=1.0, max_new_tokens=MAX_NEW_TOKENS,
                                       seed=self.calls)
        responses = [out[0].text for out in outputs]
        results = self.scorer.score(responses, [h.answer for h in problems])
        scores = [float(r.reward) for r in results]
        if len(batch) == len(self.dev_ids) and set(batch) == set(
            self.dev_ids
        ):  # gepa scoring a candidate on the whole valset
            self.solved.update(pid for pid, s in zip(batch, scores) if s > 0)
            self.curve.append((time.perf_counter() - self.start, len(self.solved) / len(self.dev_ids)))
        traces = [{"problem_id": h.id, "problem": h.problem, "response": resp, "pred": r.pred,
                   "correct": r.reward > 0, "gold": h.answer} for h, resp, r in zip(problems, responses, results)]
        return EvaluationBatch(outputs=responses, scores=scores, trajectories=traces if capture_traces else None)

    def make_reflective_dataset(self, candidate: dict[str, str], eval_batch: Any,
                                components_to_update: list[str]) -> dict[str, list[dict[str, Any]]]:
        return {name: list(eval_batch.trajectories or []) for name in components_to_update}


class ToyProposal:
    """The toy reflector as gepa's ``custom_candidate_proposer``: one request per call (gepa proposes
    one child per iteration), built from the reflective dataset exactly as p2o builds its requests."""

    def __init__(self, seed: int):
        from p2o_cli.toy.reflector import ToyReflector

        self.reflector = ToyReflector(seed=seed)
        self.calls = 0

    def __call__(self, candidate: dict[str, str], reflective_dataset: Any,
                 components_to_update: list[str]) -> dict[str, str]:
        from p2o_cli.gepa.reflect import FeedbackRecord, ReflectionRequest

        self.calls += 1
        out = {}
        for name in components_to_update:
            feedback = [FeedbackRecord(**item) for item in reflective_dataset[name]]
            request = ReflectionRequest("", candidate[name], feedback, seed=self.calls, iteration=self.calls)
            child = self.reflector.propose([request])[0]
            # No usable child: gepa's protocol needs a text, so the parent comes back (it cannot
            # beat itself strictly, so it is rejected after its minibatch evaluation).
            out[name] = child if child is not None else candidate[name]
        return out


class Quiet:
    def log(self, message: str) -> None:
        pass


def run_gepa_lib(seed: int) -> dict[str, Any]:
    import gepa

    hard, engine, scorer = _setup()
    split = json.loads((OUT / f"split-{seed}.json").read_text())
    with scorer:
        adapter = ToyAdapter({h.id: h for h in hard}, engine, scorer, split["dev_ids"])
        start = adapter.start = time.perf_counter()
        result = gepa.optimize(
            seed_candidate={"template": ""}, trainset=split["train_ids"], valset=split["dev_ids"], adapter=adapter,
            custom_candidate_proposer=ToyProposal(seed), reflection_minibatch_size=MINIBATCH,
            candidate_selection_strategy="pareto", max_metric_calls=BUDGET, logger=Quiet(), seed=seed,
            display_progress_bar=False, raise_on_exception=True,
        )
        wall = time.perf_counter() - start
    scored = [{split["dev_ids"][int(k)] if isinstance(k, int) else k: v for k, v in s.items()}
              for s in result.val_subscores]
    return {"wall_s": wall, "coverage": coverage(scored), "spent": result.total_metric_calls,
            "candidates": result.num_candidates, "engine_calls": adapter.calls, "curve": adapter.curve}


def time_to(curve: list[list[float]], target: float) -> float | None:
    """Seconds until a search's dev coverage first reached ``target`` (None: never)."""
    return next((t for t, c in curve if c >= target - 1e-12), None)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("side", choices=["prepare", "p2o", "gepa-lib"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from p2o_cli.cli.common import quiet_libraries

    quiet_libraries()
    out = {"prepare": lambda: prepare(), "p2o": lambda: run_p2o(args.seed),
           "gepa-lib": lambda: run_gepa_lib(args.seed)}[args.side]()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
