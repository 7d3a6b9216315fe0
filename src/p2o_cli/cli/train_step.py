"""``p2o train-step``: one GRPO step with context distillation, from a rollout file to a checkpoint."""

from __future__ import annotations

from dataclasses import dataclass

import typer

from ..config import Config, model_option, option, section
from ..rl.config import TrainConfig
from .app import app
from .options import command


@dataclass
class TrainStepJob(Config):
    model: str = model_option("Model or checkpoint directory to continue (Hugging Face layout) or hub id.")
    rollouts: str = option("", required=True, help="Rollouts JSONL from p2o rollout (- = stdin).")
    out: str = option("", required=True,
                      help="Checkpoint directory to write (HF model + optimizer + trainer state).")
    metrics: str | None = option(None, help="Append one JSON line of metrics to this file.")
    train: TrainConfig = section(TrainConfig)


@command(app, "train-step", TrainStepJob)
def train_step(job: TrainStepJob) -> None:
    """One GRPO step on a rollout batch with context distillation; writes a chained checkpoint."""
    import time

    from ..records import Rollout, append_jsonl, check_output_path, read_records
    from ..rl.trainer import PolicyTrainer
    from .common import quiet_libraries

    check_output_path(job.out, "checkpoint")
    records = read_records(job.rollouts, Rollout, allow_empty=False)
    quiet_libraries()
    trainer = PolicyTrainer.from_checkpoint(job.model, job.train)
    metrics = trainer.step(records)
    start = time.perf_counter()
    trainer.save(job.out, extra_config={"model": job.model, "rollouts": job.rollouts})
    metrics["timing/save"] = time.perf_counter() - start
    if trainer.accelerator.is_main_process:
        if job.metrics:
            append_jsonl(job.metrics, metrics)
        typer.echo(
            f"train step {trainer.train_steps} (update {trainer.global_step}) on {len(records)} rollouts: "
            f"pg_loss {metrics['actor/pg_loss']:.4g}, grad_norm {metrics['actor/grad_norm']:.3g}, "
            f"lr {metrics['actor/lr']:.3g} -> {job.out}",
            err=True,
        )
