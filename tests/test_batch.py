"""Rollouts → sequences → packed micro-batches (rl/batch.py)."""

from __future__ import annotations

import pytest
import torch

from p2o_cli.data.prompts import render
from p2o_cli.files.records import Rollout
from p2o_cli.rl.batch import (
    RowCost,
    attention_path,
    collate,
    collate_padded,
    collate_shared,
    encode_rollouts,
    is_varlen_attention,
    pack,
    pad_bins,
    pad_rows,
    plan_batch,
    split_groups,
    training_prompt,
)
from p2o_cli.toy.tiny import char_tokenizer, tiny_qwen3

TOK = char_tokenizer()


def rollout(pid: str, k: int, response: str, template: str | None = None, finish: str = "stop") -> Rollout:
    x = render(TOK, f"What is {pid}?")
    xt = render(TOK, f"What is {pid}?", template) if template else x
    return Rollout(id=pid, k=k, prompt=xt, response=response, reward=0.0, pred=None, finish_reason=finish,
                   n_tokens=len(response), template_id="t" if template else None, template=template,
                   original_prompt=x if template else None)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_rows_give_the_logits_of_separate_sequences(attn: str) -> None:
    model = tiny_qwen3(TOK)
    model.set_attn_implementation(attn)
    model.eval()
    gen = torch.Generator().manual_seed(0)
    seqs = [torch.randint(5, 90, (n,), generator=gen) for n in (7, 1, 12, 5)]
    with torch.no_grad():
        alone = [model(input_ids=s[None], use_cache=False).logits[0] for s in seqs]
        packed = model(
            input_ids=torch.cat(seqs)[None],
            position_ids=torch.cat([torch.arange(len(s)) for s in seqs])[None],
            use_cache=False,
        ).logits[0]
    for a, b in zip(alone, packed.split([len(s) for s in seqs])):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_collate_points_each_logit_at_the_next_response_token() -> None:
    mb = collate([(0, [1, 2, 3], [4, 5]), (1, [6], [7, 8, 9])])
    assert mb.input_ids.tolist() == [[1, 2, 3, 4, 5, 6, 7, 8, 9]]
    assert mb.position_ids.tolist() == [[0, 1, 2, 3, 4, 0, 1, 2, 3]]
    assert mb.lengths == [2, 3]
    ids = mb.input_ids[0]
    assert ids[mb.logit_positions + 1].tolist() == mb.targets.tolist() == [4, 5, 7, 8, 9]
    rows, mask = pad_rows(mb.targets.float(), mb.lengths)
    assert rows.tolist() == [[4, 5, 0], [7, 8, 9]] and mask.tolist() == [[True, True, False], [True, True, True]]


def test_encode_chooses_the_prompt_by_distill_mode_and_appends_eos_on_stop() -> None:
    r = rollout("q1", 0, "42", template="Think.")
    assert training_prompt(r, "original") == r.original_prompt != r.prompt
    assert training_prompt(r, "none") == r.prompt
    eos = TOK.eos_token_id
    (orig,) = encode_rollouts([r], TOK, "original", keep_templated=True)
    (seen,) = encode_rollouts([r], TOK, "none", keep_templated=True)
    assert orig.prompt_ids == TOK(r.original_prompt, add_special_tokens=False)["input_ids"]
    assert seen.prompt_ids == TOK(r.prompt, add_special_tokens=False)["input_ids"]
    assert orig.templated_prompt_ids == seen.prompt_ids and seen.templated_prompt_ids is None
    assert orig.response_ids == seen.response_ids == [*TOK("42", add_special_tokens=False)["input_ids"], eos]
    (cut,) = encode_rollouts([rollout("q1", 0, "42", finish="length")], TOK)
    assert cut.response_ids[-1] != eos and len(cut.response_ids) == 2
    with pytest.raises(ValueError, match="distill"):
        encode_rollouts([r], TOK, "sometimes")


def test_sampled_token_ids_are_trained_verbatim() -> None:
    # Ids a BPE tokenizer would not produce from the text: the record's ids win over re-tokenizing.
    r = rollout("q1", 0, "42")
    r.response_ids = [50, 51, 52, TOK.eos_token_id]
    (seq,) = encode_rollouts([r], TOK)
    assert seq.response_ids == [50, 51, 52, TOK.eos_token_id]


def test_pack_respects_the_budget_and_is_deterministic() -> None:
    lengths = {i: n for i, n in enumerate([5, 9, 3, 7, 2, 8, 4])}
    bins = pack(lengths, 10)
    assert sorted(i for b in bins for i in b) == list(range(7))
    assert all(sum(lengths[i] for i in b) <= 10 for b in bins)
    assert len(bins) == 4 and pack(lengths, 10) == bins  # 38 tokens → at least 4 bins of 10
    with pytest.raises(ValueError, match="max-tokens-per-micro-batch"):
        pack({0: 11}, 10)


