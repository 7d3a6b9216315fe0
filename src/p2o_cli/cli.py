"""The ``p2o`` command line: one thin function per command (parse, call, write)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

app = typer.Typer(
    name="p2o",
    help="P²O: joint policy and prompt optimization for RL on reasoning LLMs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_BAD_INPUT = 2


class UsageError(Exception):
    """A problem with what the user asked for (exit status 2, one line)."""


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn bad input into ``p2o: error: …`` on stderr and exit status 2, never a traceback."""
    from .records import RecordError

    try:
        yield
    except (RecordError, UsageError, ValueError, FileNotFoundError, KeyError) as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        typer.echo(f"p2o: error: {message}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except OSError as err:
        typer.echo(f"p2o: error: {err}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None


def quiet_libraries() -> None:
    """Keep transformers' download/loading bars out of pipelines."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


# ---------------------------------------------------------------- shared options

ModelOpt = Annotated[str, typer.Option("--model", help="Model directory (Hugging Face layout) or hub id.")]
EngineOpt = Annotated[str, typer.Option("--engine", help="Inference engine: hf (transformers).")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:1 …")]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Sequences per generate call (hf engine).")]
TemperatureOpt = Annotated[float, typer.Option("--temperature", min=0.0, help="Sampling temperature; 0 = greedy.")]
TopPOpt = Annotated[float, typer.Option("--top-p", min=0.0, max=1.0, help="Nucleus sampling mass.")]
MaxNewOpt = Annotated[int, typer.Option("--max-new-tokens", min=1, help="Longest response, in tokens.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed.")]
InstructionOpt = Annotated[
    Optional[str], typer.Option("--instruction", help="Answer-format instruction appended to each question.")
]
PositionOpt = Annotated[
    str, typer.Option("--template-position", help="Where a template goes: user-prefix, user-suffix or system.")
]
SystemOpt = Annotated[Optional[str], typer.Option("--system-prompt", help="System message (none by default).")]
ThinkingOpt = Annotated[
    bool,
    typer.Option("--enable-thinking/--no-enable-thinking", help="Qwen3 thinking mode, same for x and x̃."),
]
RewardTimeoutOpt = Annotated[float, typer.Option("--reward-timeout", min=0.1, help="Seconds per answer check.")]
StrictOpt = Annotated[bool, typer.Option("--strict-format", help="Reward only responses with exactly one \\boxed{}.")]


def prompt_config(instruction: str | None, position: str, system_prompt: str | None, thinking: bool) -> Any:
    from .prompts import DEFAULT_INSTRUCTION, PromptConfig

    return PromptConfig(
        instruction=DEFAULT_INSTRUCTION if instruction is None else instruction,
        position=position,
        system_prompt=system_prompt,
        enable_thinking=thinking,
    )


def open_engine(engine: str, model: str, device: str, batch_size: int) -> Any:
    from .engines import load_engine

    if not Path(model).exists() and (model.startswith((".", "/")) or model.count("/") != 1):
        raise UsageError(f"{model}: no such model directory")
    return load_engine(engine, model, device=device, batch_size=batch_size)


def policy_version_of(model: str) -> int:
    """The training step a checkpoint was saved at (0 for a base model)."""
    state = Path(model) / "trainer_state.json"
    if state.is_file():
        import orjson

        return int(orjson.loads(state.read_bytes()).get("global_step", 0))
    return 0


# ---------------------------------------------------------------- commands


@app.command()
def rollout(
    model: ModelOpt,
    data: Annotated[str, typer.Option("--data", help="Problems: JSONL/JSON/parquet file, hub id, or - (problem records on stdin).")],
    out: Annotated[str, typer.Option("--out", help="Rollouts JSONL (- = stdout).")] = "-",
    k: Annotated[int, typer.Option("--k", min=1, help="Rollouts per problem.")] = 6,
    temperature: TemperatureOpt = 0.6,
    top_p: TopPOpt = 1.0,
    max_new_tokens: MaxNewOpt = 1024,
    seed: SeedOpt = 0,
    assign: Annotated[Optional[str], typer.Option("--assign", help="assignments.jsonl from p2o assign.")] = None,
    templates: Annotated[Optional[str], typer.Option("--templates", help="templates.jsonl from p2o gepa.")] = None,
    problem_field: Annotated[Optional[str], typer.Option("--problem-field", help="Field holding the question (dotted paths allowed).")] = None,
    answer_field: Annotated[Optional[str], typer.Option("--answer-field", help="Field holding the gold answer (dotted paths allowed).")] = None,
    split: Annotated[str, typer.Option("--split", help="Split, for a hub dataset.")] = "train",
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Use only the first N problems.")] = None,
    policy_version: Annotated[Optional[int], typer.Option("--policy-version", help="Recorded in each rollout (default: the checkpoint's step).")] = None,
    engine: EngineOpt = "hf",
    device: DeviceOpt = "auto",
    batch_size: BatchOpt = 64,
    instruction: InstructionOpt = None,
    template_position: PositionOpt = "user-prefix",
    system_prompt: SystemOpt = None,
    enable_thinking: ThinkingOpt = False,
    reward_timeout: RewardTimeoutOpt = 5.0,
    strict_format: StrictOpt = False,
) -> None:
    """K rollouts per problem, scored; assigned problems get one template per rollout."""
    with user_errors():
        from .data import load_problems
        from .progress import generation_progress
        from .records import STDIO, Assignment, Problem, Template, read_records, write_records
        from .reward import RewardScorer
        from .rollout import RolloutConfig, check_assignments, generate_rollouts

        if (assign is None) != (templates is None):
            raise UsageError("--assign and --templates go together")
        cfg = RolloutConfig(
            k=k,
            temperature=temperature,
            top_p=top_p,
            max_new_tokens=max_new_tokens,
            seed=seed,
            policy_version=policy_version if policy_version is not None else policy_version_of(model),
            prompt=prompt_config(instruction, template_position, system_prompt, enable_thinking),
        )
        if data == STDIO:
            problems = read_records(STDIO, Problem)
        else:
            problems = load_problems(data, problem_field=problem_field, answer_field=answer_field, split=split)
        problems = problems[:limit] if limit else problems
        assignments = {a.id: a for a in read_records(assign, Assignment)} if assign else {}
        template_map = {t.template_id: t for t in read_records(templates, Template)} if templates else {}
        check_assignments(assignments, template_map)
        quiet_libraries()
        eng = open_engine(engine, model, device, batch_size)
        with RewardScorer(timeout_s=reward_timeout, strict_format=strict_format) as scorer:
            with generation_progress("rollout", len(problems) * cfg.k) as progress:
                rollouts = generate_rollouts(
                    eng, eng.tokenizer, problems, cfg, scorer, assignments, template_map, progress
                )
        write_records(out, rollouts)
        mean = sum(r.reward for r in rollouts) / max(len(rollouts), 1)
        typer.echo(f"{len(rollouts)} rollouts for {len(problems)} problems, mean reward {mean:.3f}", err=True)


@app.command("mine-hard")
def mine_hard(
    rollouts: Annotated[str, typer.Option("--rollouts", help="Rollouts JSONL (- = stdin).")] = "-",
    out: Annotated[str, typer.Option("--out", help="Hard problems JSONL (- = stdout).")] = "-",
    tau: Annotated[float, typer.Option("--tau", min=0.0, help="Hard if mean reward < tau (0.2 = at most 1 of 6).")] = 0.2,
    max_failures: Annotated[Optional[int], typer.Option("--max-failures", min=0, help="Failed responses kept per problem.")] = None,
) -> None:
    """Problems whose mean reward is below τ, with their failed responses."""
    with user_errors():
        from .mining import mine_hard as mine
        from .records import Rollout, read_records, write_records

        records = read_records(rollouts, Rollout)
        hard = mine(records, tau=tau, max_failures=max_failures)
        write_records(out, hard)
        n_problems = len({r.id for r in records})
        typer.echo(f"{len(hard)} of {n_problems} problems are hard (mean reward < {tau})", err=True)


@app.command("eval")
def eval_command(
    model: ModelOpt,
    bench: Annotated[list[str], typer.Option("--bench", help="Benchmark name (repeatable); 'all' = the six.")],
    out: Annotated[str, typer.Option("--out", help="results.json; per-sample JSONL is written beside it.")] = "results.json",
    data_dir: Annotated[Optional[str], typer.Option("--data-dir", envvar="P2O_DATA_DIR", help="Local benchmark files (else the hub).")] = None,
    n: Annotated[Optional[int], typer.Option("--n", min=1, help="Samples per problem (default: the benchmark's protocol).")] = None,
    temperature: Annotated[Optional[float], typer.Option("--temperature", min=0.0, help="Override the protocol's temperature.")] = None,
    top_p: TopPOpt = 1.0,
    max_new_tokens: MaxNewOpt = 2048,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="First N problems of each benchmark.")] = None,
    seed: SeedOpt = 0,
    engine: EngineOpt = "hf",
    device: DeviceOpt = "auto",
    batch_size: BatchOpt = 64,
    instruction: InstructionOpt = None,
    system_prompt: SystemOpt = None,
    enable_thinking: ThinkingOpt = False,
    reward_timeout: RewardTimeoutOpt = 5.0,
) -> None:
    """Evaluate a checkpoint with each benchmark's protocol (avg@16 at T=0.6 under 100 problems, else greedy)."""
    with user_errors():
        from .evaluate import EvalConfig, evaluate, results_table
        from .progress import console, generation_progress
        from .records import write_json, write_records
        from .reward import RewardScorer

        cfg = EvalConfig(
            benches=list(bench),
            data_dir=data_dir,
            n=n,
            temperature=temperature,
            top_p=top_p,
            max_new_tokens=max_new_tokens,
            seed=seed,
            limit=limit,
            prompt=prompt_config(instruction, "user-prefix", system_prompt, enable_thinking),
        )
        quiet_libraries()
        eng = open_engine(engine, model, device, batch_size)
        with RewardScorer(timeout_s=reward_timeout) as scorer:
            results, samples = evaluate(eng, eng.tokenizer, cfg, scorer, progress_factory=generation_progress)
        results["model"] = model
        write_records(samples_path(out), samples)
        write_json(out, results)
        console.print(results_table(results))


def samples_path(results_path: str) -> str:
    path = Path(results_path)
    return str(path.with_name(path.stem + ".samples.jsonl"))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
