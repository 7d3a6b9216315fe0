"""Verifications/s: p2o's RewardScorer (2 workers, per-item timeout on) vs serial math_verify.

    python benchmarks/reward_bench.py [--serial-sample N]

Pairs: every gold of the six benchmarks (aime24, aime25, amc23, math500, minerva_math,
olympiadbench; from $P2O_DATA_DIR or ../shared/data) × K=6 responses shaped like an RL batch's:
the gold boxed as is, the gold with surrounding prose, a wrong answer (another problem's gold),
a perturbed integer, an answer in a different form, and a response without a box. The serial
baseline is what a user writes: ``verify(parse(gold), parse(response))`` per pair with
math_verify's own timeouts, on an even sample of the same pairs (its rate is what is compared).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

BENCHES = ("aime24", "aime25", "amc23", "math500", "minerva_math", "olympiadbench")


def data_dir() -> Path:
    env = os.environ.get("P2O_DATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def pairs(seed: int = 0) -> list[tuple[str, str]]:
    golds = []
    for name in BENCHES:
        path = data_dir() / "bench" / "normalized" / f"{name}.jsonl"
        golds += [str(json.loads(line)["answer"]) for line in path.read_text().splitlines() if line.strip()]
    rng = random.Random(seed)
    out = []
    for gold in golds:
        other = rng.choice(golds)
        wrong_int = str(int(gold) + rng.choice([-1, 1, 10])) if gold.lstrip("-").isdigit() else other
        out += [
            (rf"So the final answer is $\boxed{{{gold}}}$.", gold),
            (rf"Putting it together we get \boxed{{{gold}}}", gold),
            (rf"Therefore the answer is $\boxed{{{other}}}$.", gold),
            (rf"Hence $\boxed{{{wrong_int}}}$.", gold),
            (rf"The answer is $\boxed{{{gold} }}$, as claimed.", gold),
            ("I could not finish the computation in time.", gold),
        ]
    return out


def serial_rate(sample: list[tuple[str, str]]) -> float:
    from math_verify import parse, verify

    start = time.perf_counter()
    for response, gold in sample:
        try:
            verify(parse(f"\\boxed{{{gold}}}"), parse(response))
        except Exception:  # noqa: BLE001 - a failed judgement still took its time
            pass
    return len(sample) / (time.perf_counter() - start)


def scorer_rate(all_pairs: list[tuple[str, str]]) -> tuple[float, int]:
    from p2o_cli.reward.pool import RewardScorer

    with RewardScorer(timeout_s=5.0, workers=2) as scorer:
        scorer.score([r"\boxed{1}"], ["2"])  # start the pool outside the clock
        start = time.perf_counter()
        scorer.score([r for r, _ in all_pairs], [g for _, g in all_pairs])
        return len(all_pairs) / (time.perf_counter() - start), scorer.n_timeouts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--serial-sample", type=int, default=900)
    args = ap.parse_args()
    all_pairs = pairs()
    step = max(1, len(all_pairs) // args.serial_sample)
    serial = serial_rate(all_pairs[::step])
    pool, timeouts = scorer_rate(all_pairs)
    print(json.dumps({"pairs": len(all_pairs), "serial_sample": len(all_pairs[::step]), "serial_per_s": serial,
                      "scorer_per_s": pool, "timeouts": timeouts}))


if __name__ == "__main__":
    main()
