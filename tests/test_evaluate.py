from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import contextmanager
from math import comb
from pathlib import Path

import pytest
from rich.console import Console

from p2o_cli.cli.display import results_table
from p2o_cli.engines import Completion
from p2o_cli.evaluation.evaluate import EvalConfig, evaluate, pass_at_k, sample_metrics
from p2o_cli.reward.pool import RewardScorer
from p2o_cli.toy.tiny import char_tokenizer


@pytest.fixture(scope="module")
def scorer():
    with RewardScorer(timeout_s=5.0, workers=1) as s:
        yield s


class FakeEngine:
    """Answers problem ``q`` correctly in its first ``plan[q]`` samples; wrong ones run to the length limit."""

    def __init__(self, golds: dict[str, str], plan: dict[str, int]):
        self.golds, self.plan, self.calls = golds, plan, []

    def generate(self, prompts: Sequence[str], n: int = 1, temperature: float = 0.6, top_p: float = 1.0,
                 max_new_tokens: int = 1024, seed: int | None = 0, progress=None) -> list[list[Completion]]:
        self.calls.append({"n": n, "temperature": temperature, "top_p": top_p, "prompts": len(prompts)})
        out = []
        for prompt in prompts:
            (question,) = [q for q in self.golds if f"\n{q}\n" in prompt]
            row = []
            for j in range(n):
                if j < self.plan[question]:
                    row.append(Completion(f"so \\boxed{{{self.golds[question]}}}", 10, "stop"))
                else:
                    row.append(Completion("I am not sure \\boxed{-1}", max_new_tokens, "length"))
            out.append(row)
            if progress:
                progress(n, sum(c.n_tokens for c in row))
        return out

    def update_weights(self, state_dict) -> None: ...

    def close(self) -> None: ...


def toy_bench(data_dir: Path, name: str, size: int) -> dict[str, str]:
    golds = {f"What is {i} plus {i}?": str(2 * i) for i in range(size)}
    rows = [{"idx": i, "problem": q, "answer": a} for i, (q, a) in enumerate(golds.items())]
    (data_dir / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return golds


# ---------------------------------------------------------------- pass@k


def test_pass_at_k_hand_computed() -> None:
    assert pass_at_k(4, 1, 2) == pytest.approx(1 - 3 / 6)  # 0.5
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 2, 2) == pytest.approx(1 - 1 / 6)
    assert pass_at_k(16, 8, 2) == pytest.approx(1 - 28 / 120)
    assert pass_at_k(16, 1, 4) == pytest.approx(1 - 1365 / 1820)  # = k/n = 0.25
    assert pass_at_k(4, 3, 2) == 1.0  # n - c < k: every pair holds a correct one
    assert pass_at_k(4, 0, 4) == 0.0
    assert pass_at_k(16, 16, 16) == 1.0
    for bad in ((4, 5, 1), (4, 1, 0), (4, 1, 5), (4, -1, 1)):
        with pytest.raises(ValueError):
            pass_at_k(*bad)


def test_sample_metrics_averages_the_whole_matrix() -> None:
    # The first column alone would say 50%; the mean over all samples is 37.5%.
    accuracy, pass_k = sample_metrics([[True, False, False, False], [False, True, True, False]])
    assert accuracy == pytest.approx(100 * (1 / 4 + 2 / 4) / 2)
    assert pass_k == pytest.approx({
        "pass@1": 37.5,
        "pass@2": 100 * ((1 - comb(3, 2) / comb(4, 2)) + (1 - comb(2, 2) / comb(4, 2))) / 2,
        "pass@4": 100.0,
    })
    assert sample_metrics([]) == (0.0, {})


# ---------------------------------------------------------------- evaluate with a fake engine


