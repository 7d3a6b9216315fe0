"""The benchmark setting shared by every figure: one model, one problem set, one set of knobs.

The issue's step: a 4M-parameter Qwen3 built from config (char tokenizer), 32 toy addition
problems × K=6 rollouts, at most 64 new tokens, T=0.6, top_k=0, 2 mini-batch updates, clip 0.2,
no KL, token-mean loss. Every bench script imports these so p2o and each baseline see the same.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent
WORK = Path(os.environ.get("P2O_BENCH_DIR", ROOT / ".work"))
RESULTS = ROOT / "results.json"

N_PROBLEMS = int(os.environ.get("P2O_BENCH_PROBLEMS", "32"))
K = 6
MAX_NEW_TOKENS = 64
TEMPERATURE = 0.6
LR = 1e-6
MODEL_SHAPE = {"hidden_size": 256, "num_layers": 4, "num_heads": 4, "num_kv_heads": 2}


@dataclass
class Figure:
    """One row of results.json: ``ratio`` is p2o / baseline when higher is better, else inverted."""

    name: str
    p2o: float
    baseline: float
    unit: str
    ratio: float
    target: str
    met: bool
    machine: str = field(default_factory=lambda: machine())
    notes: str = ""


def machine() -> str:
    cores = os.cpu_count()
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{model}, {cores} cores, {mem:.0f} GiB, {platform.system()} (CPU only)"


def load() -> str:
    """The 1-minute load average, to say whether the machine was shared during a figure."""
    return f"{os.getloadavg()[0]:.2f}"


def model_dir() -> Path:
    """The 4M-parameter Qwen3 (random init, seed 0), saved once under the work folder."""
    from p2o_cli.toy.tiny import save_tiny_model

    out = WORK / "qwen3-4m"
    if not (out / "config.json").is_file():
        save_tiny_model(out, seed=0, **MODEL_SHAPE)
    return out


def problems(n: int = N_PROBLEMS) -> list[Any]:
    from p2o_cli.toy.tasks import make_problems

    return make_problems(seed=11, kind="hard", n=n)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def engine_tokens_per_s(engine: Any, prompts: list[str], seed: int) -> float:
    """One p2o engine call at the benchmark's sampling settings: completion tokens per second."""
    start = time.perf_counter()
    out = engine.generate(prompts, n=K, temperature=TEMPERATURE, max_new_tokens=MAX_NEW_TOKENS, seed=seed)
    return sum(c.n_tokens for row in out for c in row) / (time.perf_counter() - start)


def run_json(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 1800) -> dict[str, Any]:
    """Run a bench worker that prints one JSON object on its last stdout line."""
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def write_figures(figures: list[Figure]) -> None:
    """Merge figures into results.json by name (a partial run keeps the other rows)."""
    rows = {r["name"]: r for r in (json.loads(RESULTS.read_text()) if RESULTS.is_file() else [])}
    rows.update({f.name: asdict(f) for f in figures})
    RESULTS.write_text(json.dumps(list(rows.values()), indent=2) + "\n")
