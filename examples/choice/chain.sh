#!/usr/bin/env bash
# A multiple-choice task scored by the `choice` reward, with a reward of one's own beside it
# (examples/rewards/brevity.py), through the chained commands on a tiny model:
#   rollout -> mine-hard -> gepa -> assign -> rollout with the templates -> train-step
# Usage: examples/choice/chain.sh [WORK_DIR] [MODEL]
#   (needs `p2o` on PATH; without MODEL a tiny untrained model is made in WORK_DIR)
# `--reflector toy` keeps this offline; for real work use an API reflector (kimi, openai, api) or self.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${1:-demo-out/choice}
model=${2:-$work/model}
mkdir -p "$work"
[ -d "$model" ] || python -c "import sys; from p2o_cli.toy.tiny import save_tiny_model; save_tiny_model(sys.argv[1])" "$model"

# The reward: the chosen letter against the gold (weight 1), brevity (weight 0.1). The options
# are part of each question; the problem file's `options` field tells the reward which letters exist.
reward=(--reward choice --reward "$here/../rewards/brevity.py:brevity" --reward-weights 1,0.1
        --instruction "Answer with the letter of the correct option, as: The answer is (X).")
sampling=(--k 4 --temperature 1.0 --max-new-tokens 24)

p2o rollout --model "$model" --data "$here/problems.jsonl" "${sampling[@]}" "${reward[@]}" --out "$work/rollouts.jsonl"
p2o mine-hard --rollouts "$work/rollouts.jsonl" --out "$work/hard.jsonl"
p2o gepa --hard "$work/hard.jsonl" --model "$model" --reflector toy --width 2 --minibatch 2 --dev-size 2 \
    --budget 16 --gepa-max-new-tokens 24 "${reward[@]}" --out "$work/templates.jsonl"
p2o assign --templates "$work/templates.jsonl" --hard "$work/hard.jsonl" --k 4 --out "$work/assignments.jsonl"
p2o rollout --model "$model" --data "$here/problems.jsonl" "${sampling[@]}" "${reward[@]}" \
    --assign "$work/assignments.jsonl" --templates "$work/templates.jsonl" --out "$work/rollouts-templated.jsonl"
p2o train-step --model "$model" --rollouts "$work/rollouts-templated.jsonl" --lr 1e-4 --out "$work/step-1"
echo "outputs in $work: rollouts.jsonl hard.jsonl templates.jsonl assignments.jsonl rollouts-templated.jsonl step-1/"