def test_split_keeps_groups_together_and_depends_only_on_the_seed() -> None:
    groups = [g for g in "abcde" for _ in range(3)]
    parts = split_groups(groups, 2, seed=7)
    assert parts == split_groups(groups, 2, seed=7)
    assert sorted(i for p in parts for i in p) == list(range(15))
    assert all(len({groups[i] for i in p} & {groups[i] for i in q}) == 0 for p in parts for q in parts if p is not q)
    assert sorted(len(p) for p in parts) == [6, 9]
    assert len(split_groups(["a", "a"], 2, seed=0)) == 1  # one group cannot be split


def test_plan_shards_across_ranks_with_equal_micro_batch_counts() -> None:
    rs = [rollout(f"q{g}", k, "1" * (1 + 3 * k + g), template="Hint." if k % 2 else None)
          for g in range(3) for k in range(4)]
    seqs = encode_rollouts(rs, TOK, "original", keep_templated=True)
    plans = [plan_batch(seqs, 2, 300, seed=1, rank=r, world_size=2) for r in range(2)]
    single = plan_batch(seqs, 2, 300, seed=1)
    assert plans[0].mini_batches == plans[1].mini_batches == single.mini_batches
    assert sorted(plans[0].local + plans[1].local) == list(range(len(rs)))
    for m in range(len(single.mini_batches)):
        assert len(plans[0].train[m]) == len(plans[1].train[m])
        real = [i for p in plans for mb in p.train[m] if not mb.dummy for i in mb.seqs]
        assert sorted(real) == single.mini_batches[m]
        assert all(mb.n_tokens <= 300 for p in plans for mb in p.train[m])
    assert len(plans[0].templated) == len(plans[1].templated)
    templated = sorted(i for p in plans for mb in p.templated if not mb.dummy for i in mb.seqs)
    assert templated == [i for i, r in enumerate(rs) if r.template]


@pytest.mark.parametrize(
    ("attn", "device", "varlen"),
    [("sdpa", "cpu", False), ("eager", "cpu", False), (None, "cpu", False), ("flex_attention", "cpu", False),
     ("sdpa", "cuda", False), ("flex_attention", "cuda", True), ("flash_attention_2", "cuda", True),
     ("flash_attention_3", "cuda", True)],
)
def test_plan_never_shares_an_attention_row_unless_the_kernel_is_varlen(attn, device, varlen) -> None:
    rs = [rollout(f"q{g}", k, "1" * (2 + 5 * k + g), template="Hint." if k % 2 else None)
          for g in range(4) for k in range(6)]
    seqs = encode_rollouts(rs, TOK, "original", keep_templated=True)
    path = attention_path("auto", attn, device)
    assert is_varlen_attention(attn, device) == varlen and path == ("packed" if varlen else "padded")
    plan = plan_batch(seqs, 2, 400, seed=3, path=path)
    mbs = [mb for mbs in plan.train for mb in mbs] + plan.templated
    assert sum(len(mb.seqs) for mb in mbs if not mb.dummy) == len(rs) + sum(1 for r in rs if r.template)
    shared = [mb for mb in mbs if len(mb.seqs) > mb.rows]
    assert all(mb.n_tokens <= 400 for mb in mbs)
    if varlen:
        assert shared  # the budget holds several sequences, and varlen packing uses it
    else:
        assert not shared and all(mb.position_ids is None for mb in mbs if not mb.dummy)
        assert max(len(mb.seqs) for mb in mbs) > 1  # several rows per micro-batch, each its own sequence
    # With shared-prompt rows on, a row holds several sequences only if they have one prompt, and
    # their mask keeps each response from seeing another.
    cost = RowCost(per_token=1e6, per_pair=1.0)
    plan = plan_batch(seqs, 2, 400, seed=3, path=path, row_cost=cost)
    mbs = [mb for mbs in plan.train for mb in mbs]
    assert sum(len(mb.seqs) for mb in mbs if not mb.dummy) == len(rs)
    assert all(mb.n_tokens <= 400 for mb in mbs)
    if varlen:
        assert all(mb.attention_mask is None for mb in mbs)  # varlen rows need no sharing: they cost Σ seq²
    else:
        assert any(mb.attention_mask is not None for mb in mbs)
        for mb in (mb for mb in mbs if len(mb.seqs) > mb.rows):
            assert mb.attention_mask is not None
            assert len({tuple(seqs[i].prompt_ids) for i in mb.seqs}) == mb.rows


