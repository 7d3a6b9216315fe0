#!/usr/bin/env bash
# A small code task scored by the `code` reward (each response runs against its problem's unit
# tests in a limited subprocess), through the chained commands on a tiny model:
#   rollout -> mine-hard -> gepa -> assign -> rollout with the templates -> train-step
# Usage: examples/code/chain.sh [WORK_DIR] [MODEL]
#   (needs `p2o` on PATH; without MODEL a tiny untrained model is made in WORK_DIR)
# `--reflector toy` keeps this offline; for real work use an API reflector (kimi, openai, api) or self.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${1:-demo-out/code}
model=${2:-$work/model}
mkdir -p "$work"
[ -d "$model" ] || python -c "import sys; from p2o_cli.toy.tiny import save_tiny_model; save_tiny_model(sys.argv[1])" "$model"

# Each problem carries `tests` (assert lines) and a reference solution as its `answer`; the
# reward is the share of tests the response's last ```python block passes.
reward=(--reward code --code-timeout 5 --code-memory 256
        --instruction "Write the Python function in a \`\`\`python code block.")
sampling=(--k 4 --temperature 1.0 --max-new-tokens 48)

p2o rollout --model "$model" --data "$here/problems.jsonl" "${sampling[@]}" "${reward[@]}" --out "$work/rollouts.jsonl"
p2o mine-hard --rollouts "$work/rollouts.jsonl" --out "$work/hard.jsonl"
p2o gepa --hard "$work/hard.jsonl" --model "$model" --reflector toy --width 2 --minibatch 2 --dev-size 2 \
    --budget 16 --gepa-max-new-tokens 48 "${reward[@]}" --out "$work/templates.jsonl"
p2o assign --templates "$work/templates.jsonl" --hard "$work/hard.jsonl" --k 4 --out "$work/assignments.jsonl"
p2o rollout --model "$model" --data "$here/problems.jsonl" "${sampling[@]}" "${reward[@]}" \
    --assign "$work/assignments.jsonl" --templates "$work/templates.jsonl" --out "$work/rollouts-templated.jsonl"
p2o train-step --model "$model" --rollouts "$work/rollouts-templated.jsonl" --lr 1e-4 --out "$work/step-1"
echo "outputs in $work: rollouts.jsonl hard.jsonl templates.jsonl assignments.jsonl rollouts-templated.jsonl step-1/"
