#!/usr/bin/env bash
# The toy-world demo: P²O, the GRPO baseline, the w/o-distillation ablation and P²O with the
# paper's group baseline for templated groups, all with the same seed and step budget, then a
# report. Usage: examples/demo.sh [WORK_DIR] (SEED=1 by default).
set -euo pipefail
work=${1:-demo-out}
seed=${SEED:-1}
config=${CONFIG:-examples/toy.toml}
world="$work/world-$seed"

if [ ! -f "$world/world.json" ]; then
    p2o toy init --out "$world" --seed "$seed"
fi

common=(--config "$config" --model "$world/model" --data "$world/train.jsonl"
        --data-dir "$world/bench" --seed "$seed")
run() {  # run NAME FLAGS...: fresh, or resumed if a previous demo was interrupted
    local name=$1; shift
    local out="$work/runs-$seed/$name"
    if [ -f "$out/state.json" ]; then
        grep -q '"done": true' "$out/state.json" || p2o run --resume "$out"
    else
        p2o run "${common[@]}" --out "$out" --name "$name" "$@"
    fi
}
run p2o
run grpo --no-gepa
run p2o-no-distill --distill none
run p2o-group-baseline --templated-baseline group

p2o report "$work/runs-$seed/p2o" "$work/runs-$seed/grpo" "$work/runs-$seed/p2o-no-distill" \
    "$work/runs-$seed/p2o-group-baseline" --out "$work/report-$seed"
