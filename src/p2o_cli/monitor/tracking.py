"""Experiment tracking: ``metrics.jsonl`` plus any of TensorBoard, Weights & Biases, Trackio.

One :class:`MetricsLogger` writes every metric row to the JSONL file (the record of truth that
``p2o report`` reads) and forwards the same row, under the same names, to the trackers asked
for with ``report_to``. The trackers are accelerate's (``accelerate.tracking``), so they behave
as in TRL or any accelerate script; their libraries are optional extras
(``pip install 'p2o-cli[tensorboard]'``, ``[wandb]``, ``[trackio]``).

Offline use: TensorBoard writes event files under the run directory; wandb honours
``WANDB_MODE=offline`` (its files go under the run directory too, ``wandb sync`` uploads them
later).
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Config, option
from ..errors import P2OError
from ..files.records import append_jsonl

TRACKERS = ("tensorboard", "wandb", "trackio")
REPORT_TO_CHOICES = ("none", *TRACKERS, "all")
# The import each tracker needs (accelerate's TensorBoardTracker takes torch's writer, which
# needs the tensorboard package).
_MODULE = {"tensorboard": "tensorboard", "wandb": "wandb", "trackio": "trackio"}
# The wandb / trackio project every p2o run is logged under.
PROJECT = "p2o"
# The step every row is plotted against: the loop's rollout batch, or the trainer's counter.
STEP_KEY = "training/step"


def tracker_installed(name: str) -> bool:
    return importlib.util.find_spec(_MODULE[name]) is not None


@dataclass
class TrackingConfig(Config):
    PANEL = "Logging"

    report_to: str | None = option(None, metavar="TRACKERS",
                                   unset="tensorboard when installed (event files in the run directory's tensorboard/)",
                                   help="Experiment trackers besides metrics.jsonl: none, tensorboard, wandb, trackio, "
                                        "all (installed ones) or a comma list.")

    def check(self) -> None:
        resolve_report_to(self.report_to)  # a tracker that is not installed fails before any model loads


def resolve_report_to(value: str | None) -> list[str]:
    """Tracker names for a ``--report-to`` value.

    ``None`` (not given): TensorBoard when it is installed, else nothing. ``all``: every
    installed tracker. Otherwise a comma-separated list of names, each of which must be
    installed (ValueError naming the extra to install), or ``none``.
    """
    if value is None:
        return ["tensorboard"] if tracker_installed("tensorboard") else []
    names = [part.strip().lower() for part in value.split(",") if part.strip()]
    unknown = [n for n in names if n not in REPORT_TO_CHOICES]
    if unknown or not names:
        raise P2OError(f"--report-to must be one of {', '.join(REPORT_TO_CHOICES)} (or a comma list), got {value!r}")
    if "none" in names:
        if len(names) > 1:
            raise P2OError(f"--report-to none cannot be combined with other trackers, got {value!r}")
        return []
    if "all" in names:
        return [n for n in TRACKERS if tracker_installed(n)]
    missing = [n for n in names if not tracker_installed(n)]
    if missing:
        extras = ",".join(missing)
        raise P2OError(f"--report-to {missing[0]} needs the {missing[0]} package: pip install 'p2o-cli[{extras}]'")
    return list(dict.fromkeys(names))


def scalars(row: Mapping[str, Any]) -> dict[str, float]:
    """The numeric, finite entries of a metrics row (booleans and text are not plotted)."""
    out: dict[str, float] = {}
    for key, value in row.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            out[key] = float(value)
    return out


def open_tracker(name: str, run_name: str, logging_dir: Path, config: Mapping[str, Any] | None) -> Any:
    """An accelerate tracker, started, with the run's config stored as its hyper-parameters."""
    from accelerate import tracking

    logging_dir.mkdir(parents=True, exist_ok=True)
    if name == "tensorboard":
        tracker = tracking.TensorBoardTracker(run_name, str(logging_dir / "tensorboard"))
    elif name == "wandb":
        # accelerate passes its first argument as the project; the run keeps its own name.
        tracker = tracking.WandBTracker(PROJECT, dir=str(logging_dir), name=run_name)
    elif name == "trackio":
        cls = getattr(tracking, "TrackioTracker", None)
        if cls is None:
            raise P2OError("--report-to trackio needs accelerate >= 1.10 (pip install -U accelerate)")
        tracker = cls(PROJECT, name=run_name)
    else:
        raise P2OError(f"unknown tracker {name!r}")
    start = getattr(tracker, "start", None)
    if start is not None:  # accelerate >= 1.5 starts trackers lazily
        start()
    if config:
        tracker.store_init_configuration(_flat_config(config))
    return tracker


def _flat_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Hyper-parameters as TensorBoard's hparams accept them: scalars and strings only."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, (bool, int, float, str)):
            flat[key] = value
        elif value is not None:
            flat[key] = str(value)
    return flat


class MetricsLogger:
    """Appends each row to ``path`` (JSONL) and logs its numbers to every tracker at its step."""

    def __init__(self, path: str | Path | None, trackers: list[Any] | None = None):
        self.path = Path(path) if path is not None else None
        self.trackers = list(trackers or [])

    def log(self, row: dict[str, Any]) -> None:
        if self.path is not None:
            append_jsonl(self.path, row)
        if not self.trackers:
            return
        values = scalars(row)
        step = int(values.get(STEP_KEY, 0))
        for tracker in self.trackers:
            tracker.log(values, step=step)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.finish()
        self.trackers = []


def open_metrics_logger(
    path: str | Path | None,
    report_to: str | None,
    logging_dir: str | Path,
    run_name: str,
    config: Mapping[str, Any] | None = None,
    main_process: bool = True,
) -> MetricsLogger:
    """A logger for ``path`` with the trackers ``report_to`` names (none off the main process)."""
    names = resolve_report_to(report_to)
    if not main_process:
        return MetricsLogger(None)
    trackers = [open_tracker(name, run_name, Path(logging_dir), config) for name in names]
    return MetricsLogger(path, trackers)
