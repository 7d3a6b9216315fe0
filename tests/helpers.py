"""Helpers several test modules share: a miniature run's flags, a small rollout batch, scripted
GEPA stand-ins, TensorBoard read-back. Fixtures live in conftest.py."""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from p2o_cli.data.prompts import render
from p2o_cli.engines import Completion
from p2o_cli.files.records import Hard, Rollout, to_dict
from p2o_cli.monitor.tracking import STEP_KEY, scalars
from p2o_cli.toy.tiny import char_tokenizer

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def run_args(model: Path, world: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "p2o_cli", "run", "--model", str(model), "--data", str(world / "train.jsonl"),
        "--out", str(out), "--epochs", "2", "--batch-size", "4", "--k", "2", "--max-new-tokens", "6",
        "--temperature", "1.0", "--lr", "1e-3", "--min-hard", "2", "--reflector", "toy", "--width", "2",
        "--minibatch", "2", "--budget", "16", "--dev-size", "2", "--gepa-max-new-tokens", "6",
        "--bench", "toy-mini", "--data-dir", str(world / "bench"), "--eval-n", "1",
        "--eval-temperature", "0", "--eval-every", "2", "--save-every", "1", "--keep-last", "2", *extra,
    ]


TOK = char_tokenizer()


HINT = "Add the tens first."


def make(pid: str, k: int, response: str, reward: float, template: str | None = None) -> Rollout:
    x = render(TOK, f"{pid}: 12+30?")
    xt = render(TOK, f"{pid}: 12+30?", template) if template else x
    return Rollout(id=pid, k=k, prompt=xt, response=response, reward=reward, pred=None, finish_reason="stop",
                   n_tokens=len(response) + 1, template_id="t1" if template else None, template=template,
                   original_prompt=x if template else None)


def batch(tag: str = "") -> list[Rollout]:
    """Two problems × 3 rollouts, mixed rewards, one templated rollout in each group."""
    return [
        make(f"a{tag}", 0, "42", 1.0, HINT), make(f"a{tag}", 1, "24", 0.0), make(f"a{tag}", 2, "4 2", 0.0),
        make(f"b{tag}", 0, "The sum is 42", 1.0), make(f"b{tag}", 1, "43", 0.0, HINT), make(f"b{tag}", 2, "42!", 1.0),
    ]


def write_rollouts(path: Path, rollouts: list[Rollout]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(to_dict(r)) + b"\n" for r in rollouts))
    return path


def tensorboard_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the event files under ``log_dir``: tag -> [(step, value)] in write order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[tuple[int, float]]] = {}
    runs = sorted({p.parent for p in log_dir.rglob("events.out.tfevents.*")})
    assert runs, f"no event files under {log_dir}"
    for run in runs:
        acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return out


def jsonl_scalars(path: Path) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for line in path.read_bytes().splitlines():
        row = scalars(orjson.loads(line))
        for key, value in row.items():
            out.setdefault(key, []).append((int(row.get(STEP_KEY, 0)), value))
    return out


def assert_same_metrics(log_dir: Path, metrics_path: Path) -> None:
    written, logged = jsonl_scalars(metrics_path), tensorboard_scalars(log_dir)
    assert set(logged) == set(written)
    for tag, points in written.items():
        assert [s for s, _ in logged[tag]] == [s for s, _ in points], tag
        # TensorBoard stores float32.
        assert [v for _, v in logged[tag]] == pytest.approx([v for _, v in points], rel=1e-6, abs=1e-30), tag


CATEGORIES = ("alpha", "beta", "gamma", "delta")


def make_hard(n: int = 12) -> list[Hard]:
    return [
        Hard(f"h{i}", f"[{CATEGORIES[i % 4]}] Q{i}: what is the secret number?", str(1000 + 37 * i), [0.0] * 6, 0.0)
        for i in range(n)
    ]


class ChatTokenizer:
    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True, **kwargs):
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"


class SkillEngine:
    """Solves a problem iff its prompt says "use <category>"; counts calls and prompts."""

    def __init__(self, hard: list[Hard]):
        self.gold = {h.problem.split(":")[0]: h.answer for h in hard}
        self.calls: list[int] = []
        self.temperatures: list[float] = []

    def generate(self, prompts, n=1, temperature=0.6, top_p=1.0, max_new_tokens=16, seed=0, progress=None):
        self.calls.append(len(prompts) * n)
        self.temperatures.append(temperature)
        out = []
        for prompt in prompts:
            key = re.search(r"\[(\w+)\] Q\d+", prompt)
            category = key.group(1)
            answer = self.gold[key.group(0)] if f"use {category}" in prompt else "0"
            out.append([Completion(f"So the number is \\boxed{{{answer}}}", 8, "stop") for _ in range(n)])
        return out

    @property
    def rollouts(self) -> int:
        return sum(self.calls)


@dataclass
class Result:
    reward: float
    pred: str | None


class BoxScorer:
    def score(self, responses, golds):
        preds = [re.search(r"\\boxed\{(.*)\}", r).group(1) for r in responses]
        return [Result(float(p == g), p) for p, g in zip(preds, golds)]
