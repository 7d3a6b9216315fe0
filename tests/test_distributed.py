"""`p2o run` on 2 CPU ranks (accelerate launch, gloo) against 1 rank: the same run, file for file.

The miniature run of test_loop (2 epochs, GEPA with the toy reflector, evaluation) is run on
one process and on two from the same seed; the rollouts, hard sets, GEPA state, templates,
assignments and eval scores must be identical and the final weights equal within 1e-5
relative. A 2-rank run killed with SIGKILL after its first checkpoint, and one killed in the
middle of its GEPA phase, resume on 2 ranks to the same files and weights. The pure parts of
loop/dist.py are checked on their own below.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from safetensors.torch import load_file

from helpers import ENV, run_args
from p2o_cli.loop.dist import Dist, ShardedEngine, ShardedScorer, chunk_seed, plan_chunks


def launch() -> list[str]:
    """accelerate launch on 2 CPU processes, on a free port (other runs may hold the default)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(port)]


# Chunks of 2 sequences (k=2: one problem per rollout chunk), so both ranks get work in every call.
EXTRA = ("--gen-chunk", "2")
# What a rank writes besides these differs only in timings (metrics.jsonl, gepa-metrics.jsonl).
SAME_FILES = ("rollouts-*.jsonl", "hard*.jsonl", "templates.jsonl", "assignments.jsonl", "gepa-state.json")


def two_ranks(args: list[str]) -> list[str]:
    """``python -m p2o_cli …`` as ``accelerate launch … -m p2o_cli …``."""
    assert args[:3] == [sys.executable, "-m", "p2o_cli"]
    return [*launch(), "-m", "p2o_cli", *args[3:]]


def run_files(run: Path) -> dict[str, bytes]:
    files = {str(p.relative_to(run)): p.read_bytes() for pattern in SAME_FILES for p in run.glob(f"epoch-*/{pattern}")}
    assert any(name.endswith("templates.jsonl") for name in files), f"{run}: no GEPA files to compare"
    return files


def eval_scores(run: Path) -> list[tuple[int, float]]:
    rows = [orjson.loads(line) for line in (run / "metrics.jsonl").read_bytes().splitlines()]
    return [(r["training/step"], r["eval/toy-mini/accuracy"]) for r in rows if "eval/toy-mini/accuracy" in r]


