"""Which engine samples the model, and how (options shared by every command that generates)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import MODEL_PANEL, Config, option

ENGINE_CHOICES = ("auto", "hf", "vllm", "openai")


@dataclass
class EngineConfig(Config):
    PANEL = MODEL_PANEL

    engine: str = option(
        "auto",
        choices=ENGINE_CHOICES,
        help="Inference engine: auto (vllm when CUDA and vllm are present, else hf), hf, vllm or openai.",
    )
    device: str = option("auto", metavar="DEVICE", help="Where the model runs: auto, cpu, cuda, cuda:1 …")
    gen_batch_size: int = option(64, min=1, help="Sequences per generate call (hf engine).")
    base_url: str | None = option(None, envvar="OPENAI_BASE_URL", metavar="URL",
                                  unset="none (--engine openai needs it)",
                                  help="openai engine: the server's URL, e.g. http://127.0.0.1:8000/v1.")
    served_model: str | None = option(None, metavar="NAME",
                                      unset="--model if the server serves it, else its only model",
                                      help="openai engine: the server's model name.")
    gpu_memory_utilization: float = option(0.9, above=0.0, max=1.0,
                                           help="vllm engine: fraction of GPU memory for weights + KV cache.")
    tensor_parallel_size: int = option(1, min=1, help="vllm engine: GPUs per model.")
    # Only p2o run trains beside its engine: other commands leave this option out (RUN_ONLY).
    vllm_sleep: bool = option(True, help="vllm engine: free its GPU memory while the trainer steps (CUDA only).")


# EngineConfig's options that only p2o run uses.
RUN_ONLY = ("vllm_sleep",)
