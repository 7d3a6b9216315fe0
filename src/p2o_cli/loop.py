"""`p2o run`: the alternating P²O loop (Algorithm 1) in one process, with a resumable run directory.

Each epoch: for every batch, roll out K samples per problem (problems that were hard last epoch
get their assigned templates, one per rollout), score them, take one train step (context
distillation happens inside the trainer), and collect the problems whose mean reward is below
τ. At the end of the epoch, if at least ``min_hard`` problems were hard, GEPA evolves templates
on them and the greedy set cover assigns K templates to each for the next epoch.

Run directory::

    config.json            the resolved RunConfig
    metrics.jsonl          one line per train step, per eval and per epoch end
    state.json             where to resume: written with every checkpoint
    epoch-E/rollouts-B.jsonl, hard-B.jsonl   per batch
    epoch-E/hard.jsonl, templates.jsonl, assignments.jsonl, gepa-state.json, gepa-metrics.jsonl
    checkpoints/step-N/    HF model + optimizer + trainer state (the last ``keep_last`` kept)
"""

from __future__ import annotations

import dataclasses
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .data import load_problems
from .engines import Engine
from .mining import mine_hard
from .prompts import PromptConfig
from .records import (
    Assignment,
    Hard,
    Problem,
    Rollout,
    Template,
    iter_json_lines,
    read_records,
    write_json,
    write_records,
)
from .rollout import RolloutConfig, generate_rollouts
from .runs import RunSummary, last_eval, sample_problems


