#!/usr/bin/env bash
# A multiple-choice task scored by the `choice` reward, with a reward of one's own beside it
# (examples/rewards/brevity.py, weight 0.1), through the chained commands on a tiny model.
# Usage: examples/choice/chain.sh [WORK_DIR] [MODEL]   (needs `p2o` on PATH)
# The options are part of each question; the problem file's `options` field tells the reward
# which letters exist.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${1:-demo-out/choice}
exec "$here/../rewards/chain.sh" "$here/problems.jsonl" "$work" "${2:-$work/model}" 24 \
    --reward choice --reward "$here/../rewards/brevity.py:brevity" --reward-weights 1,0.1 \
    --instruction "Answer with the letter of the correct option, as: The answer is (X)."
