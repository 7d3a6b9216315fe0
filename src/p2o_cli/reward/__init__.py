"""Rewards: extracting an answer, judging it against the gold (math-verify, the Qwen suite's
extraction), and scoring batches in worker processes with per-item time limits."""
