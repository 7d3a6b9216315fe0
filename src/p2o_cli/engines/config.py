"""Which engine samples the model, and how (options shared by every command that generates)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Config, option

ENGINE_CHOICES = ("auto", "hf", "vllm", "openai")


@dataclass
class EngineConfig(Config):
    engine: str = option(
        "auto",
        choices=ENGINE_CHOICES,
        help="Inference engine: auto (vllm when CUDA and vllm are present, else hf), hf, vllm or openai.",
    )
    device: str = option("auto", help="auto, cpu, cuda, cuda:1 …")
    gen_batch_size: int = option(64, min=1, help="Sequences per generate call (hf engine).")
    base_url: str | None = option(None, envvar="OPENAI_BASE_URL",
                                  help="openai engine: the server's URL, e.g. http://127.0.0.1:8000/v1.")
    served_model: str | None = option(None, help="openai engine: the server's model name "
                                                 "(default: --model if served, else its only model).")
    gpu_memory_utilization: float = option(0.9, above=0.0, max=1.0,
                                           help="vllm engine: fraction of GPU memory for weights + KV cache.")
    tensor_parallel_size: int = option(1, min=1, help="vllm engine: GPUs per model.")
    vllm_sleep: bool = option(True, help="vllm engine in p2o run: free its GPU memory while the trainer steps "
                                         "(CUDA only).")
