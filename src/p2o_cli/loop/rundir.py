"""The run directory of ``p2o run``: its layout, its resume state, its metrics file."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import P2OError
from ..files.records import (
    Rollout,
    from_dict,
    iter_json_lines,
    read_json_object,
    read_records,
    write_json,
    write_records,
)
from ..monitor.tracking import MetricsLogger


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

    def rollouts_by_epoch(self) -> dict[int, list[Rollout]]:
        epochs = self.epochs()
        if not epochs:
            raise P2OError(f"{self.root}: no epoch-* directories (not a p2o run directory?)")
        return {epoch: self.read_rollouts(epoch) for epoch in epochs}

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def state_path(self) -> Path:
        return self.root / "state.json"

    def read_state(self) -> RunState:
        if not self.state_path.is_file():
            raise P2OError(f"{self.root}: nothing to resume (no state.json)")
        try:
            return from_dict(RunState, read_json_object(self.state_path))
        except ValueError as err:
            raise P2OError(f"{self.state_path}: {err}") from None

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


def rollout_metrics(rollouts: Sequence[Rollout]) -> dict[str, float]:
    """Reward split by plain and templated rollouts (the templates' lift is what GEPA buys), and
    each reward component's mean when several make up the reward."""
    plain = [r.reward for r in rollouts if not r.template]
    templated = [r.reward for r in rollouts if r.template]
    components: dict[str, list[float]] = {}
    for rollout in rollouts:
        for name, value in (rollout.rewards or {}).items():
            components.setdefault(name, []).append(value)
    return {
        "rollout/plain_reward_mean": sum(plain) / len(plain) if plain else 0.0,
        "rollout/templated_reward_mean": sum(templated) / len(templated) if templated else 0.0,
        "rollout/templated_frac": len(templated) / max(len(rollouts), 1),
        "rollout/truncated_frac": sum(r.finish_reason == "length" for r in rollouts) / max(len(rollouts), 1),
        **{f"reward/{name}/mean": sum(values) / len(values) for name, values in components.items()},
    }
