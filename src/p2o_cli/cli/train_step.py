"""``p2o train-step``: one GRPO step with context distillation, from a rollout file to a checkpoint."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from ..config import TEMPERATURE, Config, model_option, option, section, to_dict
from ..monitor.tracking import TrackingConfig
from ..rl.config import TrainConfig
from .app import app
from .options import command, was_given


@dataclass
class TrainStepJob(Config):
    model: str = model_option("Model or checkpoint directory to continue (Hugging Face layout) or hub id.")
    rollouts: str = option("", required=True, metavar="PATH", help="Rollouts JSONL from p2o rollout (- = stdin).")
    out: str = option("", required=True, metavar="DIR",
                      help="Checkpoint directory to write (HF model + optimizer + trainer state).")
    metrics: str | None = option(None, metavar="PATH", unset="none", help="Append one JSON line of metrics to this "
                                                                          "file.")
    logging_dir: str | None = option(None, metavar="DIR", unset="the --metrics file's directory, else --out's parent",
                                     help="Tracker files.")
    # The trainer's temperature (the shared option, declared again to say what unset means here).
    temperature: float | None = option(None, min=0.0, shared=True,
                                       unset=f"the rollouts' sampling temperature, else {TEMPERATURE:g}",
                                       help="Rollout sampling temperature; the trainer divides logits by the same "
                                            "value.")
    train: TrainConfig = section(TrainConfig)
    tracking: TrackingConfig = section(TrackingConfig, report_to="none")


def continued_schedule(above: Mapping[str, Any]) -> dict[str, Any]:
    """Under --config and the flags: the LR schedule stored in the checkpoint --model names."""
    from .common import stored_schedule

    return stored_schedule(above.get("model"))


@command(app, "train-step", TrainStepJob, base=continued_schedule)
def train_step(job: TrainStepJob) -> None:
    """One GRPO step on a rollout batch with context distillation; writes a chained checkpoint."""
    import time

    from ..files.outputs import check_outputs
    from ..files.records import Rollout, read_records
    from ..monitor.progress import warn
    from ..monitor.tracking import open_metrics_logger
    from ..rl.config import lr_at, warmup_steps
    from ..rl.metrics import NO_SIGNAL, learning_signal
    from ..rl.trainer import PolicyTrainer
    from .checks import resolve_train_temperature, schedule_warning, warmup_warning
    from .common import quiet_libraries

    check_outputs({"--out": (job.out, "checkpoint"), "--metrics": (job.metrics, "append")},
                  {"--model": job.model, "--rollouts": job.rollouts})
    records = read_records(job.rollouts, Rollout, allow_empty=False)
    temperature, temperature_warning = resolve_train_temperature(job.temperature, records, job.train.temperature)
    cfg = dataclasses.replace(job.train, temperature=temperature)
    quiet_libraries()
    trainer = PolicyTrainer.from_checkpoint(job.model, cfg)
    main = trainer.accelerator.is_main_process
    step, total, lr = trainer.train_steps, trainer.cfg.total_steps, lr_at(trainer.cfg, trainer.train_steps)
    for note in filter(None, [temperature_warning, schedule_warning(step, total, lr)] if main else []):
        warn(note)
    metrics = trainer.step(records)
    # What the step did, said once it did it (a failed step says only why it failed).
    notes = [None if learning_signal(metrics) else
             f"{NO_SIGNAL}: in each of the batch's {len({r.id for r in records})} groups all rewards are equal "
             "(all solved or all failed), so every advantage is 0 and the policy loss gave no gradient"]
    if not was_given("total_steps") and total == TrainConfig.total_steps:  # left at the default
        notes.append(warmup_warning(step, warmup_steps(trainer.cfg), total, lr, trainer.cfg.lr))
    for note in filter(None, notes if main else []):
        warn(note)
    start = time.perf_counter()
    trainer.save(job.out, extra_config={"model": job.model, "rollouts": job.rollouts}, owner="train-step")
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
