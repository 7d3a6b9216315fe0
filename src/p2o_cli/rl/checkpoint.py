"""A train-step checkpoint: a Hugging Face model directory plus what continues the optimizer.

Layout (all written at once, atomically — a failed save leaves no directory):

- ``config.json``, ``model.safetensors``, tokenizer files: loadable by ``from_pretrained``/vLLM;
- ``optimizer.safetensors``: the optimizer state, one tensor per (parameter, slot) named
  ``<parameter fqn>/<slot>``; the param groups and any non-tensor state live in a JSON index
  in the file's metadata. Keyed by parameter names, not positions, so it survives a change of
  wrapper (plain, DDP, FSDP) between saving and loading;
- ``trainer_state.json``: step counters, the LR schedule and the RNG state;
- ``p2o_config.json``: the resolved training config that produced the checkpoint.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import DistributedType
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

from ..errors import P2OError, one_line
from ..files.faults import fault
from ..files.outputs import OutputError, atomic_path
from ..files.weights import TRAINER_STATE, read_trainer_state  # noqa: F401 - the trainer imports it from here
from .export import checkpoint_payload

OPTIMIZER_STATE = "optimizer.safetensors"
TRAIN_CONFIG = "p2o_config.json"
INDEX_KEY = "p2o_optimizer_index"
FORMAT = 1


def flatten_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, Tensor], str]:
    """``{"state": {fqn: {slot: value}}, "param_groups": [...]}`` → (tensors, JSON index)."""
    tensors: dict[str, Tensor] = {}
    slots: dict[str, dict[str, Any]] = {}
    for name, entry in state["state"].items():
        slots[name] = {}
        for slot, value in entry.items():
            if isinstance(value, Tensor):
                # contiguous + clone: safetensors refuses views and shared storage.
                tensors[f"{name}/{slot}"] = value.detach().to("cpu").contiguous().clone()
                slots[name][slot] = None
            else:
                slots[name][slot] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in state["param_groups"]]
    index = json.dumps({"format": FORMAT, "state": slots, "param_groups": groups})
    return tensors, index


def unflatten_optimizer_state(tensors: dict[str, Tensor], index: str) -> dict[str, Any]:
    meta = json.loads(index)
    if meta.get("format") != FORMAT:
        raise P2OError(f"optimizer state format {meta.get('format')!r} is not {FORMAT}")
    state = {
        name: {slot: tensors[f"{name}/{slot}"] if value is None else value for slot, value in entry.items()}
        for name, entry in meta["state"].items()
    }
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}


def save_optimizer_state(path: str | Path, state: dict[str, Any]) -> None:
    tensors, index = flatten_optimizer_state(state)
    save_file(tensors, str(path), metadata={INDEX_KEY: index})


def load_optimizer_state(path: str | Path) -> dict[str, Any]:
    with safe_open(str(path), framework="pt") as fh:
        metadata = fh.metadata() or {}
        if INDEX_KEY not in metadata:
            raise P2OError(f"{path}: not a p2o optimizer state (no {INDEX_KEY} metadata)")
        tensors = {key: fh.get_tensor(key) for key in fh.keys()}  # noqa: SIM118 (safe_open is not a mapping)
    return unflatten_optimizer_state(tensors, metadata[INDEX_KEY])


def capture_rng() -> dict[str, Any]:
    """Torch RNG state (CPU and CUDA), JSON-safe, so a chained step draws what an in-process one would."""
    state: dict[str, Any] = {"cpu": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode()}
    if torch.cuda.is_available():
        state["cuda"] = [base64.b64encode(s.numpy().tobytes()).decode() for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng(state: dict[str, Any]) -> None:
    def tensor(text: str) -> Tensor:
        return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)

    if "cpu" in state:
        try:
            torch.set_rng_state(tensor(state["cpu"]))
        except (TypeError, ValueError, RuntimeError) as err:
            raise P2OError(f"{TRAINER_STATE}: its rng state is corrupt ({one_line(str(err), 120)})") from None
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([tensor(s) for s in state["cuda"]])


def write_weight_index(model_dir: Path) -> None:
    """List the model's tensors in ``model.safetensors.index.json``.

    vLLM otherwise loads every ``*.safetensors`` in the directory, optimizer state included;
    transformers ignores the index when ``model.safetensors`` exists.
    """
    weights = model_dir / "model.safetensors"
    index = model_dir / "model.safetensors.index.json"
    if not weights.is_file() or index.exists():
        return
    with safe_open(weights, framework="pt") as fh:
        names = list(fh.keys())
    index.write_text(json.dumps({"metadata": {}, "weight_map": dict.fromkeys(names, weights.name)}, indent=2) + "\n")


def check_finite_weights(tensors: dict[str, Tensor]) -> None:
    """Refuse to save weights holding NaN or infinity (one reduction per tensor, no copy)."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not torch.isfinite(torch.sum(tensor, dtype=torch.float32)):
            raise P2OError(f"the weights to save are not finite ({name} holds NaN or infinity); nothing was saved "
                           "(lower --lr or --weight-decay)")


