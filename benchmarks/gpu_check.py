"""The CUDA paths of p2o on one machine, offline, in a few minutes: see benchmarks/gpu-check.sh.

Builds a small random Qwen3 with p2o's character tokenizer (no download), then times

1. the hf engine sampling it (bf16 on CUDA, fp32 on CPU), in generated tokens/s;
2. one ``PolicyTrainer`` step on those samples (bf16 autocast on CUDA), in tokens/s, with the
   peak accelerator memory (peak RSS on CPU);
3. a 2-step miniature ``p2o run`` (``python -m p2o_cli run``) on the device;
4. if ``vllm`` imports: the vllm engine, a weight reload from the trainer and sleep/wake.

and prints one table row per check. Exit status 1 when any check failed.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import orjson

# (hidden, layers, heads, kv heads, prompts, new tokens) per device: a GPU check sized to take
# minutes, a CPU fall-back sized for CI.
SIZES = {"cuda": (1024, 8, 16, 8, 64, 256), "cpu": (64, 2, 4, 2, 8, 24)}


def peak_memory(device: str) -> str:
    import torch

    if device == "cuda":
        return f"peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
    return f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB"


def problems(n: int) -> list[dict[str, str]]:
    return [{"id": f"q{i}", "problem": f"What is {i}+{i + 1}?", "answer": str(2 * i + 1)} for i in range(n)]


def check_hf_engine(model_dir: Path, device: str, n_prompts: int, new_tokens: int) -> tuple[str, str, Any]:
    from p2o_cli.data.prompts import render
    from p2o_cli.engines.hf import HFEngine

    engine = HFEngine(str(model_dir), device=device, batch_size=n_prompts)  # bf16 on CUDA, fp32 on CPU
    prompts = [render(engine.tokenizer, p["problem"]) for p in problems(n_prompts)]
    engine.generate(prompts[:2], n=1, max_new_tokens=4, seed=0)  # warm-up: kernels, allocator
    start = time.perf_counter()
    out = engine.generate(prompts, n=1, temperature=1.0, max_new_tokens=new_tokens, seed=0)
    seconds = time.perf_counter() - start
    tokens = sum(row[0].n_tokens for row in out)
    dtype = str(next(engine.model.parameters()).dtype).removeprefix("torch.")
    return f"{tokens / seconds:,.0f} tok/s", f"{dtype}, {len(prompts)} prompts, {tokens} tokens", (prompts, out)


def check_train_step(model_dir: Path, device: str, samples: Any) -> tuple[str, str, Any]:
    import torch

    from p2o_cli.files.records import Rollout
    from p2o_cli.rl.config import TrainConfig
    from p2o_cli.rl.trainer import PolicyTrainer

    prompts, outputs = samples
    # Two rollouts per problem, one rewarded: every group has a non-zero advantage.
    rollouts = [Rollout(id=f"q{i // 2}", k=i % 2, prompt=prompts[i], response=row[0].text,
                        reward=float(i % 2), pred=None, finish_reason=row[0].finish_reason, n_tokens=row[0].n_tokens,
                        response_ids=row[0].token_ids, temperature=1.0)
                for i, row in enumerate(outputs)]
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    cfg = TrainConfig(lr=1e-5, total_steps=2, bf16=True, max_tokens_per_micro_batch=8192, temperature=1.0)
    trainer = PolicyTrainer.from_checkpoint(model_dir, cfg)
    if str(trainer.accelerator.device.type) != device:
        raise RuntimeError(f"the trainer chose {trainer.accelerator.device}, not {device}")
    trainer.step(rollouts)  # warm-up
    metrics = trainer.step(rollouts)
    return (f"{metrics['perf/train_tokens_per_s']:,.0f} tok/s", f"{peak_memory(device)}, {len(rollouts)} rollouts",
            trainer)


def check_p2o_run(model_dir: Path, device: str, work: Path) -> tuple[str, str, Any]:
    data = work / "train.jsonl"
    data.write_bytes(b"".join(orjson.dumps(p) + b"\n" for p in problems(8)))
    out = work / "run"
    cmd = [sys.executable, "-m", "p2o_cli", "run", "--model", str(model_dir), "--data", str(data), "--out", str(out),
           "--epochs", "1", "--batch-size", "4", "--k", "4", "--max-new-tokens", "32", "--temperature", "1.0",
           "--no-gepa", "--engine", "hf", "--device", device, "--save-every", "0", "--keep-last", "1"]
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError((result.stdout + result.stderr)[-2000:])
    state = orjson.loads((out / "state.json").read_bytes())
    if state["step"] != 2 or not state["done"]:
        raise RuntimeError(f"the run ended at step {state['step']} (done={state['done']})")
    return f"{seconds:.1f} s", "2 train steps, checkpoint written", None


def check_vllm(model_dir: Path, device: str, trainer: Any) -> tuple[str, str, Any]:
    from p2o_cli.data.prompts import render
    from p2o_cli.engines.vllm import VLLMEngine

    cuda = device == "cuda"
    engine = VLLMEngine(str(model_dir), gpu_memory_utilization=0.3, enable_sleep_mode=cuda, max_model_len=1024)
    prompts = [render(engine.tokenizer, p["problem"]) for p in problems(64)]
    start = time.perf_counter()
    out = engine.generate(prompts, n=1, temperature=1.0, max_new_tokens=128, seed=0)
    gen_s = time.perf_counter() - start
    tokens = sum(row[0].n_tokens for row in out)
    engine.sleep(level=1)
    start = time.perf_counter()
    engine.wake_up()
    wake_s = time.perf_counter() - start
    start = time.perf_counter()
    engine.update_weights(trainer.policy_state_dict())
    reload_s = time.perf_counter() - start
    again = engine.generate(prompts[:4], n=1, temperature=0.0, max_new_tokens=16, seed=0)
    engine.close()
    if len(again) != 4:
        raise RuntimeError("no output after the reload")
    sleep = f"sleep/wake {wake_s * 1000:.0f} ms" if cuda else "sleep mode off on CPU"
    return f"{tokens / gen_s:,.0f} tok/s", f"reload {reload_s * 1000:.0f} ms, {sleep}", None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    args = parser.parse_args()
    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu-check: no CUDA device (use --device cpu for the fall-back)", file=sys.stderr)
        return 2
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the trainer and the p2o run then pick the CPU
    from transformers.utils import logging as hf_logging

    from p2o_cli.toy.tiny import save_tiny_model

    hf_logging.disable_progress_bar()  # the table is the output

    hidden, layers, heads, kv_heads, n_prompts, new_tokens = SIZES[args.device]
    rows: list[tuple[str, str, str]] = []
    failed = False
    with tempfile.TemporaryDirectory(prefix="p2o-gpu-check-") as tmp:
        work = Path(tmp)
        model_dir = save_tiny_model(work / "model", hidden_size=hidden, num_layers=layers, num_heads=heads,
                                    num_kv_heads=kv_heads)
        n_params = sum(p.numel() for p in torch.nn.Module.parameters(_load(model_dir)))
        print(f"gpu-check on {_device_name(args.device)}: random Qwen3, {n_params / 1e6:.1f}M parameters")
        carried: Any = None
        checks = [("hf engine", lambda: check_hf_engine(model_dir, args.device, n_prompts, new_tokens)),
                  ("train step", lambda: check_train_step(model_dir, args.device, carried)),
                  ("p2o run (2 steps)", lambda: check_p2o_run(model_dir, args.device, work))]
        trainer: Any = None
        for name, check in checks:
            try:
                result, detail, value = check()
            except Exception as err:  # noqa: BLE001 - reported in the table, then the next check
                traceback.print_exc(file=sys.stderr)
                result, detail, value, failed = "FAILED", f"{type(err).__name__}: {err}".splitlines()[0], None, True
            rows.append((name, result, detail))
            if name == "hf engine":
                carried = value
            elif name == "train step":
                trainer = value
        rows.append(_vllm_row(model_dir, args.device, trainer))
        failed = failed or rows[-1][1] == "FAILED"
    _print_table(rows)
    return 1 if failed else 0


def _vllm_row(model_dir: Path, device: str, trainer: Any) -> tuple[str, str, str]:
    try:
        import vllm  # noqa: F401
    except Exception:  # noqa: BLE001 - not installed, or installed for another torch
        return ("vllm engine", "skipped", "vllm does not import here")
    if trainer is None:
        return ("vllm engine", "skipped", "the train step failed: no weights to reload")
    try:
        result, detail, _ = check_vllm(model_dir, device, trainer)
    except Exception as err:  # noqa: BLE001
        traceback.print_exc(file=sys.stderr)
        return ("vllm engine", "FAILED", f"{type(err).__name__}: {err}".splitlines()[0])
    return ("vllm engine", result, detail)


def _load(model_dir: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir)


def _device_name(device: str) -> str:
    import torch

    if device == "cuda":
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return f"cpu ({len(os.sched_getaffinity(0))} cores)"


def _print_table(rows: list[tuple[str, str, str]]) -> None:
    widths = [max(len(r[i]) for r in [("check", "result", "detail"), *rows]) for i in range(3)]
    for row in [("check", "result", "detail"), *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


if __name__ == "__main__":  # vLLM's LLM() must be created under this guard
    sys.exit(main())
