"""Progress off a terminal (timestamped lines at a steady pace) and per-sequence engine progress."""

from __future__ import annotations

import io
import re

from p2o_cli.engines import Completion
from p2o_cli.files.records import Problem
from p2o_cli.monitor.progress import LineProgress, format_duration, line_progress
from p2o_cli.rollout.generate import RolloutConfig, generate_rollouts


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class SlowEngine:
    """Finishes one sequence every ``seconds_per_sequence`` of (fake) time, reporting each."""

    def __init__(self, clock: FakeClock, seconds_per_sequence: float):
        self.clock, self.step = clock, seconds_per_sequence

    def generate(self, prompts, n=1, temperature=0.6, top_p=1.0, max_new_tokens=16, seed=0, progress=None):
        rows = []
        for _ in prompts:
            row = []
            for _ in range(n):
                self.clock.now += self.step
                row.append(Completion(text="\\boxed{1}", n_tokens=5, finish_reason="stop"))
                if progress:
                    progress(1, 5)
            rows.append(row)
        return rows


class PlainTokenizer:
    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True, **kwargs):
        return "".join(m["content"] for m in messages)


class Scorer:
    def score(self, texts, answers):
        from p2o_cli.reward.verify import RewardResult

        return [RewardResult(reward=1.0, pred="1") for _ in texts]


ELAPSED = re.compile(r"elapsed (\d+):(\d\d)")


def test_format_duration() -> None:
    assert format_duration(75) == "1:15"
    assert format_duration(3725) == "1:02:05"
    assert format_duration(0) == "0:00"


def test_two_minute_rollout_logs_a_line_at_least_every_30_seconds() -> None:
    clock = FakeClock()
    engine = SlowEngine(clock, seconds_per_sequence=2.5)  # 8 problems x 6 = 48 sequences = 120 s
    stream = io.StringIO()
    problems = [Problem(id=f"q{i}", problem=f"{i}+0?", answer="1") for i in range(8)]
    with line_progress("rollout", 48, stream=stream, interval=20.0, clock=clock, heartbeat=False) as progress:
        rollouts = generate_rollouts(engine, PlainTokenizer(), problems, RolloutConfig(k=6), Scorer(),
                                     progress=progress)
    assert len(rollouts) == 48
    lines = stream.getvalue().splitlines()
    elapsed = [int(m.group(1)) * 60 + int(m.group(2)) for m in map(ELAPSED.search, lines) if m]
    assert elapsed[-1] == 120 and lines[-1].endswith("done")
    gaps = [b - a for a, b in zip([0, *elapsed], elapsed)]
    assert max(gaps) <= 30, gaps
    assert len(lines) >= 4
    first = lines[0]
    # 2026-11-29 16:30:12 rollout 8/48 (17%) 0.40/s 2 tok/s elapsed 0:20 eta 1:40
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d rollout 8/48 \(17%\) 0\.40/s 2 tok/s elapsed 0:20 eta 1:40$",
                    first), first


def test_heartbeat_writes_while_an_engine_call_blocks() -> None:
    clock = FakeClock()
    progress = LineProgress("eval", 10, io.StringIO(), interval=5.0, clock=clock)
    progress.tick()
    assert progress.stream.getvalue() == ""  # nothing before the first interval
    clock.now += 6.0  # no completion arrived, but time passed
    progress.tick()
    assert "eval 0/10 (0%) 0.00/s elapsed 0:06 eta ?" in progress.stream.getvalue()


def test_hf_engine_reports_sequences_as_they_finish(tiny_model_dir) -> None:
    from p2o_cli.data.prompts import render
    from p2o_cli.engines import load_engine

    engine = load_engine("hf", str(tiny_model_dir), device="cpu", batch_size=64)
    prompts = [render(engine.tokenizer, f"What is {i}+{i}?") for i in range(8)]
    calls: list[tuple[int, int]] = []
    out = engine.generate(prompts, n=4, temperature=1.0, max_new_tokens=24, seed=3,
                          progress=lambda done, tokens: calls.append((done, tokens)))
    completions = [c for row in out for c in row]
    # One chunk of 32 sequences, but progress arrives step by step, not once at the end.
    assert len(calls) > 2
    assert sum(d for d, _ in calls) == 32
    assert sum(t for _, t in calls) == sum(c.n_tokens for c in completions)