def test_avg16_protocol_accuracy_and_pass_at_k(tmp_path: Path, scorer) -> None:
    golds = toy_bench(tmp_path, "toy-hard", 4)
    correct = [16, 8, 1, 0]
    engine = FakeEngine(golds, dict(zip(golds, correct)))
    cfg = EvalConfig(bench=["toy-hard"], data_dir=str(tmp_path), eval_top_p=0.95, eval_max_new_tokens=64)
    results, samples = evaluate(engine, char_tokenizer(), cfg, scorer)
    r = results["benchmarks"]["toy-hard"]
    assert engine.calls == [{"n": 16, "temperature": 0.6, "top_p": 0.95, "prompts": 4}]
    assert (r["protocol"], r["samples_per_problem"], r["temperature"], r["n_problems"]) == ("avg@16", 16, 0.6, 4)
    assert r["accuracy"] == pytest.approx(100 * (1 + 0.5 + 1 / 16 + 0) / 4)  # 39.0625, not column 0's 75
    expected = {k: 100 * sum(pass_at_k(16, c, k) for c in correct) / 4 for k in (1, 2, 4, 8, 16)}
    assert r["pass@k"] == pytest.approx({f"pass@{k}": v for k, v in expected.items()})
    assert r["pass@k"]["pass@1"] == pytest.approx(r["accuracy"])
    wrong = 64 - sum(correct)
    assert r["truncation_rate"] == pytest.approx(100 * wrong / 64)
    assert r["mean_response_tokens"] == pytest.approx((sum(correct) * 10 + wrong * 64) / 64)
    assert r["source"] == str((tmp_path / "toy-hard.jsonl").resolve())
    assert results["average"] == pytest.approx(r["accuracy"])
    assert results["config"]["bench"] == ["toy-hard"] and results["config"]["prompt"]["enable_thinking"] is False

    assert len(samples) == 64
    first = samples[0]
    assert {
        k: first[k] for k in ("bench", "id", "sample", "answer", "reward", "pred", "n_tokens", "finish_reason")
    } == {
        "bench": "toy-hard",
        "id": "0",
        "sample": 0,
        "answer": "0",
        "reward": 1.0,
        "pred": first["pred"],
        "n_tokens": 10,
        "finish_reason": "stop",
    }
    assert first["pred"] is not None and "What is 0 plus 0?" in first["prompt"]
    assert first["response"] == "so \\boxed{0}"
    assert [s["sample"] for s in samples[:16]] == list(range(16))
    assert sum(s["reward"] for s in samples) == sum(correct)


def test_greedy_protocol_forces_one_sample_and_top_p_1(tmp_path: Path, scorer) -> None:
    golds = toy_bench(tmp_path, "toy-big", 100)
    engine = FakeEngine(golds, {q: int(i < 37) for i, q in enumerate(golds)})
    cfg = EvalConfig(bench=["toy-big"], data_dir=str(tmp_path), eval_top_p=0.9, eval_n=8)
    results, samples = evaluate(engine, char_tokenizer(), cfg, scorer)
    r = results["benchmarks"]["toy-big"]
    assert engine.calls == [{"n": 1, "temperature": 0.0, "top_p": 1.0, "prompts": 100}]
    assert (r["protocol"], r["samples_per_problem"], r["accuracy"]) == ("greedy", 1, pytest.approx(37.0))
    assert r["pass@k"] == {"pass@1": pytest.approx(37.0)}
    assert len(samples) == 100


def test_overrides_average_and_table(tmp_path: Path, scorer) -> None:
    hard = toy_bench(tmp_path, "toy-hard", 3)
    plan = dict(zip(hard, [4, 2, 0]))
    engine = FakeEngine(hard, plan)
    seen: list[tuple[str, int]] = []
    done: list[int] = []


    @contextmanager
    def factory(description: str, total: int):
        seen.append((description, total))
        yield lambda n, tokens: done.append(n)

    cfg = EvalConfig(
        bench=["toy-hard,toy-hard", "toy-hard"], data_dir=str(tmp_path), eval_n=4, eval_temperature=1.0, eval_limit=2
    )
    results, _ = evaluate(engine, char_tokenizer(), cfg, scorer, progress_factory=factory)
    r = results["benchmarks"]["toy-hard"]
    assert (r["protocol"], r["samples_per_problem"], r["temperature"], r["n_problems"]) == ("avg@4", 4, 1.0, 2)
    assert r["accuracy"] == pytest.approx(75.0)
    assert seen == [("eval toy-hard", 8)] and sum(done) == 8

    cfg = EvalConfig(bench=["toy-hard"], data_dir=str(tmp_path), eval_temperature=0.0)
    greedy, _ = evaluate(engine, char_tokenizer(), cfg, scorer)
    assert greedy["benchmarks"]["toy-hard"]["protocol"] == "greedy"
    assert greedy["benchmarks"]["toy-hard"]["accuracy"] == pytest.approx(200 / 3)

    results["benchmarks"]["other"] = dict(r, accuracy=25.0)
    results["average"] = 50.0
    console = Console(record=True, width=120)
    console.print(results_table(results))
    text = console.export_text()
    assert "toy-hard" in text and "75.0" in text and "avg@4 T=1" in text
    assert "Average" in text and "50.0" in text


