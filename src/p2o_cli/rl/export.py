"""Loading the policy for training and choosing what a checkpoint writes.

A checkpoint's model weights are written in ``save_dtype`` (bf16 for a bf16 model such as
Qwen3-4B: half the disk and what vLLM loads anyway). Training keeps fp32 weights; when the
written weights are narrower and the optimizer state is saved, the fp32 weights go beside it
(``master_weights.safetensors``), so a chained ``train-step`` continues exactly. Under LoRA the
directory holds the merged model plus ``adapter/`` (see :mod:`.lora`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from transformers import AutoConfig, AutoModelForCausalLM

from ..errors import P2OError
from ..files.weights import loading
from .lora import (
    ADAPTER_DIR,
    MASTER_WEIGHTS,
    adapter_base,
    cast_state_dict,
    is_lora,
    load_adapter,
    merged_state_dict,
    resolve_save_dtype,
    set_config_dtype,
    wrap_lora,
)


def load_policy(model_dir: str | Path, cfg: Any, extra: dict[str, Any]) -> tuple[Any, Any]:
    """(fp32 trainable model, the dtype the source config names) for ``model_dir``.

    A LoRA checkpoint trained on with ``lora_r > 0`` continues its adapter on its base model;
    otherwise the directory's weights load (its fp32 master weights where it has them) and,
    with ``lora_r > 0``, get a fresh adapter.
    """

    with loading(model_dir):
        source = AutoConfig.from_pretrained(str(model_dir))
    source_dtype = getattr(source, "dtype", None) or getattr(source, "torch_dtype", None)
    base = adapter_base(model_dir) if Path(model_dir).is_dir() else None
    if base is not None and cfg.lora_r > 0:
        if not Path(base).exists() and (base.startswith((".", "/")) or base.count("/") != 1):
            raise FileNotFoundError(f"{model_dir}/{ADAPTER_DIR}: its base model {base} is gone")
        with loading(base):
            model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, **extra)
        return load_adapter(model, model_dir), source_dtype
    with loading(model_dir):
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32, **extra)
        master = Path(model_dir) / MASTER_WEIGHTS
        if master.is_file():
            model.load_state_dict({k: v.float() for k, v in load_file(str(master)).items()}, strict=False)
    if cfg.lora_r > 0:
        model = wrap_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_target_modules, cfg.seed)
    return model, source_dtype


def optimizer_matches(optimizer_state: dict[str, Any], lora: bool) -> bool:
    """Whether a saved optimizer state belongs to a LoRA (adapter) or a full fine-tune."""
    names = list(optimizer_state.get("state", {}))
    return not names or any("lora_" in n for n in names) == lora


def checkpoint_payload(
    model: Any, state_dict: dict[str, Tensor] | None, cfg: Any, source_dtype: Any
) -> tuple[Any, dict[str, Tensor] | None, Callable[[Path], None]]:
    """(model to ``save_pretrained``, its state dict or None, a writer for the extra files)."""

    dtype = resolve_save_dtype(cfg.save_dtype, source_dtype)
    lora = is_lora(model)
    save_model = model.get_base_model() if lora else model
    weights = merged_state_dict(model) if lora else state_dict
    master: dict[str, Tensor] | None = None
    if dtype != torch.float32:
        full = weights if weights is not None else dict(model.state_dict())
        if cfg.save_optimizer and not lora:
            master = {k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in full.items()
                      if v.is_floating_point()}
        weights = cast_state_dict(full, dtype)

    def write_extra(tmp: Path) -> None:
        if dtype != torch.float32:
            set_config_dtype(tmp, dtype)
        if master is not None:
            save_file(master, str(tmp / MASTER_WEIGHTS))
        if lora:
            model.save_pretrained(str(tmp / ADAPTER_DIR))

    return save_model, weights, write_extra


def engine_weights(wrapped: Any, model: Any, sharded: bool) -> dict[str, Tensor]:
    """The full policy weights an engine loads: LoRA merged; under FSDP gathered on every process."""
    if not sharded:
        return merged_state_dict(model)
    if is_lora(model):
        raise P2OError("LoRA under FSDP is not supported: use DDP (--multi_gpu) for LoRA")

    return get_model_state_dict(wrapped, options=StateDictOptions(full_state_dict=True))