_IO_MESSAGE = re.compile(r'message: "([^"]+)"')


@contextmanager
def _writing(out_dir: str | Path) -> Iterator[None]:
    """A failed write (disk full, file too large) says so, whichever library wrote the file."""
    try:
        yield
    except Exception as err:
        if type(err).__name__ != "SafetensorError":
            raise
        found = _IO_MESSAGE.search(str(err))
        detail = found.group(1) if found else one_line(str(err), 200)
        raise OutputError(f"{out_dir}: cannot write the checkpoint ({detail}); the previous one, if any, is "
                          "untouched") from None


def save_checkpoint(
    out_dir: str | Path,
    model: Any,
    tokenizer: Any,
    *,
    state_dict: dict[str, Tensor] | None,
    optimizer_state: dict[str, Any] | None,
    trainer_state: dict[str, Any],
    config: dict[str, Any] | None = None,
    extra: Callable[[Path], None] | None = None,
    owner: str | None = None,
) -> None:
    """Write the whole checkpoint into a temporary directory and rename it into place.

    ``extra(tmp)`` writes further files (adapter, master weights) into it before the rename;
    ``owner`` (e.g. the run writing it) goes into its owner file (files/outputs.py), which is
    what lets p2o replace or prune it later.
    """
    check_finite_weights(state_dict if state_dict is not None else model.state_dict())
    with atomic_path(out_dir, kind="checkpoint", owner=owner) as tmp, _writing(out_dir):
        tmp.mkdir()
        model.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
        write_weight_index(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        if optimizer_state is not None:
            save_optimizer_state(tmp / OPTIMIZER_STATE, optimizer_state)
        (tmp / TRAINER_STATE).write_text(json.dumps(trainer_state, indent=2) + "\n")
        if config is not None:
            (tmp / TRAIN_CONFIG).write_text(json.dumps(config, indent=2, default=str) + "\n")
        if extra is not None:
            extra(tmp)
        fault("save")  # reliability tests: killed with the checkpoint written but not in place


def save_trainer(trainer: Any, out_dir: str | Path, config: dict[str, Any], owner: str | None = None) -> None:
    """A :class:`~p2o_cli.rl.trainer.PolicyTrainer`'s checkpoint: gathered from however many
    processes hold it (a collective under FSDP/DeepSpeed), written by the main process."""

    acc = trainer.accelerator
    sharded = acc.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
    state_dict = acc.get_state_dict(trainer.wrapped) if sharded else None
    optimizer_state = None
    if acc.distributed_type != DistributedType.DEEPSPEED:
        optimizer_state = get_optimizer_state_dict(
            trainer.wrapped, trainer.optimizer.optimizer,
            options=StateDictOptions(full_state_dict=True, cpu_offload=True),
        )
    if acc.is_main_process:
        model, state_dict, write_extra = checkpoint_payload(trainer.model, state_dict, trainer.cfg,
                                                            trainer.source_dtype)
        save_checkpoint(out_dir, model, trainer.tokenizer, state_dict=state_dict,
                        optimizer_state=optimizer_state if trainer.cfg.save_optimizer else None,
                        trainer_state=trainer.state(), config=config, extra=write_extra, owner=owner)
    acc.wait_for_everyone()
