"""``p2o train-step``: one GRPO step with context distillation, from a rollout file to a checkpoint."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import typer

from ..config import Config, model_option, option, section, to_dict
from ..monitor.tracking import TrackingConfig
from ..rl.config import TrainConfig
from .app import app
from .options import command, was_given


@dataclass
class TrainStepJob(Config):
    model: str = model_option("Model or checkpoint directory to continue (Hugging Face layout) or hub id.")
    rollouts: str = option("", required=True, help="Rollouts JSONL from p2o rollout (- = stdin).")
    out: str = option("", required=True,
                      help="Checkpoint directory to write (HF model + optimizer + trainer state).")
    metrics: str | None = option(None, help="Append one JSON line of metrics to this file.")
    logging_dir: str | None = option(None, help="Tracker files (default: the --metrics file's directory, else "
                                                "--out's parent).")
    train: TrainConfig = section(TrainConfig)
    tracking: TrackingConfig = section(TrackingConfig, report_to="none")


@command(app, "train-step", TrainStepJob)
def train_step(job: TrainStepJob) -> None:
    """One GRPO step on a rollout batch with context distillation; writes a chained checkpoint."""
    import time

    from ..files.outputs import check_output_path
    from ..files.records import Rollout, read_records
    from ..monitor.progress import warn
    from ..monitor.tracking import open_metrics_logger
    from ..rl.config import lr_at
    from ..rl.trainer import PolicyTrainer
    from .checks import resolve_train_temperature, schedule_warning
    from .common import quiet_libraries

    check_output_path(job.out, "checkpoint")
    records = read_records(job.rollouts, Rollout, allow_empty=False)
    given = job.train.temperature if was_given("temperature") else None  # else the rollouts' own
    temperature, temperature_warning = resolve_train_temperature(given, records)
    cfg = dataclasses.replace(job.train, temperature=temperature)
    quiet_libraries()
    trainer = PolicyTrainer.from_checkpoint(job.model, cfg)
    main = trainer.accelerator.is_main_process
    notes = [temperature_warning, schedule_warning(trainer.train_steps, int(trainer.cfg.total_steps),
                                                   lr_at(trainer.cfg, trainer.train_steps))]
    for note in filter(None, notes if main else []):
        warn(note)
    metrics = trainer.step(records)
    start = time.perf_counter()
    trainer.save(job.out, extra_config={"model": job.model, "rollouts": job.rollouts})
    metrics["timing/save"] = time.perf_counter() - start
    if main:
        log_dir = job.logging_dir or str(Path(job.metrics).parent if job.metrics else Path(job.out).resolve().parent)
        logger = open_metrics_logger(job.metrics, job.tracking.report_to, log_dir,
                                     Path(job.metrics).stem if job.metrics else "train-step", to_dict(job))
        logger.log(metrics)
        logger.close()
        typer.echo(
            f"train step {trainer.train_steps} (update {trainer.global_step}) on {len(records)} rollouts: "
            f"pg_loss {metrics['actor/pg_loss']:.4g}, grad_norm {metrics['actor/grad_norm']:.3g}, "
            f"lr {metrics['actor/lr']:.3g} -> {job.out}",
            err=True,
        )
