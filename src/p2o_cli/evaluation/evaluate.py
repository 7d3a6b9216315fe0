"""Benchmark evaluation with the paper's protocols (see shared/data/EVAL_PROTOCOL.md).

Sets under 100 problems (AIME24/25, AMC23) are scored as avg@16 at T=0.6: the mean over
problems of each problem's mean accuracy over its 16 samples. The Qwen suite's upstream
``acc`` is only the first sample's column; we average the whole matrix as the paper means.
Larger sets are greedy (one sample, T=0, top_p forced to 1 as the suite does).

Two graders (``EvalConfig.grader``): ``strict`` is p2o's training reward (the last
``\\boxed{}`` checked by math-verify); ``qwen`` reads answers as the Qwen suite does (unboxed
"the answer is X" and the last number count too) and still judges with math-verify, not with
the suite's ``math_equal``. Every number in results.json names its grader.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Config, option, section, seed_option
from ..data.prompts import PromptConfig, render
from ..engines import Engine, ProgressFn
from ..errors import P2OError, RecordError
from ..files.faults import fault
from ..files.records import Problem, problem_fields
from ..reward.values import solved
from ..reward.verify import GRADERS, check_grader
from .benchmarks import SAMPLE_TEMPERATURE, SAMPLES, SMALL_BENCH, Benchmark, load_benchmark, resolve_bench_names

if TYPE_CHECKING:
    from ..reward.pool import RewardScorer

ProgressFactory = Callable[[str, int], AbstractContextManager[ProgressFn]]


# The paper's protocol where p2o eval's defaults differ from it: the Qwen suite's answer reading
# and the paper's response budget (its training limit: it states no separate one for evaluation).
# Its n and temperature are each benchmark's own protocol (avg@16 at T=0.6 under 100 problems).
PAPER_MAX_NEW_TOKENS = 12_288
PAPER_PROTOCOL: dict[str, Any] = {"grader": "qwen", "eval_max_new_tokens": PAPER_MAX_NEW_TOKENS}


@dataclass
class EvalConfig(Config):
    """Benchmark evaluation: which benchmarks, and any override of their protocols."""

    PANEL = "Evaluation"

    bench: list[str] = option(default_factory=list, metavar="NAME", unset="none",
                              help="Benchmark name (repeatable); 'all' = the six.")
    data_dir: str | None = option(None, envvar="P2O_DATA_DIR", metavar="DIR", unset="the Hugging Face hub",
                                  help="Directory of local benchmark files (NAME.jsonl).")
    eval_n: int | None = option(None, min=1, help="Samples per eval problem.",
                                unset=f"the benchmark's: {SAMPLES} under {SMALL_BENCH} problems, else 1")
    eval_temperature: float | None = option(None, min=0.0, help="Eval temperature.",
                                            unset=f"the benchmark's: {SAMPLE_TEMPERATURE:g} under {SMALL_BENCH} "
                                                  "problems, else 0 (greedy)")
    eval_top_p: float = option(1.0, above=0.0, max=1.0, help="Eval nucleus mass (ignored for greedy protocols).")
    eval_max_new_tokens: int = option(2048, min=1, follows="max_new_tokens", help="Eval response limit.")
    eval_limit: int | None = option(None, min=1, unset="all", help="First N problems of each benchmark.")
    grader: str = option("strict", choices=GRADERS, help="strict (the last \\boxed{}, the training reward) or qwen "
                                                         "(the Qwen2.5-Math suite's answer extraction).")
    seed: int = seed_option()
    prompt: PromptConfig = section(PromptConfig, shared=True)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct: 1 - C(n-c, k) / C(n, k)."""
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:  # every k-subset holds a correct sample
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def sample_metrics(correct: Sequence[Sequence[bool]]) -> tuple[float, dict[str, float]]:
    """Accuracy % (mean over problems of the mean over samples) and pass@k % for k = 1, 2, 4 .. n."""
    rows = list(correct)
    if not rows:
        return 0.0, {}
    n = min(len(row) for row in rows)
    accuracy = 100 * sum(sum(row) / len(row) if row else 0.0 for row in rows) / len(rows)
    ks = [2**i for i in range(n.bit_length())]
    pass_k = {f"pass@{k}": 100 * sum(pass_at_k(len(row), sum(row), k) for row in rows) / len(rows) for k in ks}
    return accuracy, pass_k


def protocol_of(bench: Benchmark, cfg: EvalConfig) -> tuple[int, float, str]:
    """(samples per problem, temperature, label) after the config's overrides."""
    temperature = bench.temperature if cfg.eval_temperature is None else cfg.eval_temperature
    if temperature == 0:
        return 1, 0.0, "greedy"  # greedy samples are identical: one is enough
    n = cfg.eval_n or bench.n
    return n, temperature, f"avg@{n}"


