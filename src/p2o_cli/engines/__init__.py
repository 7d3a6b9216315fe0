"""Inference engines behind one protocol (see ``base.Engine``)."""

from __future__ import annotations

from typing import Any

from .base import Completion, Engine, ProgressFn, SamplingConfig

ENGINES = ("hf",)


def load_engine(name: str, model: str, **options: Any) -> Engine:
    """Create the engine ``name`` for the model directory (or hub id) ``model``."""
    if name == "hf":
        from .hf import HFEngine

        return HFEngine(model, **options)
    raise ValueError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")


__all__ = ["Completion", "Engine", "ProgressFn", "SamplingConfig", "load_engine", "ENGINES"]
