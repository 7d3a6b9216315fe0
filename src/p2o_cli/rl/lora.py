"""LoRA through peft, and the weights a checkpoint writes for the inference engines.

With ``lora_r > 0`` the trainer adapts only low-rank matrices beside the frozen base weights
(peft's ``LoraConfig``), as TRL users do to train a 4B model on one GPU. A LoRA checkpoint
holds two views of the same policy:

- the model directory itself: the *merged* weights (W + B·A·alpha/r), a plain Hugging Face
  model that ``from_pretrained``, ``p2o eval`` and vLLM load as they are;
- ``adapter/``: the adapter in PEFT format (``adapter_config.json``, ``adapter_model.safetensors``)
  naming its base model, which a chained ``train-step`` continues training.

The adapter lives in a subdirectory because transformers treats a directory holding an
``adapter_config.json`` as "base model + adapter" and would not load the merged weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import P2OError

ADAPTER_DIR = "adapter"
MASTER_WEIGHTS = "master_weights.safetensors"
SAVE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def peft_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("peft") is not None


def target_modules(text: str) -> str | list[str]:
    """``all-linear`` stays peft's keyword; ``q_proj,v_proj`` becomes a list."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise P2OError("--lora-target-modules needs at least one module name (or all-linear)")
    return "all-linear" if names == ["all-linear"] else names


def wrap_lora(model: Any, r: int, alpha: float, modules: str, seed: int) -> Any:
    """A fresh LoRA adapter on ``model`` (B starts at zero, so the policy is unchanged)."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)  # A's initialisation
    config = LoraConfig(r=r, lora_alpha=alpha, target_modules=target_modules(modules), lora_dropout=0.0,
                        bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def adapter_base(model_dir: str | Path) -> str | None:
    """The base model an adapter checkpoint names, or None when ``model_dir`` has no adapter."""
    config = Path(model_dir) / ADAPTER_DIR / "adapter_config.json"
    if not config.is_file():
        return None
    return json.loads(config.read_text())["base_model_name_or_path"]


def load_adapter(base_model: Any, model_dir: str | Path) -> Any:
    """``base_model`` with the checkpoint's adapter attached, trainable."""
    from peft import PeftModel

    return PeftModel.from_pretrained(base_model, str(Path(model_dir) / ADAPTER_DIR), is_trainable=True)


def is_lora(model: Any) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


def merged_state_dict(model: Any) -> dict[str, Tensor]:
    """The plain model's state dict with every active adapter folded into its base weight.

    Keys are the base model's own (``…q_proj.weight``), so an engine or ``from_pretrained``
    takes them as it takes a full fine-tune. Computed out of place: peft's ``merge_adapter``
    / ``unmerge_adapter`` would add and subtract B·A in the live fp32 weights, which drifts
    them by rounding on every call.
    """
    if not is_lora(model):
        return dict(model.state_dict())
    from peft.tuners.lora import LoraLayer

    base = model.get_base_model()
    deltas: dict[str, Tensor] = {}
    for name, module in base.named_modules():
        if isinstance(module, LoraLayer):
            with torch.no_grad():
                delta = sum(module.get_delta_weight(a) for a in module.active_adapters if a in module.lora_A)
            if isinstance(delta, Tensor):
                deltas[f"{name}.base_layer.weight"] = delta
    merged: dict[str, Tensor] = {}
    for name, tensor in base.state_dict().items():
        if "lora_" in name:
            continue
        value = tensor.detach()
        if name in deltas:
            value = value + deltas[name].to(value.dtype)
        merged[name.replace(".base_layer.", ".")] = value
    return merged


def resolve_save_dtype(save_dtype: str, source_dtype: Any) -> torch.dtype:
    """``auto``: the dtype the source model's config names when it is bf16/fp16, else float32."""
    if save_dtype != "auto":
        return SAVE_DTYPES[save_dtype]
    text = str(source_dtype or "").replace("torch.", "")
    return SAVE_DTYPES[text] if text in ("bfloat16", "float16") else torch.float32


def cast_state_dict(state_dict: dict[str, Tensor], dtype: torch.dtype) -> dict[str, Tensor]:
    """Floating-point tensors to ``dtype`` on the CPU (integer buffers stay as they are)."""
    return {
        k: (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().to("cpu"))
        for k, v in state_dict.items()
    }


def set_config_dtype(model_dir: Path, dtype: torch.dtype) -> None:
    """Make ``config.json`` name the dtype the weights were written in (vLLM's ``dtype=auto`` reads it)."""
    path = model_dir / "config.json"
    config = json.loads(path.read_text())
    name = str(dtype).replace("torch.", "")
    for key in ("dtype", "torch_dtype"):
        if key in config or key == "dtype":
            config[key] = name
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
