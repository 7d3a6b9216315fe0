"""Shared fixtures: a tiny Qwen3 with a char tokenizer, built once per session, paths, loopback servers."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer, hidden-64 Qwen3 saved as a Hugging Face directory."""
    from p2o_cli.toy.tiny import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model", hidden_size=64, num_layers=2)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not present (the shared data folder sits beside the repo)")
    return SHARED_DATA


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """The miniature run's world (``helpers.run_args``): 8 addition problems and a 4-problem benchmark."""
    root = tmp_path_factory.mktemp("world")
    rows = [{"id": f"q{i}", "problem": f"What is {i}+{i + 1}?", "answer": str(2 * i + 1)} for i in range(8)]
    (root / "train.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    (root / "bench").mkdir()
    (root / "bench" / "toy-mini.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows[:4]))
    return root


@pytest.fixture
def loopback() -> Iterator[Callable]:
    """``loopback(answer)`` starts a real HTTP server on 127.0.0.1 (``helpers.LoopbackServer``);
    all are closed after the test."""
    from helpers import LoopbackServer

    servers: list[LoopbackServer] = []

    def start(answer) -> LoopbackServer:
        servers.append(LoopbackServer(answer))
        return servers[-1]

    yield start
    for server in servers:
        server.close()
