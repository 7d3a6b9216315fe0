from __future__ import annotations

import torch

from p2o_cli.data.prompts import render
from p2o_cli.engines import Engine, load_engine


def prompts(engine, n: int = 3) -> list[str]:
    return [render(engine.tokenizer, f"What is {i}+{i}?") for i in range(n)]


def test_is_an_engine_and_counts_tokens(tiny_model_dir) -> None:
    engine = load_engine("hf", str(tiny_model_dir), device="cpu", batch_size=4)
    assert isinstance(engine, Engine)
    out = engine.generate(prompts(engine), n=2, temperature=1.0, max_new_tokens=12, seed=1)
    assert [len(row) for row in out] == [2, 2, 2]
    for row in out:
        for c in row:
            assert c.n_tokens == len(c.token_ids) <= 12
            assert c.finish_reason in {"stop", "length"}
            # "stop" means the last kept token is end-of-turn; "length" used the whole budget.
            if c.finish_reason == "stop":
                assert c.token_ids[-1] in engine.stop_ids
            else:
                assert c.n_tokens == 12
            assert c.text == engine.tokenizer.decode(c.token_ids, skip_special_tokens=True)


def test_seeded_sampling_is_reproducible_and_batching_invariant_for_greedy(tiny_model_dir) -> None:
    engine = load_engine("hf", str(tiny_model_dir), device="cpu", batch_size=64)
    ps = prompts(engine, 5)
    a = engine.generate(ps, n=3, temperature=1.0, max_new_tokens=16, seed=7)
    b = engine.generate(ps, n=3, temperature=1.0, max_new_tokens=16, seed=7)
    assert [[c.text for c in r] for r in a] == [[c.text for c in r] for r in b]
    greedy_batched = engine.generate(ps, n=1, temperature=0.0, max_new_tokens=16)
    engine.batch_size = 1
    greedy_single = engine.generate(ps, n=1, temperature=0.0, max_new_tokens=16)
    assert [r[0].token_ids for r in greedy_batched] == [r[0].token_ids for r in greedy_single]


def test_a_repeated_prompt_is_prefilled_once_with_the_same_samples(tiny_model_dir) -> None:
    shared = load_engine("hf", str(tiny_model_dir), device="cpu", batch_size=8)
    alone = load_engine("hf", str(tiny_model_dir), device="cpu", batch_size=8, share_prompts=False)
    # Prompts of different lengths (left padding), n=3 copies each, chunks that split a group.
    ps = [render(shared.tokenizer, "What is " + "1+" * i + "1?") for i in range(4)]
    for temperature in (0.0, 1.0):
        a = shared.generate(ps, n=3, temperature=temperature, max_new_tokens=12, seed=5)
        b = alone.generate(ps, n=3, temperature=temperature, max_new_tokens=12, seed=5)
        assert [[c.token_ids for c in r] for r in a] == [[c.token_ids for c in r] for r in b]
    calls = []
    forward = shared.model.forward
    shared.model.forward = lambda *args, **kw: calls.append(kw["input_ids"].shape) or forward(*args, **kw)
    shared.generate(ps[:1], n=4, temperature=1.0, max_new_tokens=2, seed=0)
    prompt_len = len(shared.tokenizer(ps[0], add_special_tokens=False)["input_ids"])
    # One prefill row of the prompt (its last token excepted), then the 4 rows one token at a time.
    assert calls[0] == (1, prompt_len - 1) and all(shape == (4, 1) for shape in calls[1:])


def test_update_weights_changes_outputs_in_place(tiny_model_dir) -> None:
    engine = load_engine("hf", str(tiny_model_dir), device="cpu")
    ps = prompts(engine, 2)
    before = engine.generate(ps, n=1, temperature=0.0, max_new_tokens=10)
    model = engine.model
    import copy

    trained = copy.deepcopy(model)
    with torch.no_grad():
        for p in trained.parameters():  # tied weights are one parameter: perturbed once
            p.add_(0.5 * torch.randn_like(p))
    new_state = trained.state_dict()
    engine.update_weights(new_state)
    assert engine.model is model
    after = engine.generate(ps, n=1, temperature=0.0, max_new_tokens=10)
    assert [r[0].token_ids for r in before] != [r[0].token_ids for r in after]
    torch.testing.assert_close(model.model.embed_tokens.weight, new_state["model.embed_tokens.weight"])


def test_progress_reports_every_completion(tiny_model_dir) -> None:
    engine = load_engine("hf", str(tiny_model_dir), device="cpu", batch_size=4)
    seen = {"done": 0, "tokens": 0}

    def progress(done: int, tokens: int) -> None:
        seen["done"] += done
        seen["tokens"] += tokens

    out = engine.generate(prompts(engine, 3), n=3, temperature=1.0, max_new_tokens=8, progress=progress)
    assert seen["done"] == 9
    assert seen["tokens"] == sum(c.n_tokens for row in out for c in row)


def test_cpu_threads_hold_while_sampling_and_the_count_is_restored(tiny_model_dir) -> None:
    from p2o_cli.engines.hf import HFEngine

    engine = load_engine("hf", str(tiny_model_dir), cpu_threads=1)
    assert isinstance(engine, HFEngine)
    seen: list[int] = []
    before = torch.get_num_threads()
    engine.generate(["1+1="], n=2, max_new_tokens=3, progress=lambda *_: seen.append(torch.get_num_threads()))
    assert seen and set(seen) == {1} and torch.get_num_threads() == before  # progress comes per decode step
    default = load_engine("hf", str(tiny_model_dir))
    seen.clear()
    default.generate(["1+1="], n=2, max_new_tokens=3, progress=lambda *_: seen.append(torch.get_num_threads()))
    assert set(seen) == {before}  # by default the engine keeps torch's setting