def test_row_cost_counts_flops_by_hand_and_shares_only_where_it_saves() -> None:
    class Config:
        hidden_size, num_attention_heads, num_key_value_heads, head_dim, intermediate_size = 8, 2, 1, 4, 16

    cost = RowCost.of(Config)
    # q 8×8, k and v 8×4 each, o 8×8, gated MLP 3×8×16: 576 multiply-adds per token; QKᵀ and AV: 2×2×4.
    assert cost == RowCost(per_token=1152.0, per_pair=32.0)
    assert cost.separate(10, [2, 3]) == 12 * 1152 + 144 / 2 * 32 + 13 * 1152 + 169 / 2 * 32 == 33808
    assert cost.shared(10, [2, 3]) == 15 * 1152 + 225 * 32 == 24480
    assert cost.shares(10, [2, 3])  # the prompt once wins
    assert not cost.shares(2, [40, 40])  # long responses: 80² masked pairs outweigh 2 prompt tokens
    assert not cost.shares(10, [5])  # nothing to share
    assert not cost.shares(10, [3000, 3000])  # past SHARED_ROW_MAX_TOKENS


def test_shared_prompt_rows_give_the_log_probs_and_gradient_of_separate_rows() -> None:
    model = tiny_qwen3(TOK)
    gen = torch.Generator().manual_seed(2)

    def ids(n: int) -> list[int]:
        return torch.randint(5, 90, (n,), generator=gen).tolist()

    p, q = ids(9), ids(4)
    units = [(p, [(0, ids(3)), (1, ids(1)), (2, ids(6))]), (q, [(3, ids(2)), (4, ids(7))])]
    shared = collate_shared(units, pad_token=0)
    padded = collate_padded([(i, prompt, r) for prompt, rs in units for i, r in rs], pad_token=0)
    assert shared.seqs == padded.seqs == [0, 1, 2, 3, 4] and shared.lengths == padded.lengths
    assert shared.input_ids.shape == (2, 19) and padded.input_ids.shape == (5, 15)
    flat = shared.input_ids.view(-1)
    assert flat[shared.logit_positions[[0, 3, 4]]].tolist() == [p[-1]] * 3  # the prompt's last token, once
    assert shared.attention_mask[1, 0, -1].tolist() == [False] * 18 + [True]  # padding sees itself alone

    def log_probs(mb):
        logits = mb.select_logits(model(**mb.forward_kwargs()).logits)
        return torch.log_softmax(logits, -1).gather(-1, mb.targets[:, None])[:, 0]

    grads = []
    for mb in (shared, padded):
        model.zero_grad()
        lp = log_probs(mb)
        (lp * torch.linspace(-1, 1, len(lp))).sum().backward()
        grads.append({n: w.grad.clone() for n, w in model.named_parameters()})
        if mb is shared:
            first = lp.detach()
    torch.testing.assert_close(first, lp.detach(), atol=1e-5, rtol=1e-5)
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-5, rtol=1e-4)


def test_pad_bins_sort_by_length_and_count_padding_against_the_budget() -> None:
    lengths = {0: 5, 1: 9, 2: 3, 3: 7, 4: 2, 5: 8, 6: 4}
    bins = pad_bins(lengths, 20)
    # Longest first; a bin's cost is rows × its first (longest) length: 9+8 | 7+5 | 4+3+2 (3 rows × 4).
    assert bins == [[1, 5], [3, 0], [6, 2, 4]]
    assert all(len(b) * max(lengths[i] for i in b) <= 20 for b in bins)
    with pytest.raises(ValueError, match="max-tokens-per-micro-batch"):
        pad_bins({0: 21}, 20)


def test_collate_padded_points_each_logit_at_the_next_response_token() -> None:
    mb = collate_padded([(0, [1, 2, 3], [4, 5]), (1, [6], [7, 8, 9])], pad_token=0)
    assert mb.input_ids.tolist() == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 0]] and mb.position_ids is None
    flat = mb.input_ids.view(-1)
    assert flat[mb.logit_positions + 1].tolist() == mb.targets.tolist() == [4, 5, 7, 8, 9]
    # Row 1's first response token is predicted at position 0: logits for the last 5 positions.
    assert mb.logits_to_keep == 5 and mb.n_tokens == 10
    logits = torch.arange(10.0).view(2, 5, 1)
    assert mb.select_logits(logits)[:, 0].tolist() == [2.0, 3.0, 5.0, 6.0, 7.0]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_padded_and_packed_micro_batches_give_the_same_log_probs(attn: str) -> None:
    model = tiny_qwen3(TOK)
    model.set_attn_implementation(attn)
    model.eval()
    gen = torch.Generator().manual_seed(1)
    triples = [
        (i, torch.randint(5, 90, (p,), generator=gen).tolist(), torch.randint(5, 90, (r,), generator=gen).tolist())
        for i, (p, r) in enumerate([(7, 3), (2, 9), (12, 1), (5, 5)])
    ]

    def log_probs(mb):
        with torch.no_grad():
            logits = mb.select_logits(model(**mb.forward_kwargs()).logits)
        return torch.log_softmax(logits, -1).gather(-1, mb.targets[:, None])[:, 0]

    packed = log_probs(collate(triples))
    padded = collate_padded(triples, pad_token=0)
    assert padded.logits_to_keep < padded.input_ids.shape[1]  # the kept tail, not every position
    torch.testing.assert_close(log_probs(padded), packed, atol=1e-5, rtol=1e-5)
