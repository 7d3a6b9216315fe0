"""``p2o eval``: a checkpoint on benchmarks, each with its paper protocol."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Config, model_option, option, section
from ..engines.config import RUN_ONLY, EngineConfig
from ..evaluation.evaluate import PAPER_MAX_NEW_TOKENS, PAPER_PROTOCOL, EvalConfig
from ..reward.config import RewardConfig
from .app import app
from .options import command


@dataclass
class EvalJob(Config):
    model: str = model_option()
    out: str = option("results.json", metavar="PATH", help="results.json; per-sample JSONL is written beside it.")
    compare: str | None = option(None, choices=("paper",), unset="none",
                                 help="paper: print the P²O paper's published figures beside yours (with a warning "
                                      "where your protocol differs from the paper's).")
    protocol: str | None = option(None, choices=("paper",), unset="each benchmark's own, with the options below",
                                  help="paper: the paper's protocol: the qwen grader, "
                                       f"{PAPER_MAX_NEW_TOKENS:,} response tokens, each benchmark's n and "
                                       "temperature (options given still override it).")
    eval: EvalConfig = section(EvalConfig)
    engine: EngineConfig = section(EngineConfig, exclude=RUN_ONLY)
    reward: RewardConfig = section(RewardConfig)


def protocol_layer(above: Mapping[str, Any]) -> dict[str, Any]:
    """``--protocol paper``: the paper's settings, under the config file and the flags."""
    return dict(PAPER_PROTOCOL) if above.get("protocol") == "paper" else {}


@command(app, "eval", EvalJob, base=protocol_layer)
def eval_command(job: EvalJob) -> None:
    """Evaluate a checkpoint with each benchmark's protocol (avg@16 at T=0.6 under 100 problems, else greedy)."""
    from ..engines import open_engine
    from ..errors import UsageError
    from ..evaluation.evaluate import evaluate, load_benchmarks, results_scores
    from ..evaluation.paper import paper_table, protocol_differences
    from ..files.outputs import check_outputs
    from ..files.records import write_json, write_records
    from ..monitor.progress import console, generation_progress, warn
    from ..reward.pool import open_scorer
    from .common import quiet_libraries, reward_note, samples_path
    from .display import results_table

    if not job.eval.bench:
        raise UsageError("missing --bench (a benchmark name, or all)")
    benchmarks = sorted(Path(job.eval.data_dir).glob("*.jsonl")) if job.eval.data_dir else []
    check_outputs({"--out": (job.out, "file"), "--out's samples": (samples_path(job.out), "file")},
                  {"--model": job.model, "--data-dir": benchmarks})
    loaded = load_benchmarks(job.eval)  # before the model: a missing benchmark fails in seconds
    quiet_libraries()
    engine = open_engine(job.model, job.engine)
    with open_scorer(job.reward) as scorer:
        results, samples = evaluate(engine, engine.tokenizer, job.eval, scorer, progress_factory=generation_progress,
                                    loaded=loaded)
    results["model"] = job.model
    results["reward"] = {"rewards": job.reward.reward, "weights": job.reward.weights(), **scorer.counters()}
    write_records(samples_path(job.out), samples)
    write_json(job.out, results)
    console.print(results_table(results))
    if note := reward_note(scorer.counters()):
        console.print(note.removeprefix("; "), highlight=False)
    if job.compare:
        differences = protocol_differences(job.eval)
        if differences:
            warn(f"--compare paper: this evaluation differs from the paper's protocol ({'; '.join(differences)}), "
                 "so its Δ compares unlike numbers; --protocol paper evaluates as the paper did")
        console.print(paper_table({f"this run ({job.eval.grader})": results_scores(results)}, differences))
