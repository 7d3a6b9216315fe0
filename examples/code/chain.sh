#!/usr/bin/env bash
# A small code task scored by the `code` reward (each response runs against its problem's unit
# tests in a limited subprocess), through the chained commands on a tiny model.
# Usage: examples/code/chain.sh [WORK_DIR] [MODEL]   (needs `p2o` on PATH)
# Each problem carries `tests` (assert lines) and a reference solution as its `answer`; the
# reward is the share of tests the response's last ```python block passes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${1:-demo-out/code}
exec "$here/../rewards/chain.sh" "$here/problems.jsonl" "$work" "${2:-$work/model}" 48 \
    --reward code --code-timeout 5 --code-memory 256 \
    --instruction "Write the Python function in a \`\`\`python code block."
