"""A model directory's files checked before (and while) any model loads: a truncated save or
download, a corrupt trainer state, a file the loader chokes on are named in one line.

Reads only the safetensors header (8 bytes and its JSON) and the small JSON files, so the checks
cost microseconds and need neither torch nor safetensors; loading code then never fails deep
inside with a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import P2OError, one_line
from .outputs import recover_swap
from .records import check_type, read_bounded

TRAINER_STATE = "trainer_state.json"


def verify_safetensors(path: Path) -> None:
    """The file's header parses and its size is what the header promises (ValueError otherwise).

    Reads 8 bytes and the header only, so a truncated save or download is named before any
    model loads, instead of failing deep inside the loader with a traceback.
    """
    size = path.stat().st_size
    problem = None
    with open(path, "rb") as fh:
        head = fh.read(8)
        header_len = int.from_bytes(head, "little") if len(head) == 8 else -1
        if header_len < 2 or 8 + header_len > size:
            problem = "its header is cut short"
        else:
            try:
                header = json.loads(fh.read(header_len))
                end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
            except (ValueError, TypeError, KeyError, IndexError, AttributeError):
                problem = "its header is not valid safetensors JSON"
            else:
                if 8 + header_len + end != size:
                    problem = f"it holds {size:,} bytes where its header promises {8 + header_len + end:,}"
    if problem:
        raise P2OError(f"{path}: truncated or corrupt safetensors file ({problem}); save or download it again")


def check_checkpoint_files(model_dir: str | Path) -> None:
    """Restore a checkpoint a kill left in its swap window, then verify its safetensors files."""
    root = Path(model_dir)
    recover_swap(root)
    if root.is_dir():
        for path in sorted(root.glob("*.safetensors")):
            verify_safetensors(path)


@contextmanager
def loading(source: str | Path, what: str = "model") -> Iterator[None]:
    """Around a library's load of ``source`` (``from_pretrained``): whatever a bad directory makes
    it raise (a tensor of the wrong shape, an impossible config value, a pickle torch refuses to
    unpickle) becomes one P2OError naming ``source`` (exit status 2), not a bug report."""
    try:
        yield
    except P2OError:
        raise
    except Exception as err:  # noqa: BLE001 - only a load runs here: its failures are the files'
        detail = one_line(str(err), 300) or type(err).__name__
        raise P2OError(f"{source}: cannot load the {what} ({type(err).__name__}: {detail})") from None


# What each key of trainer_state.json must be (keys may be missing: older checkpoints).
_STATE_TYPES: dict[str, Any] = {"global_step": int, "train_steps": int, "seed": int, "world_size": int,
                                "schedule": dict[str, Any], "rng": dict[str, Any], "last_metrics": dict[str, Any]}


def read_trainer_state(model_dir: str | Path) -> dict[str, Any] | None:
    """The checkpoint's trainer state, its keys type-checked (P2OError naming the file)."""
    path = Path(model_dir) / TRAINER_STATE
    if not path.exists():
        return None
    if not path.is_file():
        raise P2OError(f"{path}: not a regular file")
    try:
        state = json.loads(read_bounded(path))
    except ValueError as err:
        raise P2OError(f"{path}: malformed JSON ({err})") from None
    if not isinstance(state, dict):
        raise P2OError(f"{path}: expected a JSON object")
    try:
        for key, tp in _STATE_TYPES.items():
            if key in state:
                check_type(state[key], tp, key)
        for key, value in state.get("schedule", {}).items():
            check_type(value, float | None, f"schedule.{key}")
        for key in ("global_step", "train_steps"):
            if state.get(key, 0) < 0:
                raise P2OError(f"field {key!r} is {state[key]}; it cannot be negative")
    except P2OError as err:
        raise P2OError(f"{path}: {err}") from None
    return state
