"""Benchmark evaluation with the paper's protocols (see shared/data/EVAL_PROTOCOL.md).

Sets under 100 problems (AIME24/25, AMC23) are scored as avg@16 at T=0.6: the mean over
problems of each problem's mean accuracy over its 16 samples. The Qwen suite's upstream
``acc`` is only the first sample's column; we average the whole matrix as the paper means.
Larger sets are greedy (one sample, T=0, top_p forced to 1 as the suite does).

Known difference from the Qwen suite: answers are scored with p2o's training reward (the
last ``\\boxed{}`` checked by math-verify). The suite also accepts unboxed answers ("the answer
is X", or the last number in the text) and uses its own ``math_equal``; p2o does not, so a
model that forgets the box scores lower here than there.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from .data import Benchmark, load_benchmark, resolve_bench_names
from .engines import Engine, ProgressFn
from .prompts import PromptConfig, render
from .records import Problem

if TYPE_CHECKING:
    from .reward import RewardScorer

ProgressFactory = Callable[[str, int], AbstractContextManager[ProgressFn]]


@dataclass
class EvalConfig:
    benches: list[str]
    data_dir: str | None = None
    n: int | None = None  # samples per problem; None = the benchmark's protocol
    temperature: float | None = None  # None = the benchmark's protocol
    top_p: float = 1.0  # ignored (1.0) for greedy runs
    max_new_tokens: int = 2048
    seed: int = 0
    limit: int | None = None
    prompt: PromptConfig = field(default_factory=PromptConfig)


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
    temperature = bench.temperature if cfg.temperature is None else cfg.temperature
    if temperature == 0:
        return 1, 0.0, "greedy"  # greedy samples are identical: one is enough
    n = cfg.n or bench.n
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
    top_p = cfg.top_p if temperature > 0 else 1.0
    prompts = [render(tokenizer, p.problem, None, cfg.prompt) for p in problems]
    outputs = engine.generate(
        prompts,
        n=n,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=cfg.max_new_tokens,
        seed=cfg.seed,
        progress=progress,
    )
    flat = [(p, prompt, j, c) for p, prompt, row in zip(problems, prompts, outputs) for j, c in enumerate(row)]
    scores = scorer.score([c.text for _, _, _, c in flat], [p.answer for p, _, _, _ in flat])
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
            "n_tokens": c.n_tokens,
            "finish_reason": c.finish_reason,
        }
        for (p, prompt, j, c), s in zip(flat, scores)
    ]
    # Binary reward: 1 = boxed answer verified equal to the gold.
    correct: dict[str, list[bool]] = {p.id: [] for p in problems}
    for sample in samples:
        correct[sample["id"]].append(sample["reward"] > 0)
    accuracy, pass_k = sample_metrics(list(correct.values()))
    n_samples = max(len(samples), 1)
    result = {
        "accuracy": accuracy,
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
    from .records import RecordError

    loaded: LoadedBenchmarks = []
    for name in resolve_bench_names(cfg.benches):
        try:
            loaded.append(load_benchmark(name, cfg.data_dir, cfg.limit))
        except RecordError as err:
            if cfg.data_dir or os.environ.get("P2O_DATA_DIR"):
                raise
            raise ValueError(
                f"benchmark {name}: {err.message} — give a directory holding {name}.jsonl with --data-dir "
                f"(or P2O_DATA_DIR), or allow access to the Hugging Face hub"
            ) from None
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
    # Load everything first so a bad name fails before any generation.
    if loaded is None:
        loaded = load_benchmarks(cfg)
    benchmarks: dict[str, Any] = {}
    samples: list[dict[str, Any]] = []
    for bench, problems in loaded:
        n = protocol_of(bench, cfg)[0]
        display = progress_factory(f"eval {bench.name}", len(problems) * n) if progress_factory else nullcontext(progress)
        with display as bench_progress:
            result, bench_samples = _score_bench(bench, problems, engine, tokenizer, cfg, scorer, bench_progress)
        benchmarks[bench.name] = result
        samples.extend(bench_samples)
    accuracies = [r["accuracy"] for r in benchmarks.values()]
    results = {
        "benchmarks": benchmarks,
        "average": sum(accuracies) / len(accuracies) if accuracies else 0.0,
        "config": asdict(cfg),
    }
    return results, samples


def results_table(results: dict[str, Any]) -> Table:
    """Benchmark x accuracy, with the unweighted average as the last row."""
    table = Table(title="p2o eval")
    for name, justify in (("Benchmark", "left"), ("Acc %", "right"), ("Problems", "right"),
                          ("Samples", "right"), ("Protocol", "left"), ("Tokens", "right"),
                          ("Trunc %", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for name, r in results["benchmarks"].items():
        protocol = r["protocol"] if r["temperature"] == 0 else f"{r['protocol']} T={r['temperature']:g}"
        table.add_row(name, f"{r['accuracy']:.1f}", str(r["n_problems"]), str(r["samples_per_problem"]),
                      protocol, f"{r['mean_response_tokens']:.0f}", f"{r['truncation_rate']:.1f}")
    table.add_section()
    table.add_row("Average", f"{results['average']:.1f}", "", "", "", "", "", style="bold")
    return table
