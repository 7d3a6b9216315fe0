#!/usr/bin/env bash
# One problem file through the chained commands with the reward options given, on a tiny model:
#   rollout -> mine-hard -> gepa -> assign -> rollout with the templates -> train-step
# Usage: examples/rewards/chain.sh PROBLEMS WORK_DIR MODEL MAX_NEW_TOKENS [REWARD AND PROMPT OPTIONS...]
#   (needs `p2o` on PATH; a MODEL directory that does not exist is made: a tiny untrained Qwen3)
# examples/choice/chain.sh and examples/code/chain.sh call it with their rewards.
# `--reflector toy` keeps this offline; for real work use an API reflector (kimi, openai, api) or self.
set -euo pipefail
problems=$1 work=$2 model=$3 tokens=$4
shift 4
reward=("$@")
mkdir -p "$work"
[ -d "$model" ] || python -c "import sys; from p2o_cli.toy.tiny import save_tiny_model; save_tiny_model(sys.argv[1])" "$model"
sampling=(--k 4 --temperature 1.0 --max-new-tokens "$tokens")

p2o rollout --model "$model" --data "$problems" "${sampling[@]}" "${reward[@]}" --out "$work/rollouts.jsonl"
p2o mine-hard --rollouts "$work/rollouts.jsonl" --out "$work/hard.jsonl"
p2o gepa --hard "$work/hard.jsonl" --model "$model" --reflector toy --width 2 --minibatch 2 --dev-size 2 \
    --budget 16 --gepa-max-new-tokens "$tokens" "${reward[@]}" --out "$work/templates.jsonl"
p2o assign --templates "$work/templates.jsonl" --hard "$work/hard.jsonl" --k 4 --out "$work/assignments.jsonl"
p2o rollout --model "$model" --data "$problems" "${sampling[@]}" "${reward[@]}" \
    --assign "$work/assignments.jsonl" --templates "$work/templates.jsonl" --out "$work/rollouts-templated.jsonl"
p2o train-step --model "$model" --rollouts "$work/rollouts-templated.jsonl" --lr 1e-4 --out "$work/step-1"
echo "outputs in $work: rollouts.jsonl hard.jsonl templates.jsonl assignments.jsonl rollouts-templated.jsonl step-1/"