def assert_weights_close(a_dir: Path, b_dir: Path, rtol: float) -> None:
    a, b = load_file(a_dir / "model.safetensors"), load_file(b_dir / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        scale = a[name].abs().max().clamp_min(1e-12)
        assert float((a[name] - b[name]).abs().max() / scale) <= rtol, name


def run_ok(cmd: list[str], timeout: float) -> str:
    result = subprocess.run(cmd, capture_output=True, env=ENV, timeout=timeout)
    out = result.stdout.decode() + result.stderr.decode()
    assert result.returncode == 0, out[-4000:]
    return out


@pytest.mark.timeout(900)  # three runs and a resume on a shared 2-core machine
def test_two_ranks_match_one_rank_and_resume_after_kill(tmp_path, tiny_model_dir, world) -> None:  # noqa: F811
    one, two = tmp_path / "one", tmp_path / "two"
    run_ok(run_args(tiny_model_dir, world, one, *EXTRA), timeout=300)
    out = run_ok(two_ranks(run_args(tiny_model_dir, world, two, *EXTRA)), timeout=300)
    # Rank 0 alone speaks: one summary, not two.
    assert out.count("done: 4 train steps") == 1

    files = run_files(one)
    assert any("templates.jsonl" in f for f in files) and any("epoch-1/rollouts" in f for f in files)
    assert run_files(two) == files
    assert eval_scores(two) == eval_scores(one) and [s for s, _ in eval_scores(one)] == [0, 2, 4]
    # Each step was shared out: the largest micro-batch on rank 0 is smaller than on one process.
    biggest = [[orjson.loads(line)["perf/max_tokens_per_micro_batch"] for line in (run / "metrics.jsonl")
                .read_bytes().splitlines() if b"actor/pg_loss" in line] for run in (one, two)]
    assert len(biggest[0]) == len(biggest[1]) == 4
    assert all(b < a for a, b in zip(*biggest))
    assert_weights_close(one / "checkpoints" / "step-4", two / "checkpoints" / "step-4", rtol=1e-5)
    trainer_state = orjson.loads((two / "checkpoints" / "step-4" / "trainer_state.json").read_bytes())
    assert trainer_state["world_size"] == 2 and (two / "checkpoints" / "step-4" / "optimizer.safetensors").is_file()

    # A 2-rank run killed (the launcher and both ranks, SIGKILL) after its first checkpoint.
    killed = tmp_path / "killed"
    proc = subprocess.Popen(two_ranks(run_args(tiny_model_dir, world, killed, *EXTRA)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=ENV, start_new_session=True)
    deadline = time.time() + 300
    while not (killed / "checkpoints" / "step-1").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not orjson.loads((killed / "state.json").read_bytes())["done"]
    run_ok([*launch(), "-m", "p2o_cli", "run", "--resume", str(killed)], timeout=300)
    assert orjson.loads((killed / "state.json").read_bytes())["done"]
    assert run_files(killed) == files
    assert_weights_close(two / "checkpoints" / "step-4", killed / "checkpoints" / "step-4", rtol=1e-5)

    # Both ranks killed mid-GEPA (iteration 2, after iteration 1's state was saved by rank 0):
    # on resume every rank reads that state and the search ends where the straight run's did.
    mid_gepa = tmp_path / "mid-gepa"
    crashed = subprocess.run(two_ranks(run_args(tiny_model_dir, world, mid_gepa, *EXTRA)), capture_output=True,
                             env={**ENV, "P2O_FAULT": "gepa:2"}, timeout=300)
    assert crashed.returncode != 0
    saved = orjson.loads((mid_gepa / "epoch-0" / "gepa-state.json").read_bytes())
    assert saved["iteration"] == 1
    run_ok([*launch(), "-m", "p2o_cli", "run", "--resume", str(mid_gepa)], timeout=300)
    assert run_files(mid_gepa) == files
    assert_weights_close(two / "checkpoints" / "step-4", mid_gepa / "checkpoints" / "step-4", rtol=1e-5)


# ---------------------------------------------------------------- loop/dist.py on its own


class _Recorder:
    """An engine that answers each prompt with its text, the call's seed and the sample index."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], int | None]] = []

    def generate(self, prompts, n=1, temperature=0.6, top_p=1.0, max_new_tokens=8, seed=0, progress=None):
        self.calls.append((list(prompts), seed))
        return [[f"{p}|{seed}|{j}" for j in range(n)] for p in prompts]


class _TwoRanks(Dist):
    """Rank ``rank`` of 2 without a process group: ``shares`` holds each rank's last answer.

    Run rank 1, then rank 0 (which then sees both shares), then rank 1 again.
    """

    def __init__(self, rank: int, shares: dict) -> None:
        super().__init__(rank, 2, 2)
        self.shares = shares

    def all_run(self, fn):
        self.shares[self.rank] = fn()
        return [self.shares.get(r, self.shares[self.rank]) for r in range(2)]


def test_plan_chunks_and_chunk_seeds_depend_on_the_call_only() -> None:
    assert plan_chunks(5, 2, 4) == [range(2), range(2, 4), range(4, 5)]
    assert plan_chunks(3, 8, 4) == [range(1), range(1, 2), range(2, 3)]  # at least one prompt a chunk
    assert plan_chunks(0, 1, 4) == []
    assert chunk_seed(7, 0) != chunk_seed(7, 1) != chunk_seed(8, 0)


def test_sharded_engine_gives_one_rank_and_two_ranks_the_same_completions() -> None:
    prompts = [f"p{i}" for i in range(5)]
    single = _Recorder()
    alone = ShardedEngine(single, Dist(), chunk_sequences=4).generate(prompts, n=2, seed=3)
    # One rank: chunks of 2 prompts, each chunk with its own seed.
    assert single.calls == [(["p0", "p1"], chunk_seed(3, 0)), (["p2", "p3"], chunk_seed(3, 1)),
                            (["p4"], chunk_seed(3, 2))]
    assert alone[4] == [f"p4|{chunk_seed(3, 2)}|0", f"p4|{chunk_seed(3, 2)}|1"]
    # Two ranks: rank 1 takes chunk 1, rank 0 chunks 0 and 2; both end with the whole answer.
    shares: dict = {}
    r1_engine, r0_engine = _Recorder(), _Recorder()
    ShardedEngine(r1_engine, _TwoRanks(1, shares), 4).generate(prompts, n=2, seed=3)
    on_rank0 = ShardedEngine(r0_engine, _TwoRanks(0, shares), 4).generate(prompts, n=2, seed=3)
    on_rank1 = ShardedEngine(r1_engine, _TwoRanks(1, shares), 4).generate(prompts, n=2, seed=3)
    assert [c[0] for c in r1_engine.calls] == [["p2", "p3"]] * 2
    assert [c[0] for c in r0_engine.calls] == [["p0", "p1"], ["p4"]]
    assert on_rank0 == alone and on_rank1 == alone


def test_sharded_scorer_splits_contiguously_and_keeps_order() -> None:
    class Echo:
        def __init__(self) -> None:
            self.seen: list[str] = []
            self.errors = 0

        def score(self, responses, answers, **options):
            self.seen.extend(responses)
            self.errors += sum(r in ("b", "d") for r in responses)  # as if the reward failed on these
            return [(r, a, options.get("grader")) for r, a in zip(responses, answers)]

        def counters(self):
            return {"reward/errors": self.errors}

    shares: dict = {}
    first, second = Echo(), Echo()
    responses, answers = ["a", "b", "c", "d", "e"], ["1", "2", "3", "4", "5"]
    ShardedScorer(second, _TwoRanks(1, shares)).score(responses, answers, grader="qwen")
    rank0 = ShardedScorer(first, _TwoRanks(0, shares))
    on_rank0 = rank0.score(responses, answers, grader="qwen")
    assert first.seen == ["a", "b"] and second.seen == ["c", "d", "e"]
    assert rank0.counters() == {"reward/errors": 2}  # one on each rank's share, counted on both
    second.seen = []
    on_rank1 = ShardedScorer(second, _TwoRanks(1, shares)).score(responses, answers, grader="qwen")
    assert on_rank0 == on_rank1 == [(r, a, "qwen") for r, a in zip(responses, answers)]


def test_workers_follow_the_cores_of_each_rank(monkeypatch) -> None:
    import p2o_cli.loop.dist as dist_module

    monkeypatch.setattr(dist_module, "available_cores", lambda: 16)
    assert Dist(0, 2, 2).cores_per_rank() == 8 and Dist(0, 2, 2).scorer_workers() == 8
    assert Dist(0, 8, 8).scorer_workers() == 2
    assert Dist(0, 1, 1).scorer_workers() == dist_module.MAX_SCORER_WORKERS  # capped
    monkeypatch.setattr(dist_module, "available_cores", lambda: 2)
    assert Dist(3, 4, 4).scorer_workers() == 1  # never none


def test_one_rank_runs_on_main_without_collectives() -> None:
    dist = Dist()
    assert dist.is_main and dist.on_main(lambda: 5) == 5 and dist.gather("x") == ["x"] and dist.broadcast(1) == 1
    with pytest.raises(ValueError):
        dist.all_run(lambda: int("not a number"))


# ---------------------------------------------------------------- a launched rank's exit

EXIT_PROBE = """
import atexit, os, sys
from p2o_cli import entry

log = sys.argv[1]
atexit.register(lambda: open(log, "a").write("exit handlers ran\\n"))


class FreedAtFinalization:
    # Holds what it needs: the module's globals may be gone by the time it is freed.
    def __init__(self):
        self.write, self.fd = os.write, os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)

    def __del__(self):
        self.write(self.fd, b"finalized\\n")


kept_until_the_end = FreedAtFinalization()
sys.argv = ["p2o", *sys.argv[2:]]
entry.main()
"""


@pytest.mark.parametrize("world_size, finalized", [("1", True), ("2", False)])
@pytest.mark.parametrize("args, status", [(["--version"], 0),
                                          (["mine-hard", "--rollouts", "missing.jsonl", "--out", "h.jsonl"], 2)])
def test_a_launched_rank_runs_its_exit_handlers_and_skips_finalization(tmp_path, world_size, finalized, args,
                                                                       status) -> None:
    # The interpreter's finalization is where gloo's worker threads abort a finished rank.
    log = tmp_path / "log"
    result = subprocess.run([sys.executable, "-c", EXIT_PROBE, str(log), *args], capture_output=True,
                            env={**ENV, "WORLD_SIZE": world_size}, cwd=tmp_path, timeout=120)
    assert result.returncode == status, result.stderr.decode()
    assert log.read_text() == "exit handlers ran\n" + ("finalized\n" if finalized else "")
    if status == 0:
        assert result.stdout.decode().startswith("p2o ")
    else:
        assert result.stderr.decode().startswith("p2o: error") and not (tmp_path / "h.jsonl").exists()
