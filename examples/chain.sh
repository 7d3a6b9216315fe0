#!/usr/bin/env bash
# rollout -> mine-hard -> eval, chained through files and through a pipe, on a tiny model.
# Usage: examples/chain.sh [WORK_DIR]   (needs `p2o` on PATH; `make demo` arranges that)
set -euo pipefail
work=${1:-demo-out/chain}
mkdir -p "$work"

# A tiny untrained Qwen3 and a handful of arithmetic problems, so this runs anywhere in seconds.
python - "$work" <<'PY'
import sys, orjson
from pathlib import Path
from p2o_cli.toy.tiny import save_tiny_model
work = Path(sys.argv[1])
save_tiny_model(work / "model")
with open(work / "problems.jsonl", "wb") as fh:
    for i in range(8):
        a, b = 3 * i + 1, 7 * i + 2
        fh.write(orjson.dumps({"id": f"add-{i}", "problem": f"What is {a}+{b}?", "answer": str(a + b)}) + b"\n")
    fh.write(b"")
(work / "bench").mkdir(exist_ok=True)
(work / "bench" / "toy-add.jsonl").write_bytes((work / "problems.jsonl").read_bytes())
PY

# Through files.
p2o rollout --model "$work/model" --data "$work/problems.jsonl" --k 6 --temperature 1.0 \
    --max-new-tokens 32 --out "$work/rollouts.jsonl"
p2o mine-hard --rollouts "$work/rollouts.jsonl" --tau 0.2 --out "$work/hard.jsonl"

# Through a pipe: the same two steps with no intermediate file.
p2o rollout --model "$work/model" --data "$work/problems.jsonl" --k 6 --temperature 1.0 \
    --max-new-tokens 32 --out - | p2o mine-hard --rollouts - --out - > "$work/hard-piped.jsonl"

p2o eval --model "$work/model" --bench toy-add --data-dir "$work/bench" --eval-n 4 \
    --eval-max-new-tokens 32 --out "$work/results.json"
echo "outputs in $work: rollouts.jsonl hard.jsonl hard-piped.jsonl results.json results.samples.jsonl"