def test_unknown_bench_fails_before_generating(tmp_path: Path, scorer) -> None:
    golds = toy_bench(tmp_path, "toy-hard", 2)
    engine = FakeEngine(golds, dict.fromkeys(golds, 1))
    with pytest.raises(ValueError, match="unknown benchmark 'nope'"):
        evaluate(engine, char_tokenizer(), EvalConfig(bench=["toy-hard", "nope"], data_dir=str(tmp_path)), scorer)
    assert engine.calls == []


def test_real_benchmark_golds_verify_against_themselves(shared_data: Path, scorer) -> None:
    """Boxed gold answers score 1 on every benchmark: the golds survive extraction + math-verify."""
    from p2o_cli.evaluation.benchmarks import load_benchmark

    normalized = str(shared_data / "bench" / "normalized")
    names = ["aime24", "amc23", "math500", "minerva_math", "olympiadbench"]
    golds = {p.problem: p.answer for name in names for p in load_benchmark(name, normalized, limit=5)[1]}
    engine = FakeEngine(golds, dict.fromkeys(golds, 16))
    cfg = EvalConfig(bench=names, data_dir=normalized, eval_n=2, eval_limit=5)
    results, samples = evaluate(engine, char_tokenizer(), cfg, scorer)
    assert {name: r["accuracy"] for name, r in results["benchmarks"].items()} == dict.fromkeys(names, 100.0)
    assert results["average"] == 100.0 and len(samples) == 5 * 2 * 2 + 15


# ---------------------------------------------------------------- a real engine


def test_tiny_hf_model_end_to_end(tmp_path: Path, tiny_model_dir: Path, scorer) -> None:
    from p2o_cli.engines import load_engine

    toy_bench(tmp_path, "toy-hard", 3)
    engine = load_engine("hf", str(tiny_model_dir), device="cpu", batch_size=8)
    cfg = EvalConfig(bench=["toy-hard"], data_dir=str(tmp_path), eval_n=2, eval_max_new_tokens=8, seed=1)
    results, samples = evaluate(engine, engine.tokenizer, cfg, scorer)
    r = results["benchmarks"]["toy-hard"]
    assert (r["n_problems"], r["samples_per_problem"], r["accuracy"]) == (3, 2, 0.0)
    assert set(r["pass@k"]) == {"pass@1", "pass@2"}
    assert len(samples) == 6 and all(s["n_tokens"] <= 8 for s in samples)
    assert [(s["id"], s["sample"]) for s in samples] == [(str(i), j) for i in range(3) for j in range(2)]
    assert 0 <= r["truncation_rate"] <= 100


# ---------------------------------------------------------------- graders


class UnboxedEngine(FakeEngine):
    """Says the gold without a box ("The answer is 4."), so only the qwen grader can read it."""

    def generate(self, prompts: Sequence[str], n: int = 1, **kw) -> list[list[Completion]]:
        boxed = super().generate(prompts, n=n, **kw)
        return [[Completion(c.text.replace("so \\boxed{", "The answer is ").replace("}", "."), c.n_tokens,
                            c.finish_reason) for c in row] for row in boxed]


def test_grader_is_a_config_field_and_recorded_with_every_number(tmp_path: Path, scorer) -> None:
    golds = toy_bench(tmp_path, "toy-large", 100)
    results = {}
    for grader in ("strict", "qwen"):
        engine = UnboxedEngine(golds, dict.fromkeys(golds, 1))
        cfg = EvalConfig(bench=["toy-large"], data_dir=str(tmp_path), grader=grader)
        results[grader], samples = evaluate(engine, char_tokenizer(), cfg, scorer)
        assert results[grader]["grader"] == results[grader]["benchmarks"]["toy-large"]["grader"] == grader
        assert results[grader]["config"]["grader"] == grader and {s["grader"] for s in samples} == {grader}
    assert results["strict"]["average"] == 0.0 and results["qwen"]["average"] == 100.0
    with pytest.raises(ValueError, match="--grader must be one of strict, qwen"):
        evaluate(FakeEngine(golds, {}), char_tokenizer(), EvalConfig(bench=["toy-large"], data_dir=str(tmp_path),
                                                                     grader="exact"), scorer)
