#!/usr/bin/env bash
# p2o's CUDA paths on one GPU, offline, in under 8 minutes: the hf engine in bf16, a train step
# in bf16 (tokens/s, peak memory), a 2-step miniature `p2o run`, and — if vllm imports — the
# vllm engine with a weight reload and sleep/wake. It builds its own small random model.
#
#   benchmarks/gpu-check.sh                 # on the GPU machine
#   benchmarks/gpu-check.sh --device cpu    # the CPU fall-back (CI-sized, ~1 minute)
#
# PYTHON picks the interpreter (default: .venv/bin/python if present, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec timeout 480 "$PYTHON" benchmarks/gpu_check.py "$@"
