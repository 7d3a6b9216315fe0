"""Inference engines behind one protocol (see ``base.Engine``).

- ``hf``: transformers ``generate`` in this process (CPU or GPU); the reference behaviour.
- ``vllm``: a ``vllm.LLM`` in this process; weights updated in place after each train step.
- ``openai``: any OpenAI-compatible server (vllm serve, SGLang, a hosted API); no weight updates.
- ``auto``: vllm when CUDA and vllm are both present, else hf.

Engine modules are imported lazily: neither vllm nor a server is needed for the default install.
"""

from __future__ import annotations

from typing import Any

from .base import Completion, Engine, ProgressFn

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
        from .hf import HFEngine

        return HFEngine(model, **options)
    if name == "vllm":
        from .vllm import VLLMEngine

        return VLLMEngine(model, **options)
    if name == "openai":
        from .openai import OpenAIEngine

        return OpenAIEngine(model, **options)
    raise ValueError(f"unknown engine {name!r}; choose one of auto, {', '.join(ENGINES)}")


__all__ = ["ENGINES", "Completion", "Engine", "ProgressFn", "load_engine", "resolve_engine"]
