"""Generation tokens/s: p2o's hf engine vs calling ``model.generate`` directly on the same prompts.

    python benchmarks/gen_bench.py

Same model, prompts (the setting's 32 chat-rendered questions, each sampled K=6 times), T=0.6,
top_k=0, top_p=1, at most 64 new tokens, one batch; alternated twice, best of each kept.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import setting


def main() -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from p2o_cli.data.prompts import render
    from p2o_cli.engines.hf import HFEngine

    tok = AutoTokenizer.from_pretrained(setting.model_dir())
    model = AutoModelForCausalLM.from_pretrained(setting.model_dir(), dtype=torch.float32).eval()
    prompts = [render(tok, p.problem) for p in setting.problems()]
    engine = HFEngine(model, tok, batch_size=len(prompts) * setting.K)
    ids = tok(prompts, add_special_tokens=False, padding=True, padding_side="left", return_tensors="pt")
    best = {"engine": 0.0, "raw": 0.0}
    for rep in range(2):
        best["engine"] = max(best["engine"], setting.engine_tokens_per_s(engine, prompts, rep))
        torch.manual_seed(rep)
        start = time.perf_counter()
        with torch.inference_mode():
            gen = model.generate(**ids, do_sample=True, temperature=setting.TEMPERATURE, top_k=0, top_p=1.0,
                                 max_new_tokens=setting.MAX_NEW_TOKENS, num_return_sequences=setting.K,
                                 pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        new = gen[:, ids["input_ids"].shape[1]:]
        # Tokens up to and including the first eos, as the engine counts them.
        ended = (new == tok.eos_token_id).int().cumsum(1)
        n_raw = int(((ended == 0) | ((ended == 1) & (new == tok.eos_token_id))).sum())
        best["raw"] = max(best["raw"], n_raw / (time.perf_counter() - start))
    print(json.dumps({"engine_tokens_per_s": best["engine"], "raw_tokens_per_s": best["raw"]}))


if __name__ == "__main__":
    main()
