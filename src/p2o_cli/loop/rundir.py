"""The run directory of ``p2o run``: its layout, its owner and lock, its resume state, its inputs'
fingerprint and its metrics file."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import P2OError
from ..files.fingerprint import changes, file_fingerprint, model_fingerprint, records_fingerprint
from ..files.lock import DirectoryLock
from ..files.outputs import check_output_path, claim_directory, remove_owned
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
    # The checkpoints this run wrote and keeps (run-relative, oldest first): the only ones it prunes.
    checkpoints: list[str] = field(default_factory=list)


def run_inputs(data: str, model: str, problems: Sequence[Any]) -> dict[str, Any]:
    """What a run starts from: its problems (and data file, when it is one) and its first model."""
    inputs: dict[str, Any] = {"data": {"problems": len(problems), "problems_sha256": records_fingerprint(problems)},
                              "model": model_fingerprint(model)}
    if Path(data).is_file():
        inputs["data"]["file"] = file_fingerprint(data)
    return inputs


class RunDir:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        # Replaced by P2ORun with one that also feeds the trackers.
        self.logger = MetricsLogger(self.metrics)
        self._lock = DirectoryLock(self.root)
        self.owner: str | None = None  # "run <id>": written into each checkpoint this run saves

    def take(self) -> str:
        """Lock the directory for this process and claim it as a run's (OutputError when another
        p2o holds it or it is a directory p2o did not make); return the owner of its checkpoints.

        Nothing is written into a directory that is not a run's: it is refused first."""
        check_output_path(self.root, "run")
        self._lock.acquire()
        try:
            owner = claim_directory(self.root, "run", id=uuid.uuid4().hex)  # looked at again, under the lock
        except BaseException:
            self._lock.release()
            raise
        self.owner = f"run {owner['id']}"
        return self.owner

    def release(self) -> None:
        self._lock.release()

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

    @property
    def inputs_path(self) -> Path:
        return self.root / "inputs.json"

    def check_inputs(self, inputs: dict[str, Any], allow_changed: bool, warn: Callable[[str], None]) -> None:
        """Compare what a resume starts from with what the run started from; refuse a change
        (P2OError) unless ``allow_changed``, then record ``inputs`` (first for runs older than this)."""
        if self.inputs_path.is_file():
            changed = changes(read_json_object(self.inputs_path), inputs)
            if changed:
                what = ", ".join(changed[:4]) + (" …" if len(changed) > 4 else "")
                if not allow_changed:
                    raise P2OError(f"{self.root}: the run's inputs changed since it started ({what}); resuming would "
                                   "mix them: pass --allow-changed-data to resume anyway, or start a new run")
                warn(f"the run's inputs changed since it started ({what}); resuming with them as they are now")
        write_json(self.inputs_path, inputs)

    def remember_checkpoint(self, state: RunState, path: Path, keep_last: int) -> list[Path]:
        """Add ``path`` to the checkpoints the run keeps; return those it no longer keeps."""
        name = str(path.relative_to(self.root))
        state.checkpoints = [c for c in state.checkpoints if c != name] + [name]
        dropped = state.checkpoints[:-keep_last]
        state.checkpoints = state.checkpoints[-keep_last:]
        return [self.root / c for c in dropped]

    def prune(self, paths: Sequence[Path]) -> None:
        """Delete checkpoints this run wrote and no longer keeps; anything else stays."""
        for path in paths:
            if self.owner is not None:
                remove_owned(path, self.owner)

    def truncate_metrics(self, state: RunState) -> None:
        """Drop metric lines written after the checkpoint we resume from (they will be redone),
        and a last line a kill cut short."""
        if not self.metrics.is_file():
            return
        kept = [
            row
            for _, row in iter_json_lines(self.metrics, torn_tail=True)
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