@dataclass
class RunConfig:
    """Every key of a run; each is also a ``p2o run`` flag (``--batch-size`` for ``batch_size``)."""

    model: str = ""
    data: str = ""
    out: str = "runs/p2o"
    name: str | None = None
    # Data.
    problem_field: str | None = None
    answer_field: str | None = None
    limit: int | None = None
    sample: int | None = None  # a seeded random subset (the paper's DeepScaleR-5K: 5,000 rows)
    # Policy phase.
    epochs: int = 5
    batch_size: int = 128
    k: int = 6
    temperature: float = 0.6
    top_p: float = 1.0
    max_new_tokens: int = 12288
    lr: float = 1e-6
    warmup_ratio: float = 0.05
    min_lr_ratio: float = 0.0
    mini_batches: int = 2
    clip_low: float = 0.2
    clip_high: float = 0.2
    dual_clip: float = 3.0
    loss_agg: str = "token-mean"
    max_grad_norm: float = 1.0
    max_tokens_per_micro_batch: int = 16384
    gradient_checkpointing: bool = False
    distill: str = "original"
    template_ratio_mask: str = "0.01,10"
    templated_baseline: str = "group"
    tau: float = 0.2
    # Prompt phase.
    no_gepa: bool = False
    min_hard: int = 100
    reflector: str = "kimi"
    reflector_url: str | None = None
    reflector_model: str | None = None
    reflector_key_env: str | None = None
    width: int = 16
    minibatch: int = 3
    budget: int = 11000
    dev_size: int = 300
    gepa_max_new_tokens: int | None = None
    same_template_in_group: bool = False
    # Evaluation and checkpoints.
    eval_bench: list[str] = field(default_factory=list)
    eval_data_dir: str | None = None
    eval_every: int = 0
    eval_n: int | None = None
    eval_temperature: float | None = None
    eval_max_new_tokens: int | None = None
    save_every: int = 1
    keep_last: int = 2
    # Engine and prompts.
    engine: str = "auto"
    device: str = "auto"
    gen_batch_size: int = 64
    instruction: str | None = None
    template_position: str = "user-prefix"
    enable_thinking: bool = False
    reward_timeout: float = 5.0
    seed: int = 0
    # Tracking: metrics.jsonl always; trackers on top (None: tensorboard when installed).
    report_to: str | None = None
    # vllm engine on the training GPU(s): its share of GPU memory, GPUs per model, and whether
    # it sleeps (frees its memory) while the trainer steps.
    gpu_memory_utilization: float = 0.5
    tensor_parallel_size: int = 1
    vllm_sleep: bool = True
    # Checkpoints: weights dtype (auto = the model config's) and whether the optimizer is kept.
    save_dtype: str = "auto"
    save_optimizer: bool = True
    # LoRA (0 = full fine-tuning).
    lora_r: int = 0
    lora_alpha: float | None = None
    lora_target_modules: str = "all-linear"

    def __post_init__(self) -> None:
        if not self.model or not self.data:
            raise ValueError("a run needs --model and --data (or a --config that sets them)")
        if self.sample is not None and self.sample < 1:
            raise ValueError("--sample must be at least 1")
        for name in ("epochs", "batch_size", "k", "mini_batches", "keep_last"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
        if not 0.0 < self.gpu_memory_utilization <= 1.0 or self.tensor_parallel_size < 1:
            raise ValueError("--gpu-memory-utilization must be in (0, 1] and --tensor-parallel-size >= 1")
        if self.mini_batches > self.batch_size:
            raise ValueError("--mini-batches cannot exceed --batch-size")
        self.train_config(total_steps=1)  # the objective's options fail here, before any loading
        from .tracking import resolve_report_to

        resolve_report_to(self.report_to)  # a tracker that is not installed fails here too

    def prompt_config(self) -> PromptConfig:
        cfg = PromptConfig(position=self.template_position, enable_thinking=self.enable_thinking)
        if self.instruction is not None:
            cfg.instruction = self.instruction
        return cfg

    def train_config(self, total_steps: int) -> Any:
        from .rl.trainer import TrainConfig, parse_ratio_mask

        return TrainConfig(
            lr=self.lr,
            warmup_ratio=self.warmup_ratio,
            total_steps=total_steps,
            min_lr_ratio=self.min_lr_ratio,
            max_grad_norm=self.max_grad_norm,
            mini_batches=self.mini_batches,
            max_tokens_per_micro_batch=self.max_tokens_per_micro_batch,
            gradient_checkpointing=self.gradient_checkpointing,
            distill=self.distill,
            template_ratio_mask=None if self.distill == "none" else parse_ratio_mask(self.template_ratio_mask),
            templated_baseline=self.templated_baseline,
            clip_low=self.clip_low,
            clip_high=self.clip_high,
            dual_clip=self.dual_clip if self.dual_clip > 0 else None,
            loss_agg=self.loss_agg,
            temperature=self.temperature,
            seed=self.seed,
            save_dtype=self.save_dtype,
            save_optimizer=self.save_optimizer,
            lora_r=self.lora_r,
            lora_alpha=self.lora_alpha,
            lora_target_modules=self.lora_target_modules,
        )

    def gepa_config(self, epoch: int) -> Any:
        from .gepa.search import GepaConfig

        return GepaConfig(
            width=self.width,
            minibatch=self.minibatch,
            dev_size=self.dev_size,
            budget=self.budget,
            seed=self.seed * 1000 + epoch,
            eval_max_new_tokens=self.gepa_max_new_tokens or self.max_new_tokens,
            prompt=self.prompt_config(),
        )


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Keys of a TOML file (``[run]`` table or top level), dashes read as underscores."""
    import tomllib

    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: {err}") from None
    table = data.get("run", data)
    known = {f.name for f in dataclasses.fields(RunConfig)}
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in known:
            raise ValueError(f"{path}: unknown key {key!r}")
        out[name] = value
    return out


# ---------------------------------------------------------------- run directory


@dataclass
class RunState:
    epoch: int = 0
    batch: int = 0  # next batch of ``epoch`` to run
    step: int = 0  # train steps done
    checkpoint: str | None = None
    # Templates and assignments in force for ``epoch`` (files in the run dir), if any.
    templates: str | None = None
    assignments: str | None = None
    done: bool = False


class RunDir:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        from .tracking import MetricsLogger

        # Replaced by P2ORun with one that also feeds the trackers.
        self.logger = MetricsLogger(self.metrics)

    def epoch_dir(self, epoch: int) -> Path:
        path = self.root / f"epoch-{epoch}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def epochs(self) -> list[int]:
        """The epochs that have a directory, in order (creates nothing)."""
        numbers = (p.name.removeprefix("epoch-") for p in self.root.glob("epoch-*") if p.is_dir())
        return sorted(int(n) for n in numbers if n.isdigit())

    def read_rollouts(self, epoch: int) -> list[Rollout]:
        """Every rollout of an epoch, in batch order."""
        files = sorted((self.root / f"epoch-{epoch}").glob("rollouts-*.jsonl"))
        return [r for f in files for r in read_records(f, Rollout, unique=False)]

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def state_path(self) -> Path:
        return self.root / "state.json"

    def read_state(self) -> RunState:
        if not self.state_path.is_file():
            raise ValueError(f"{self.root}: nothing to resume (no state.json)")
        return RunState(**orjson.loads(self.state_path.read_bytes()))

    def write_state(self, state: RunState) -> None:
        write_json(self.state_path, dataclasses.asdict(state))

    def log(self, row: dict[str, Any]) -> None:
        self.logger.log(row)

    def truncate_metrics(self, state: RunState) -> None:
        """Drop metric lines written after the checkpoint we resume from (they will be redone)."""
        if not self.metrics.is_file():
            return
        kept = [
            row
            for _, row in iter_json_lines(self.metrics)
            if row.get("training/step", 0) <= state.step and row.get("epoch", 0) <= state.epoch
            and not (row.get("epoch", 0) == state.epoch and "epoch/hard_count" in row)
        ]
        write_records(self.metrics, kept)


# ---------------------------------------------------------------- the loop


Printer = Callable[[str], None]


class P2ORun:
    """Owns the resident trainer, engine, scorer and reflector for one run directory."""

    def __init__(self, cfg: RunConfig, resume: bool = False, printer: Printer = print):
        self.cfg = cfg
        self.dir = RunDir(cfg.out)
        self.say = printer
        if resume:
            self.state = self.dir.read_state()
            self.dir.truncate_metrics(self.state)
        else:
            if self.dir.state_path.exists():
                raise ValueError(f"{cfg.out}: a run already lives here; use --resume {cfg.out} or a new --out")
            self.state = RunState()
            self.dir.root.mkdir(parents=True, exist_ok=True)
        write_json(self.dir.root / "config.json", dataclasses.asdict(cfg))
        from .tracking import open_metrics_logger

        self.dir.logger = open_metrics_logger(self.dir.metrics, cfg.report_to, self.dir.root,
                                              cfg.name or self.dir.root.name, dataclasses.asdict(cfg))
        self.problems = load_problems(cfg.data, problem_field=cfg.problem_field, answer_field=cfg.answer_field,
                                      limit=cfg.limit)
        if not self.problems:
            raise ValueError(f"{cfg.data}: no problems")
        if cfg.sample is not None:
            self.problems = sample_problems(self.problems, cfg.sample, cfg.seed)
        self.batches_per_epoch = -(-len(self.problems) // cfg.batch_size)
        # A finished run resumed with more --epochs continues; one resumed as it was is only reported.
        self.finished = self.state.done and self.state.epoch >= cfg.epochs
        self.state.done = self.finished
        if not self.finished:
            self._open_models()

    # ------------------------------------------------------------ set-up

    def _open_models(self) -> None:
        from .reward import RewardScorer
        from .rl.trainer import PolicyTrainer

        cfg = self.cfg
        start = self.state.checkpoint or cfg.model
        total = cfg.epochs * self.batches_per_epoch
        self.trainer = PolicyTrainer.from_checkpoint(start, cfg.train_config(total))
        self.tokenizer = self.trainer.tokenizer
        self.engine = self._make_engine()
        self.scorer = RewardScorer(timeout_s=cfg.reward_timeout)
        self._reflector: Any = None
        self._in_step = False

    def _make_engine(self) -> Engine:
        from .engines import resolve_engine

        self.engine_name = resolve_engine(self.cfg.engine)
        if self.engine_name == "openai":
            raise ValueError("p2o run trains the policy, so it needs an engine it can update: hf or vllm")
        if self.engine_name == "hf":
            from .engines.hf import HFEngine

            # The engine samples the trainer's own model object: no weight copy after a step
            # (under LoRA, the base model with the adapter layers in it).
            model = self.trainer.model
            return HFEngine(model.get_base_model() if hasattr(model, "peft_config") else model, self.tokenizer,
                            device=str(self.trainer.accelerator.device), batch_size=self.cfg.gen_batch_size)
        from .engines import load_engine
        from .engines.vllm import engine_options

        # vLLM loads the weights it is given as a plain model: the merged ones under LoRA.
        start = self.state.checkpoint or self.cfg.model
        engine = load_engine(self.engine_name, start, device=self.cfg.device, batch_size=self.cfg.gen_batch_size,
                             **engine_options(self.cfg.gpu_memory_utilization, self.cfg.tensor_parallel_size,
                                              self.cfg.vllm_sleep))
        engine.update_weights(self.trainer.policy_state_dict())
        return engine

    def reflector(self) -> Any:
        if self._reflector is None:
            from .gepa.reflect import make_reflector

            engine = tokenizer = None
            if self.cfg.reflector == "self":
                from .engines.hf import HFEngine

                # "self" reflects with the initial policy, kept frozen beside the trained one.
                engine = HFEngine(self.cfg.model, device=self.cfg.device, batch_size=self.cfg.gen_batch_size)
                tokenizer = engine.tokenizer
            self._reflector = make_reflector(
                self.cfg.reflector, url=self.cfg.reflector_url, model=self.cfg.reflector_model,
                key_env=self.cfg.reflector_key_env, engine=engine, tokenizer=tokenizer, seed=self.cfg.seed,
            )
        return self._reflector

    def close(self) -> None:
        if not self.finished:
            self.scorer.close()
            self.engine.close()
        self.dir.logger.close()

    # ------------------------------------------------------------ phases

    def batches(self, epoch: int) -> list[list[Problem]]:
        order = list(self.problems)
        random.Random(self.cfg.seed * 7919 + epoch).shuffle(order)
        size = self.cfg.batch_size
        return [order[i : i + size] for i in range(0, len(order), size)]

    def current_prompts(self) -> tuple[dict[str, Assignment], dict[str, Template]]:
        if not self.state.assignments or not self.state.templates:
            return {}, {}
        assignments = {a.id: a for a in read_records(self.dir.root / self.state.assignments, Assignment)}
        templates = {t.template_id: t for t in read_records(self.dir.root / self.state.templates, Template)}
        return assignments, templates

    def policy_step(self, epoch: int, index: int, batch: list[Problem], assignments: dict[str, Assignment],
                    templates: dict[str, Template]) -> list[Hard]:
        cfg = self.cfg
        t0 = time.perf_counter()
        rollout_cfg = RolloutConfig(
            k=cfg.k, temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens,
            seed=cfg.seed * 100_003 + self.state.step, policy_version=self.state.step, prompt=cfg.prompt_config(),
            model=cfg.model,
        )
        from .progress import generation_progress

        with generation_progress(f"step {self.state.step + 1} rollout", len(batch) * cfg.k, transient=True) as progress:
            rollouts = generate_rollouts(self.engine, self.tokenizer, batch, rollout_cfg, self.scorer, assignments,
                                         templates, progress)
        t1 = time.perf_counter()
        self._in_step = True
        sleep = getattr(self.engine, "sleep", None)
        if sleep is not None:
            sleep(level=2)  # frees the GPU for training when sleep mode is on (weights reloaded below)
        metrics = self.trainer.step(rollouts)
        if self.engine_name != "hf":
            self.engine.update_weights(self.trainer.policy_state_dict())
        self.state.step += 1
        self.state.batch += 1
        self._in_step = False
        hard = mine_hard(rollouts, tau=cfg.tau)
        edir = self.dir.epoch_dir(epoch)
        write_records(edir / f"rollouts-{index:04d}.jsonl", rollouts)
        write_records(edir / f"hard-{index:04d}.jsonl", hard)
        # The trainer counts optimizer updates; the loop's step is one rollout batch.
        row = {**metrics, "actor/optimizer_step": metrics.get("training/step"), "training/step": self.state.step,
               "epoch": epoch, **rollout_metrics(rollouts), "batch/hard_count": len(hard), "timing/rollout": t1 - t0,
               "perf/rollout_tokens_per_s": sum(r.n_tokens for r in rollouts) / max(t1 - t0, 1e-9)}
        self.dir.log(row)
        self.say(
            f"epoch {epoch} step {self.state.step}: reward {row['critic/rewards/mean']:.3f} "
            f"(plain {row['rollout/plain_reward_mean']:.3f}, templated {row['rollout/templated_reward_mean']:.3f}) "
            f"hard {len(hard)}/{len(batch)}  {row['perf/rollout_tokens_per_s']:,.0f} tok/s"
        )
        return hard

    def evaluate(self) -> dict[str, float]:
        from .evaluate import EvalConfig, evaluate

        cfg = self.cfg
        eval_cfg = EvalConfig(
            benches=list(cfg.eval_bench), data_dir=cfg.eval_data_dir, n=cfg.eval_n,
            temperature=cfg.eval_temperature, max_new_tokens=cfg.eval_max_new_tokens or cfg.max_new_tokens,
            seed=cfg.seed, prompt=cfg.prompt_config(),
        )
        from functools import partial

        from .progress import generation_progress

        results, _ = evaluate(self.engine, self.tokenizer, eval_cfg, self.scorer,
                              progress_factory=partial(generation_progress, transient=True))
        scores = {f"eval/{name}/accuracy": r["accuracy"] for name, r in results["benchmarks"].items()}
        self.dir.log({"training/step": self.state.step, "epoch": self.state.epoch, **scores})
        self.say("eval at step {}: {}".format(
            self.state.step, ", ".join(f"{k.split('/')[1]} {v:.1f}%" for k, v in scores.items())))
        return scores

    def prompt_phase(self, epoch: int, hard: list[Hard]) -> None:
        """GEPA + assignment on this epoch's hard set; sets the templates for the next epoch."""
        from .gepa.assign import assign_templates
        from .gepa.pareto import dev_coverage
        from .gepa.search import run_gepa
        from .gepa.view import live_front
        from .progress import interactive

        cfg = self.cfg
        edir = self.dir.epoch_dir(epoch)
        self.say(f"epoch {epoch}: GEPA on {len(hard)} hard problems (budget {cfg.budget} rollouts)")
        with live_front(interactive()) as on_iteration:
            result = run_gepa(hard, self.engine, self.tokenizer, self.reflector(), self.scorer,
                              cfg.gepa_config(epoch), state_path=edir / "gepa-state.json",
                              metrics_path=edir / "gepa-metrics.jsonl", on_iteration=on_iteration, resume=True)
        assigned = assign_templates([h.id for h in hard], result.templates, cfg.k, seed=cfg.seed + epoch,
                                    same_template_in_group=cfg.same_template_in_group,
                                    plain_rewards={h.id: h.rewards for h in hard})
        write_records(edir / "templates.jsonl", result.templates)
        write_records(edir / "assignments.jsonl", assigned.assignments)
        self.state.templates = str((edir / "templates.jsonl").relative_to(self.dir.root))
        self.state.assignments = str((edir / "assignments.jsonl").relative_to(self.dir.root))

        self.dir.log({"epoch": epoch, "training/step": self.state.step, "gepa/templates": len(result.templates),
                      "gepa/cover_size": len(assigned.cover), "gepa/dev_coverage": dev_coverage(result.templates),
                      "gepa/rollouts_spent": result.spent, "gepa/iterations": result.iterations})
        self.say(f"epoch {epoch}: GEPA kept {len(result.templates) - 1} templates, cover {len(assigned.cover)}, "
                 f"dev coverage {dev_coverage(result.templates):.2f}, spent {result.spent} rollouts")

    # ------------------------------------------------------------ checkpoints

    def save(self) -> None:
        ckpt_root = self.dir.root / "checkpoints"
        path = ckpt_root / f"step-{self.state.step}"
        self.trainer.save(path, extra_config={"run": dataclasses.asdict(self.cfg)})
        self.state.checkpoint = str(path)
        self.dir.write_state(self.state)
        steps = sorted((int(p.name.split("-")[1]), p) for p in ckpt_root.glob("step-*") if p.name[5:].isdigit())
        for _, old in steps[: -self.cfg.keep_last]:
            shutil.rmtree(old, ignore_errors=True)

    # ------------------------------------------------------------ main

    def run(self) -> RunSummary:
        cfg = self.cfg
        if self.finished:
            # Nothing left to do: report the run as it ended instead of evaluating it again.
            self.say(f"{self.dir.root}: the run is already finished; nothing to resume")
            return self.summary(last_eval(self.dir.metrics))
        final_eval: dict[str, float] = {}
        if self.state.step == 0 and self.state.batch == 0 and self.state.epoch == 0 and cfg.eval_bench:
            final_eval = self.evaluate()
        try:
            while self.state.epoch < cfg.epochs:
                epoch = self.state.epoch
                assignments, templates = self.current_prompts()
                batches = self.batches(epoch)
                while self.state.batch < len(batches):
                    self.policy_step(epoch, self.state.batch, batches[self.state.batch], assignments, templates)
                    if cfg.eval_bench and cfg.eval_every and self.state.step % cfg.eval_every == 0:
                        final_eval = self.evaluate()
                    if cfg.save_every and self.state.step % cfg.save_every == 0:
                        self.save()
                hard = self.epoch_hard(epoch, len(batches))
                self.dir.log({"epoch": epoch, "training/step": self.state.step, "epoch/hard_count": len(hard)})
                self.say(f"epoch {epoch}: {len(hard)} hard problems")
                self.state.templates = self.state.assignments = None
                # The last epoch's templates would never be rolled out, so it gets no prompt phase.
                if not cfg.no_gepa and epoch + 1 < cfg.epochs and len(hard) >= max(cfg.min_hard, 1):
                    self.prompt_phase(epoch, hard)
                self.state.epoch += 1
                self.state.batch = 0
                self.save()
        except KeyboardInterrupt:
            # Mid-update weights are no resume point: then the last checkpoint is.
            if not self._in_step:
                self.say("interrupted: saving a checkpoint to resume from")
                self.save()
            raise
        if cfg.eval_bench and (not cfg.eval_every or self.state.step % cfg.eval_every):
            final_eval = self.evaluate()
        self.state.done = True
        self.dir.write_state(self.state)
        return self.summary(final_eval)

    def summary(self, final_eval: dict[str, float]) -> RunSummary:
        counts = [row["epoch/hard_count"] for _, row in iter_json_lines(self.dir.metrics) if "epoch/hard_count" in row]
        return RunSummary(self.state.step, self.cfg.epochs, counts, final_eval)

    def epoch_hard(self, epoch: int, n_batches: int) -> list[Hard]:
        edir = self.dir.epoch_dir(epoch)
        hard = [h for b in range(n_batches) for h in read_records(edir / f"hard-{b:04d}.jsonl", Hard)]
        write_records(edir / "hard.jsonl", hard)
        return hard


def rollout_metrics(rollouts: Sequence[Rollout]) -> dict[str, float]:
    """Reward split by plain and templated rollouts: the templates' lift is what GEPA buys."""
    plain = [r.reward for r in rollouts if not r.template]
    templated = [r.reward for r in rollouts if r.template]
    return {
        "rollout/plain_reward_mean": sum(plain) / len(plain) if plain else 0.0,
        "rollout/templated_reward_mean": sum(templated) / len(templated) if templated else 0.0,
        "rollout/templated_frac": len(templated) / max(len(rollouts), 1),
        "rollout/truncated_frac": sum(r.finish_reason == "length" for r in rollouts) / max(len(rollouts), 1),
    }


HELP: dict[str, str] = {
    "model": "Initial policy: model directory or hub id.",
    "data": "Training problems: JSONL/JSON/parquet file or hub id.",
    "out": "Run directory (created).",
    "name": "Run name in reports (default: the directory name).",
    "problem_field": "Field holding the question.",
    "answer_field": "Field holding the gold answer.",
    "limit": "Use only the first N training problems.",
    "sample": "Train on a random N of the problems (seeded by --seed; after --limit).",
    "epochs": "Passes over the training set.",
    "batch_size": "Problems per train step.",
    "k": "Rollouts per problem (the GRPO group).",
    "temperature": "Rollout sampling temperature (also the trainer's logit temperature).",
    "top_p": "Rollout nucleus mass.",
    "max_new_tokens": "Longest rollout response.",
    "lr": "Peak learning rate.",
    "warmup_ratio": "Fraction of all train steps spent warming up.",
    "min_lr_ratio": "Cosine floor as a fraction of --lr.",
    "mini_batches": "Optimizer updates per rollout batch (2 = one-step off-policy).",
    "clip_low": "PPO clip below 1.",
    "clip_high": "PPO clip above 1 (clip-higher when > --clip-low).",
    "dual_clip": "Dual-clip bound for negative advantages (0 = off).",
    "loss_agg": "token-mean, seq-mean-token-mean or seq-mean-token-sum.",
    "max_grad_norm": "Gradient clipping norm.",
    "max_tokens_per_micro_batch": "Token budget of one micro-batch (bounds peak memory).",
    "gradient_checkpointing": "Recompute activations in backward.",
    "distill": "original (gradient on x: context distillation) or none (train on x̃: the ablation).",
    "template_ratio_mask": "LOW,HIGH bounds on π(y|x)/π(y|x̃) per token, or 'none'.",
    "templated_baseline": "Templated groups' advantage baseline: group (the K templated rollouts) or plain (with the rewards that made the problem hard).",
    "tau": "Hard if mean reward < tau (0.2 = at most 1 of 6).",
    "no_gepa": "Skip the prompt phase: the GRPO baseline.",
    "min_hard": "Run GEPA at epoch end only with at least this many hard problems.",
    "reflector": "kimi, openai, self, toy, or a custom endpoint with --reflector-url.",
    "reflector_url": "OpenAI-compatible base URL of the reflection model.",
    "reflector_model": "Model name at the reflector endpoint.",
    "reflector_key_env": "Environment variable holding the reflector's API key.",
    "width": "W: parents per GEPA iteration.",
    "minibatch": "B: hard-train problems per proposal.",
    "budget": "GEPA budget in rollouts.",
    "dev_size": "GEPA dev-set size (half the hard set when smaller than 1.5x).",
    "gepa_max_new_tokens": "Response limit in GEPA evaluations (default --max-new-tokens).",
    "same_template_in_group": "One template for all K rollouts of a problem (ablation).",
    "eval_bench": "Benchmark to evaluate without templates (repeatable).",
    "eval_data_dir": "Local benchmark directory (else P2O_DATA_DIR, else the hub).",
    "eval_every": "Evaluate every N train steps (0 = start and end only).",
    "eval_n": "Samples per eval problem (default: the benchmark's protocol).",
    "eval_temperature": "Eval temperature (default: the benchmark's protocol).",
    "eval_max_new_tokens": "Eval response limit (default --max-new-tokens).",
    "save_every": "Checkpoint every N train steps (and at each epoch end).",
    "keep_last": "Checkpoints kept.",
    "engine": "Rollout engine: auto (vllm when CUDA and vllm are present, else hf), hf or vllm.",
    "device": "auto, cpu, cuda …",
    "gen_batch_size": "Sequences per generate call (hf engine).",
    "instruction": "Answer-format instruction appended to each question.",
    "template_position": "user-prefix, user-suffix or system.",
    "enable_thinking": "Qwen3 thinking mode.",
    "reward_timeout": "Seconds per answer check.",
    "seed": "Random seed.",
    "gpu_memory_utilization": "vllm engine: fraction of GPU memory for its weights + KV cache (the trainer shares the GPU).",
    "tensor_parallel_size": "vllm engine: GPUs per model.",
    "vllm_sleep": "vllm engine: free its GPU memory while the trainer steps (CUDA only).",
    "save_dtype": "Checkpoint weights dtype: auto (the model config's), float32 or bfloat16.",
    "save_optimizer": "Keep the optimizer state (and fp32 master weights under bf16) in checkpoints.",
    "lora_r": "LoRA rank (0 = full fine-tuning); needs peft.",
    "lora_alpha": "LoRA alpha (default: 2 x --lora-r).",
    "lora_target_modules": "Modules LoRA adapts: all-linear or a comma list (q_proj,v_proj).",
    "report_to": "Experiment trackers besides metrics.jsonl: none, tensorboard, wandb, trackio, all (installed ones) "
                 "or a comma list (default: tensorboard when installed; event files in RUN_DIR/tensorboard).",
}