def _score_bench(
    bench: Benchmark,
    problems: Sequence[Problem],
    engine: Engine,
    tokenizer: Any,
    cfg: EvalConfig,
    scorer: RewardScorer,
    progress: ProgressFn | None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    n, temperature, label = protocol_of(bench, cfg)
    top_p = cfg.eval_top_p if temperature > 0 else 1.0
    prompts = [render(tokenizer, p.problem, None, cfg.prompt) for p in problems]
    outputs = engine.generate(
        prompts,
        n=n,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=cfg.eval_max_new_tokens,
        seed=cfg.seed,
        progress=progress,
    )
    fault("eval")  # reliability tests: killed mid-eval
    flat = [(p, prompt, j, c) for p, prompt, row in zip(problems, prompts, outputs) for j, c in enumerate(row)]
    fields = {p.id: problem_fields(p) for p in problems}
    scores = scorer.score([c.text for _, _, _, c in flat], [fields[p.id] for p, _, _, _ in flat],
                          grader=cfg.grader, bench=bench.name)
    samples = [
        {
            "schema": "eval-sample@1",
            "bench": bench.name,
            "id": p.id,
            "sample": j,
            "prompt": prompt,
            "response": c.text,
            "pred": s.pred,
            "answer": p.answer,
            "reward": s.reward,
            **({"rewards": s.components} if s.components else {}),
            "grader": cfg.grader,
            "n_tokens": c.n_tokens,
            "finish_reason": c.finish_reason,
        }
        for (p, prompt, j, c), s in zip(flat, scores)
    ]
    # Correct = full marks: for math, the grader's answer verified equal to the gold.
    correct: dict[str, list[bool]] = {p.id: [] for p in problems}
    for sample in samples:
        correct[sample["id"]].append(solved(sample["reward"]))
    accuracy, pass_k = sample_metrics(list(correct.values()))
    n_samples = max(len(samples), 1)
    result = {
        "accuracy": accuracy,
        "grader": cfg.grader,
        "n_problems": len(problems),
        "samples_per_problem": n,
        "temperature": temperature,
        "top_p": top_p,
        "protocol": label,
        "pass@k": pass_k,
        "mean_response_tokens": sum(s["n_tokens"] for s in samples) / n_samples,
        "truncation_rate": 100 * sum(s["finish_reason"] == "length" for s in samples) / n_samples,
        # load_benchmark gives the absolute path of a local file; else the hub copy was read.
        "source": bench.local_file if Path(bench.local_file).is_absolute() else bench.hub_id,
    }
    return result, samples


LoadedBenchmarks = list[tuple[Benchmark, list[Problem]]]


def load_benchmarks(cfg: EvalConfig) -> LoadedBenchmarks:
    """Every benchmark of ``cfg`` with its problems — call it before any model loads.

    A benchmark that cannot be read fails here, in seconds, with the way out: a hub copy that
    cannot be fetched (offline, unreachable) points at ``--data-dir`` / ``P2O_DATA_DIR``.
    """

    loaded: LoadedBenchmarks = []
    for name in resolve_bench_names(cfg.bench):
        try:
            loaded.append(load_benchmark(name, cfg.data_dir, cfg.eval_limit))
        except RecordError as err:
            if cfg.data_dir or os.environ.get("P2O_DATA_DIR"):
                raise
            raise P2OError(
                f"benchmark {name}: {err.message} — give a directory holding {name}.jsonl with --data-dir "
                f"(or P2O_DATA_DIR), or allow access to the Hugging Face hub"
            ) from None
    for bench, problems in loaded:
        if not problems:  # it would enter the average as 0.0
            raise P2OError(f"benchmark {bench.name}: no problems to evaluate")
    return loaded


def evaluate(
    engine: Engine,
    tokenizer: Any,
    cfg: EvalConfig,
    scorer: RewardScorer,
    progress: ProgressFn | None = None,
    progress_factory: ProgressFactory | None = None,
    loaded: LoadedBenchmarks | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Evaluate every benchmark in ``cfg``; return (results, per-sample dicts).

    Percentages are 0-100. ``progress`` receives every benchmark's completions;
    ``progress_factory(description, total)`` instead opens one progress display per benchmark.
    ``loaded`` is :func:`load_benchmarks`'s answer when the caller checked them already.
    """

    check_grader(cfg.grader)
    # Load everything first so a bad name fails before any generation.
    if loaded is None:
        loaded = load_benchmarks(cfg)
    benchmarks: dict[str, Any] = {}
    samples: list[dict[str, Any]] = []
    for bench, problems in loaded:
        n = protocol_of(bench, cfg)[0]
        display = (
            progress_factory(f"eval {bench.name}", len(problems) * n) if progress_factory else nullcontext(progress)
        )
        with display as bench_progress:
            result, bench_samples = _score_bench(bench, problems, engine, tokenizer, cfg, scorer, bench_progress)
        benchmarks[bench.name] = result
        samples.extend(bench_samples)
    accuracies = [r["accuracy"] for r in benchmarks.values()]
    results = {
        "benchmarks": benchmarks,
        "average": sum(accuracies) / len(accuracies) if accuracies else 0.0,
        "grader": cfg.grader,
        "config": asdict(cfg),
    }
    return results, samples


def results_scores(results: dict[str, Any]) -> dict[str, float]:
    """Benchmark name -> accuracy %, from ``evaluate``'s results."""
    return {name: r["accuracy"] for name, r in results["benchmarks"].items()}
