"""Loop overhead: the share of a toy-world ``p2o run`` spent outside generation, training and GEPA.

    python benchmarks/loop_bench.py

Runs ``p2o run`` as a user would (a subprocess, timed from launch to exit) with the demo's
settings (the toy run config, `p2o toy config`: batch 32 × K=6, ≤ 80 new tokens, 2 mini-batch updates, GEPA
W=4 B=3 dev 32 budget 600, toy reflector) on 64 sampled problems for 2 epochs (4 RL steps and
one GEPA phase), with no evaluation (the figure excludes it). From metrics.jsonl and the GEPA
metrics: generation = Σ timing/gen, training = Σ timing/step (the trainer's prepare, old
log-probs and updates), GEPA = its whole phase (``timing/gepa_phase``: the seed's dev scoring,
the iterations and the assignment). Everything else of the wall-clock is the overhead: reward
scoring, writing rollouts / hard sets / checkpoints / state, start-up (imports, model and engine
load).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gepa_bench
import setting

RUN = setting.WORK / "loop-run"


def config() -> Path:
    """The toy run config (`p2o toy config`) without its [eval] table (evaluation is excluded
    from the figure), writing to RUN."""
    from p2o_cli.toy.sweep import toy_run_config

    text = toy_run_config().read_text()
    text = re.sub(r"\n\[eval\]\n(?:[^\[\n].*\n|\n)*", "\n", text)
    text = f'out = "{RUN}"\n' + text
    out = setting.WORK / "loop-toy.toml"
    out.write_text(text)
    return out


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def main() -> None:
    world = gepa_bench.world_dir()
    if RUN.exists():
        shutil.rmtree(RUN)
    cmd = [sys.executable, "-m", "p2o_cli", "run", "--config", str(config()), "--model", str(world / "model"),
           "--data", str(world / "train.jsonl"), "--sample", "64", "--epochs", "2", "--min-hard", "8"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    metrics = rows(RUN / "metrics.jsonl")
    steps = [r for r in metrics if "timing/gen" in r]
    gepa_rows = [r for p in sorted(RUN.glob("**/gepa-metrics.jsonl")) for r in rows(p)]
    parts = {
        "gen": sum(r["timing/gen"] for r in steps),
        "train": sum(r["timing/step"] for r in steps),
        "gepa": sum(r["timing/gepa_phase"] for r in metrics if "timing/gepa_phase" in r),
        "gepa_iterations_s": sum(r.get("gepa/seconds", 0.0) for r in gepa_rows),
        "reward": sum(r["timing/reward"] for r in steps),
        "io": sum(r["timing/io"] for r in steps),
    }
    overhead = wall - parts["gen"] - parts["train"] - parts["gepa"]
    print(json.dumps({"wall_s": wall, "steps": len(steps), "gepa_iterations": len(gepa_rows), **parts,
                      "overhead_s": overhead, "share": overhead / wall}))


if __name__ == "__main__":
    main()
