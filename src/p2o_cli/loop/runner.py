"""`p2o run`: the alternating P²O loop (Algorithm 1) in one process, with a resumable run directory.

Each epoch: for every batch, roll out K samples per problem (problems that were hard last epoch
get their assigned templates, one per rollout), score them, take one train step (context
distillation happens inside the trainer), and collect the problems whose mean reward is below
τ. At the end of the epoch, if at least ``min_hard`` problems were hard, GEPA evolves templates
on them and the greedy set cover assigns K templates to each for the next epoch.

Run directory (locked by the process running it, files/lock.py; owned, files/outputs.py)::

    .p2o-owner.json        what made it (a run, with its id); .p2o-lock: who runs it now
    config.json            the resolved RunConfig
    inputs.json            fingerprints of the data and the starting model: a resume compares them
    metrics.jsonl          one line per train step, per eval and per epoch end
    state.json             where to resume: written with every checkpoint
    epoch-E/rollouts-B.jsonl, hard-B.jsonl   per batch
    epoch-E/hard.jsonl, templates.jsonl, assignments.jsonl, gepa-state.json, gepa-metrics.jsonl
    checkpoints/step-N/    HF model + optimizer + trainer state (the last ``keep_last`` this run wrote kept)

Under ``accelerate launch``/``torchrun`` every rank runs this same loop (see :mod:`.dist`):
engine calls and scoring are split over the ranks, the trainer shards each step (DDP/FSDP),
and only rank 0 writes into the run directory, logs and prints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import time
from collections.abc import Callable
from typing import Any

from ..config import to_dict
from ..data.problems import load_training_problems
from ..engines import Engine, load_engine, resolve_engine
from ..engines.hf import HFEngine
from ..engines.vllm import engine_options
from ..errors import P2OError
from ..evaluation.evaluate import evaluate
from ..files.records import (
    Assignment,
    Hard,
    Problem,
    Template,
    iter_json_lines,
    read_records,
    write_json,
    write_records,
)
from ..gepa.assign import assign_templates
from ..gepa.pareto import dev_coverage
from ..gepa.reflectors import ReflectorContext, reflector_from_config
from ..gepa.search import run_gepa
from ..gepa.view import live_front
from ..monitor.progress import format_duration, generation_progress, interactive
from ..monitor.tracking import MetricsLogger, open_metrics_logger
from ..reward.pool import open_scorer
from ..rl.metrics import NO_SIGNAL, learning_signal
from ..rl.trainer import PolicyTrainer
from ..rollout.generate import generate_rollouts
from ..rollout.mining import mine_hard
from .config import SAMPLED, RunConfig
from .dist import Dist, MainReflector, ShardedEngine, ShardedScorer
from .rundir import RunDir, RunState, rollout_metrics, run_inputs
from .summary import RunSummary, last_eval

# ---------------------------------------------------------------- the loop


Printer = Callable[[str], None]


class P2ORun:
    """Owns the resident trainer, engine, scorer and reflector for one run directory."""

    def __init__(self, cfg: RunConfig, resume: bool = False, printer: Printer = print):
        self.cfg = cfg
        self.dist = Dist.from_env()
        self.dir = RunDir(cfg.out)
        self.say = printer if self.dist.is_main else _silent
        self.problems = load_training_problems(cfg.data, cfg.problems)
        if not self.problems:
            raise P2OError(f"{cfg.data}: no problems")
        self.state = self.dist.on_main(lambda: self._open_dir(resume))
        if self.dist.is_main:
            self.dir.logger = open_metrics_logger(self.dir.metrics, cfg.tracking.report_to, self.dir.root,
                                                  cfg.name or self.dir.root.name, to_dict(cfg))
        else:
            self.dir.logger = MetricsLogger(None)  # rank 0 logs every metric
        self.batches_per_epoch = -(-len(self.problems) // cfg.batch_size)
        self.total_steps = cfg.epochs * self.batches_per_epoch
        self.started, self.steps_at_start = time.perf_counter(), self.state.step
        # A finished run resumed with more --epochs continues; one resumed as it was is only reported.
        self.finished = self.state.done and self.state.epoch >= cfg.epochs
        self.state.done = self.finished
        if not self.finished:
            self._open_models()

    # ------------------------------------------------------------ set-up

    def _open_dir(self, resume: bool) -> RunState:
        """Rank 0: the directory locked and claimed before anything is written, the state to start
        from, what the run started from checked, the metrics cut back to it, the resolved config."""
        cfg = self.cfg
        self.dir.take()
        try:
            inputs = run_inputs(cfg.data, cfg.model, self.problems)
            if resume:
                state = self.dir.read_state()
                self.dir.check_inputs(inputs, cfg.allow_changed_data, lambda msg: self.say(f"warning: {msg}"))
                self.dir.truncate_metrics(state)
            else:
                if self.dir.state_path.exists():
                    raise P2OError(f"{cfg.out}: a run already lives here; use --resume {cfg.out} or a new --out")
                state = RunState()
                write_records(self.dir.metrics, [])  # an attempt that never saved a checkpoint left these
                self.dir.check_inputs(inputs, True, _silent)
            write_json(self.dir.root / "config.json", to_dict(cfg))
        except BaseException:
            self.dir.release()
            raise
        return state

    def _open_models(self) -> None:
        cfg = self.cfg
        start = self.state.checkpoint or cfg.model
        train = dataclasses.replace(cfg.train, total_steps=self.total_steps)
        self.trainer = PolicyTrainer.from_checkpoint(start, train)
        self.tokenizer = self.trainer.tokenizer
        self.engine = ShardedEngine(self._make_engine(), self.dist, cfg.gen_chunk or cfg.engine.gen_batch_size)
        self.scorer = ShardedScorer(open_scorer(cfg.reward, workers=self.dist.scorer_workers()), self.dist)
        self._reflector: Any = None
        self._in_step = False

    def _make_engine(self) -> Engine:
        self.engine_name = resolve_engine(self.cfg.engine.engine)
        # Under FSDP a rank holds a shard only: its hf engine keeps a full copy, reloaded each step.
        self.engine_shares_model = self.engine_name == "hf" and not self.trainer.sharded
        if self.engine_name == "hf" and self.trainer.sharded:
            engine = HFEngine(self.state.checkpoint or self.cfg.model, self.tokenizer,
                              device=str(self.trainer.accelerator.device), batch_size=self.cfg.engine.gen_batch_size)
            engine.update_weights(self.trainer.policy_state_dict())
            return engine
        if self.engine_name == "hf":
            # The engine samples the trainer's own model object: no weight copy after a step
            # (under LoRA, the base model with the adapter layers in it).
            model = self.trainer.model
            return HFEngine(model.get_base_model() if hasattr(model, "peft_config") else model, self.tokenizer,
                            device=str(self.trainer.accelerator.device), batch_size=self.cfg.engine.gen_batch_size)

        # vLLM loads the weights it is given as a plain model: the merged ones under LoRA.
        eng = self.cfg.engine
        options = engine_options(eng.gpu_memory_utilization, eng.tensor_parallel_size, eng.vllm_sleep)
        if self.dist.world_size > 1:
            if eng.tensor_parallel_size > 1:
                raise P2OError("p2o run on several ranks runs one vllm engine per rank: --tensor-parallel-size 1")
            # One colocated engine per rank on the rank's own GPU, inside the launcher's process
            # group (TRL's colocate mode); each generates only the chunks dealt to its rank.
            options["distributed_executor_backend"] = "external_launcher"
        engine = load_engine(self.engine_name, self.state.checkpoint or self.cfg.model, device=eng.device,
                             batch_size=eng.gen_batch_size, **options)
        engine.update_weights(self.trainer.policy_state_dict())
        return engine

    def reflector(self) -> Any:
        """The reflector, asked on rank 0 only (its answers are broadcast)."""
        return MainReflector(self._main_reflector, self.dist)

    def _main_reflector(self) -> Any:
        if self._reflector is None:
            engine = tokenizer = None
            if self.cfg.reflector.reflector == "self":
                # "self" reflects with the initial policy, kept frozen beside the trained one.
                engine = HFEngine(self.cfg.model, device=self.cfg.engine.device,
                                  batch_size=self.cfg.engine.gen_batch_size)
                tokenizer = engine.tokenizer
            context = ReflectorContext(self.cfg.seed, self.cfg.rollout.prompt.enable_thinking, engine, tokenizer)
            self._reflector = reflector_from_config(self.cfg.reflector, context)
        return self._reflector

    def gepa_config(self, epoch: int) -> Any:
        """This epoch's GEPA settings: a fresh seed each epoch."""
        return dataclasses.replace(self.cfg.gepa, seed=self.cfg.seed * 1000 + epoch)

    def progress(self, description: str, total: int) -> Any:
        """A transient progress display on rank 0 (it sees its own share of the work); none elsewhere."""
        if not self.dist.is_main:
            return contextlib.nullcontext(None)

        return generation_progress(description, total, transient=True)

    def close(self) -> None:
        if not self.finished:
            self.scorer.close()
            self.engine.close()
        self.dir.logger.close()
        self.dist.close()
        self.dir.release()

    # ------------------------------------------------------------ phases

    def batches(self, epoch: int) -> list[list[Problem]]:
        order = list(self.problems)
        random.Random(self.cfg.seed * 7919 + epoch).shuffle(order)
        size = self.cfg.batch_size
        return [order[i : i + size] for i in range(0, len(order), size)]

    def current_prompts(self) -> tuple[dict[str, Assignment], dict[str, Template]]:
        return self.dist.on_main(self._read_prompts)

    def _read_prompts(self) -> tuple[dict[str, Assignment], dict[str, Template]]:
        if not self.state.assignments or not self.state.templates:
            return {}, {}
        assignments = {a.id: a for a in read_records(self.dir.root / self.state.assignments, Assignment)}
        templates = {t.template_id: t for t in read_records(self.dir.root / self.state.templates, Template)}
        return assignments, templates

    def policy_step(self, epoch: int, index: int, batch: list[Problem], assignments: dict[str, Assignment],
                    templates: dict[str, Template]) -> list[Hard]:
        cfg = self.cfg
        t0, reward_s, counts = time.perf_counter(), self.scorer.seconds, self.scorer.counters()
        rollout_cfg = dataclasses.replace(cfg.rollout, seed=cfg.seed * 100_003 + self.state.step,
                                          policy_version=self.state.step, model=cfg.model)
        with self.progress(f"step {self.state.step + 1} rollout", len(batch) * cfg.rollout.k) as progress:
            rollouts = generate_rollouts(self.engine, self.tokenizer, batch, rollout_cfg, self.scorer, assignments,
                                         templates, progress)
        sleep = getattr(self.engine, "sleep", None)
        if sleep is not None:
            sleep(level=2)  # frees the GPU for training when sleep mode is on (weights reloaded below)
        t1, reward_s = time.perf_counter(), self.scorer.seconds - reward_s
        self._in_step = True
        metrics = self.trainer.step(rollouts)
        if not self.engine_shares_model:
            self.engine.update_weights(self.trainer.policy_state_dict())
        self.state.step += 1
        self.state.batch += 1
        self._in_step = False
        hard = mine_hard(rollouts, tau=cfg.mining.tau, max_failures=cfg.mining.max_failures)
        t2 = time.perf_counter()
        if self.dist.is_main:
            edir = self.dir.epoch_dir(epoch)
            write_records(edir / f"rollouts-{index:04d}.jsonl", rollouts)
            write_records(edir / f"hard-{index:04d}.jsonl", hard)
        gen_tokens = sum(r.n_tokens for r in rollouts)
        # The trainer counts optimizer updates; the loop's step is one rollout batch.
        row = {**metrics, "actor/optimizer_step": metrics.get("training/step"), "training/step": self.state.step,
               "epoch": epoch, **rollout_metrics(rollouts), "batch/hard_count": len(hard), "timing/rollout": t1 - t0,
               "perf/rollout_tokens_per_s": gen_tokens / max(t1 - t0, 1e-9),
               # verl's breakdown: generation and reward apart, then old log-probs/update (trainer's).
               "timing/gen": t1 - t0 - reward_s, "timing/reward": reward_s, "timing/io": time.perf_counter() - t2,
               "timing/policy_step": time.perf_counter() - t0,
               "perf/gen_tokens_per_s": gen_tokens / max(t1 - t0 - reward_s, 1e-9),
               **{key: value - counts[key] for key, value in self.scorer.counters().items()}}
        self.dir.log(row)
        self.say(self.step_line(epoch, row, len(hard), len(batch)))
        return hard

    def step_line(self, epoch: int, row: dict[str, Any], hard: int, batch: int) -> str:
        """The step's line in the log: where the run is, what the step saw, its time and the run's ETA."""
        step, total = self.state.step, self.total_steps
        # The ETA spreads everything so far (evals and GEPA too) over the steps this process ran.
        per_step = (time.perf_counter() - self.started) / max(step - self.steps_at_start, 1)
        silent = "" if learning_signal(row) else f"  {NO_SIGNAL} (every group's rewards equal)"
        return (f"step {step}/{total} (epoch {epoch}): reward {row['critic/rewards/mean']:.3f} "
                f"(plain {row['rollout/plain_reward_mean']:.3f}, templated {row['rollout/templated_reward_mean']:.3f}) "
                f"hard {hard}/{batch}  {row['perf/rollout_tokens_per_s']:,.0f} tok/s  "
                f"{row['timing/policy_step']:.1f} s/step  ETA {format_duration(per_step * (total - step))}{silent}")

    def evaluate(self) -> dict[str, float]:
        results, _ = evaluate(self.engine, self.tokenizer, self.cfg.eval, self.scorer, progress_factory=self.progress)
        scores = {f"eval/{name}/accuracy": r["accuracy"] for name, r in results["benchmarks"].items()}
        if self.cfg.eval_sampled_n:
            sampled_cfg = dataclasses.replace(self.cfg.eval, eval_n=self.cfg.eval_sampled_n,
                                              eval_temperature=self.cfg.rollout.temperature)
            results, _ = evaluate(self.engine, self.tokenizer, sampled_cfg, self.scorer, progress_factory=self.progress)
            scores.update({f"eval/{name}{SAMPLED}/accuracy": r["accuracy"]
                           for name, r in results["benchmarks"].items()})
        self.dir.log({"training/step": self.state.step, "epoch": self.state.epoch, **scores})
        self.say("eval at step {}: {}".format(
            self.state.step, ", ".join(f"{k.split('/')[1]} {v:.1f}%" for k, v in scores.items())))
        return scores

    def prompt_phase(self, epoch: int, hard: list[Hard]) -> None:
        """GEPA + assignment on this epoch's hard set; sets the templates for the next epoch."""

        cfg = self.cfg
        edir = self.dir.root / f"epoch-{epoch}"
        self.say(f"epoch {epoch}: GEPA on {len(hard)} hard problems (budget {cfg.gepa.budget} rollouts)")
        main, started, counts = self.dist.is_main, time.perf_counter(), self.scorer.counters()
        with live_front(interactive() and main) as on_iteration:
            # Every rank runs the same search (same state, same broadcast proposals); rank 0
            # saves it, and on resume every rank reads what rank 0 saved.
            result = run_gepa(hard, self.engine, self.tokenizer, self.reflector(), self.scorer,
                              self.gepa_config(epoch), state_path=edir / "gepa-state.json",
                              metrics_path=edir / "gepa-metrics.jsonl", on_iteration=on_iteration if main else None,
                              resume=True, save=main)
        assigned = assign_templates([h.id for h in hard], result.templates, cfg.assign.k, seed=cfg.seed + epoch,
                                    same_template_in_group=cfg.assign.same_template_in_group,
                                    plain_in_group=cfg.assign.plain_in_group,
                                    plain_rewards={h.id: h.rewards for h in hard})
        if main:
            write_records(edir / "templates.jsonl", result.templates)
            write_records(edir / "assignments.jsonl", assigned.assignments)
        self.state.templates = str((edir / "templates.jsonl").relative_to(self.dir.root))
        self.state.assignments = str((edir / "assignments.jsonl").relative_to(self.dir.root))

        self.dir.log({"epoch": epoch, "training/step": self.state.step, "gepa/templates": len(result.templates),
                      "gepa/cover_size": len(assigned.cover), "gepa/dev_coverage": dev_coverage(result.templates),
                      "gepa/rollouts_spent": result.spent, "gepa/iterations": result.iterations,
                      "timing/gepa_phase": time.perf_counter() - started,
                      **{key: value - counts[key] for key, value in self.scorer.counters().items()}})
        self.say(f"epoch {epoch}: GEPA kept {len(result.templates) - 1} templates, cover {len(assigned.cover)}, "
                 f"dev coverage {dev_coverage(result.templates):.2f}, spent {result.spent} rollouts")

    # ------------------------------------------------------------ checkpoints

    def save(self) -> None:
        path = self.dir.root / "checkpoints" / f"step-{self.state.step}"
        self.trainer.save(path, extra_config={"run": to_dict(self.cfg)}, owner=self.dir.owner)  # collective
        self.state.checkpoint = str(path)
        if not self.dist.is_main:
            return
        # The state forgets a checkpoint before it is deleted: a kill in between leaves a spare
        # checkpoint, never a state that points at a deleted one.
        dropped = self.dir.remember_checkpoint(self.state, path, self.cfg.keep_last)
        self.dir.write_state(self.state)
        self.dir.prune(dropped)

    # ------------------------------------------------------------ main

    def run(self) -> RunSummary:
        cfg = self.cfg
        if self.finished:
            # Nothing left to do: report the run as it ended instead of evaluating it again.
            self.say(f"{self.dir.root}: the run is already finished; nothing to resume")
            return self.summary(last_eval(self.dir.metrics))
        final_eval: dict[str, float] = {}
        if self.state.step == 0 and self.state.batch == 0 and self.state.epoch == 0 and cfg.eval.bench:
            final_eval = self.evaluate()
        try:
            while self.state.epoch < cfg.epochs:
                epoch = self.state.epoch
                assignments, templates = self.current_prompts()
                batches = self.batches(epoch)
                while self.state.batch < len(batches):
                    self.policy_step(epoch, self.state.batch, batches[self.state.batch], assignments, templates)
                    if cfg.eval.bench and cfg.eval_every and self.state.step % cfg.eval_every == 0:
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
        if cfg.eval.bench and (not cfg.eval_every or self.state.step % cfg.eval_every):
            final_eval = self.evaluate()
        self.state.done = True
        if self.dist.is_main:
            self.dir.write_state(self.state)
        return self.summary(final_eval)

    def summary(self, final_eval: dict[str, float]) -> RunSummary:
        return self.dist.on_main(lambda: self._summary(final_eval))

    def _summary(self, final_eval: dict[str, float]) -> RunSummary:
        rows = [row for _, row in iter_json_lines(self.dir.metrics)]
        return RunSummary(self.state.step, self.cfg.epochs, [row["epoch/hard_count"] for row in rows
                                                              if "epoch/hard_count" in row], final_eval,
                          wall_s=time.perf_counter() - self.started, checkpoint=self.state.checkpoint,
                          metrics=str(self.dir.metrics),
                          no_signal_steps=sum(1 for row in rows if "actor/pg_loss" in row and not learning_signal(row)))

    def epoch_hard(self, epoch: int, n_batches: int) -> list[Hard]:
        """The epoch's hard set, from its batches' files (written by rank 0, read there)."""
        return self.dist.on_main(lambda: self._read_epoch_hard(epoch, n_batches))

    def _read_epoch_hard(self, epoch: int, n_batches: int) -> list[Hard]:
        edir = self.dir.epoch_dir(epoch)
        hard = [h for b in range(n_batches) for h in read_records(edir / f"hard-{b:04d}.jsonl", Hard)]
        write_records(edir / "hard.jsonl", hard)
        return hard


def _silent(message: str) -> None:
    """The printer of ranks other than 0."""
