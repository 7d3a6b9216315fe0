"""p2o_cli.rl.core_algos against hand-computed numbers (arithmetic in the comments)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from p2o_cli.rl import core_algos as ca


def t(values, dtype=torch.float32) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype)


# ------------------------------------------------------------------ advantages

SQRT_1_3 = math.sqrt(1 / 3)  # 0.57735


def test_grpo_std_normalised_2d():
    # [1, 0, 0, 1]: mean 0.5, unbiased var = 4 * 0.25 / 3 = 1/3, std 0.57735
    #   -> adv = ±0.5 / (0.57735 + 1e-6) = ±0.866024
    # [1, 1, 1, 1]: zero variance -> exactly 0
    adv = ca.grpo_advantages(t([[1, 0, 0, 1], [1, 1, 1, 1]]))
    a = 0.5 / (SQRT_1_3 + 1e-6)
    assert_close(adv, t([[a, -a, -a, a], [0, 0, 0, 0]]))
    assert_close(adv[0, 0], t(0.8660), atol=1e-4, rtol=0)
    assert torch.equal(adv[1], torch.zeros(4))


def test_grpo_without_std():
    # [1, 0, 0, 1] - 0.5 = ±0.5;  [3, 1, 2] - 2 = [1, -1, 0]
    assert_close(ca.grpo_advantages(t([[1, 0, 0, 1]]), norm_by_std=False), t([[0.5, -0.5, -0.5, 0.5]]))
    adv = ca.compute_advantages("dr_grpo", t([3, 1, 2]), ["p", "p", "p"])
    assert_close(adv, t([1, -1, 0]))
    assert_close(ca.compute_advantages("grpo_no_std", t([3, 1, 2]), ["p"] * 3), adv)
    assert_close(ca.compute_advantages("grpo", t([3, 1, 2]), ["p"] * 3, norm_by_std=False), adv)


def test_zero_variance_and_singleton_groups_are_exactly_zero():
    # 0.1 * 3 / 3 need not round back to 0.1; the result must still be exactly 0.
    for name in ("grpo", "dr_grpo"):
        adv = ca.compute_advantages(name, t([0.1, 0.1, 0.1, 0.7]), ["a", "a", "a", "solo"])
        assert torch.equal(adv, torch.zeros(4))


def test_two_interleaved_groups_with_string_ids():
    # a: rewards [1, 0, 0] (positions 0, 2, 4); b: [0, 0, 1] (positions 1, 3, 5)
    # each: mean 1/3, unbiased var = ((2/3)^2 + 2 (1/3)^2) / 2 = 1/3, std 0.57735
    #   winner: (2/3) / 0.57735 = 1.1547;  losers: -(1/3) / 0.57735 = -0.57735
    rewards = t([1, 0, 0, 0, 0, 1])
    ids = ["a", "b", "a", "b", "a", "b"]
    adv = ca.compute_advantages("grpo", rewards, ids)
    w, l_ = (2 / 3) / (SQRT_1_3 + 1e-6), -(1 / 3) / (SQRT_1_3 + 1e-6)
    assert_close(adv, t([w, l_, l_, l_, l_, w]))
    assert_close(adv[0], t(1.1547), atol=1e-4, rtol=0)
    # the same groups named by a non-contiguous integer tensor, and the flat low-level call
    assert_close(ca.compute_advantages("grpo", rewards, torch.tensor([7, 3, 7, 3, 7, 3])), adv)
    assert_close(ca.grpo_advantages(rewards, torch.tensor([0, 1, 0, 1, 0, 1])), adv)


def test_anchored_groups():
    # group t: templated rewards [1, 1] anchored by the plain rewards [0, 0] that made it hard:
    #   stats over [1, 1, 0, 0]: mean 0.5, unbiased std 0.57735 -> both get +0.866025
    #   (without the anchor the group is constant and gets exactly 0)
    # group p: [1, 0], no anchor: mean 0.5, std 0.70711 -> ±0.707106
    # an anchor for an id not in the batch changes nothing
    rewards, ids = t([1, 1, 1, 0]), ["t", "t", "p", "p"]
    adv = ca.compute_advantages("grpo", rewards, ids, anchors={"t": [0.0, 0.0], "absent": [1.0]})
    a, b = 0.5 / (SQRT_1_3 + 1e-6), 0.5 / (math.sqrt(0.5) + 1e-6)
    assert_close(adv, t([a, a, b, -b]))
    assert_close(adv[0], t(0.8660), atol=1e-4, rtol=0)
    assert torch.equal(ca.compute_advantages("grpo", rewards, ids)[:2], torch.zeros(2))
    # Dr. GRPO: [1, 0] anchored by [0, 0, 0, 0]: mean 1/6 -> [5/6, -1/6]
    assert_close(ca.compute_advantages("dr_grpo", t([1, 0]), ["h", "h"], anchors={"h": [0] * 4}), t([5 / 6, -1 / 6]))
    with pytest.raises(ValueError, match="sequence"):
        ca.compute_advantages("grpo", rewards, torch.tensor([0, 0, 1, 1]), anchors={0: [0.0]})


def test_grpo_matches_naive_per_group_loop():
    gen = torch.Generator().manual_seed(3)
    rewards = torch.randint(0, 2, (40,), generator=gen).double() + torch.rand(40, generator=gen, dtype=torch.float64)
    ids = torch.randint(0, 9, (40,), generator=gen)
    expected = torch.empty_like(rewards)
    for g in ids.unique():
        sel = ids == g
        r = rewards[sel]
        std = r.std() if r.numel() > 1 else torch.zeros((), dtype=r.dtype)  # torch.std is unbiased
        expected[sel] = (r - r.mean()) / (std + 1e-6)
    assert_close(ca.compute_advantages("grpo", rewards, ids), expected)


def test_integer_rewards_and_shape_errors():
    assert_close(ca.compute_advantages("dr_grpo", torch.tensor([1, 0]), ["x", "x"]), t([0.5, -0.5]))
    with pytest.raises(ValueError, match="2 rewards but 3 group ids"):
        ca.compute_advantages("grpo", t([1, 0]), ["a", "a", "b"])
    with pytest.raises(ValueError, match="G, K"):
        ca.grpo_advantages(t([1, 0]))


def test_frac_zero_std():
    # groups a [1, 1] constant, b [0, 1] not, c [0, 0] constant -> 2 of 3 groups
    rewards = t([1, 1, 0, 1, 0, 0])
    assert ca.frac_zero_std(rewards, ["a", "a", "b", "b", "c", "c"]) == pytest.approx(2 / 3)
    assert ca.frac_zero_std(t([0, 1]), ["a", "a"]) == 0.0


# ------------------------------------------------------------------ policy loss


def _logp_pair(ratios):
    """log_probs, old_log_probs with exp(new - old) = ratios (old = 0)."""
    return torch.log(t(ratios)), torch.zeros(len(ratios))


def test_clipped_surrogate_inside_and_outside_clip_range():
    # clip range [0.8, 1.2], loss = max(-A r, -A clip(r)); dual clip off here
    #   A=+1 r=1.1: max(-1.1, -1.1) = -1.1        (inside, not clipped)
    #   A=+1 r=1.5: max(-1.5, -1.2) = -1.2        (clipped)
    #   A=+1 r=0.5: max(-0.5, -0.8) = -0.5        (not clipped: pessimistic branch is r)
    #   A=-1 r=0.5: max( 0.5,  0.8) =  0.8        (clipped)
    #   A=-1 r=1.5: max( 1.5,  1.2) =  1.5        (not clipped)
    #   A=-1 r=0.9: max( 0.9,  0.9) =  0.9        (inside)
    new, old = _logp_pair([1.1, 1.5, 0.5, 0.5, 1.5, 0.9])
    adv = t([1, 1, 1, -1, -1, -1])
    mask = torch.ones(6, dtype=torch.bool)
    loss, stats = ca.clipped_surrogate(new[None], old[None], adv[None], mask[None], dual_clip=None)
    assert_close(loss, t([[-1.1, -1.2, -0.5, 0.8, 1.5, 0.9]]))
    assert stats["pg_clipfrac"] == pytest.approx(2 / 6)
    assert stats["pg_clipfrac_lower"] == 0.0
    # ppo_kl = mean(old - new) = -mean(log r) = -(ln1.1 + ln1.5 + 2 ln0.5 + ln1.5 + ln0.9) / 6
    expected_kl = -sum(math.log(r) for r in [1.1, 1.5, 0.5, 0.5, 1.5, 0.9]) / 6
    assert stats["ppo_kl"] == pytest.approx(expected_kl, abs=1e-6)


def test_clip_higher_is_asymmetric():
    # clip_low 0.2, clip_high 0.28 -> range [0.8, 1.28]
    #   A=+1 r=1.25: inside the raised ceiling -> -1.25 (symmetric 0.2 would give -1.2)
    #   A=-1 r=0.75: floor still 0.8 -> max(0.75, 0.8) = 0.8
    new, old = _logp_pair([1.25, 0.75])
    adv, mask = t([1, -1]), torch.ones(2, dtype=torch.bool)
    loss, stats = ca.clipped_surrogate(new[None], old[None], adv[None], mask[None], clip_high=0.28)
    assert_close(loss, t([[-1.25, 0.8]]))
    assert stats["pg_clipfrac"] == pytest.approx(0.5)
    sym, _ = ca.clipped_surrogate(new[None], old[None], adv[None], mask[None])
    assert_close(sym, t([[-1.2, 0.8]]))


def test_dual_clip_bounds_negative_advantage_loss():
    # A=-1 r=5: clipped PPO loss max(5, 1.2) = 5; dual clip c=3 caps it at -c A = 3
    # A=-2 r=1.4: max(2.8, 2.4) = 2.8 < -c A = 6 -> untouched
    # A=+1 r=5: max(-5, -1.2) = -1.2; dual clip never applies to positive advantages
    new, old = _logp_pair([5.0, 1.4, 5.0])
    adv, mask = t([-1, -2, 1]), torch.ones(3, dtype=torch.bool)
    loss, stats = ca.clipped_surrogate(new[None], old[None], adv[None], mask[None], dual_clip=3.0)
    assert_close(loss, t([[3.0, 2.8, -1.2]]))
    assert stats["pg_clipfrac_lower"] == pytest.approx(1 / 3)
    assert stats["pg_clipfrac"] == pytest.approx(1 / 3)  # only the A=+1 r=5 token took the clip branch
    # the capped token has no gradient (loss is the constant -c A there)
    new = new.clone().requires_grad_(True)
    loss, _ = ca.clipped_surrogate(new[None], old[None], adv[None], mask[None], dual_clip=3.0)
    loss.sum().backward()
    assert new.grad[0] == 0 and new.grad[2] == 0 and new.grad[1] != 0
    # without dual clip the loss is the plain clipped value
    off, _ = ca.clipped_surrogate(torch.log(t([[5.0]])), torch.zeros(1, 1), t([-1]), torch.ones(1, 1), dual_clip=None)
    assert_close(off, t([[5.0]]))


def test_per_sequence_advantages_broadcast_and_mask_stats():
    # two sequences, per-sequence advantages [+1, -1]; token (1, 2) is padding with wild values
    new = torch.log(t([[1.5, 1.0, 1.0], [1.0, 1.0, 1.0]]))
    new[1, 2] = float("nan")
    old = torch.zeros(2, 3)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    loss, stats = ca.clipped_surrogate(new, old, t([1, -1]), mask)
    # seq 0: [-1.2 (clipped), -1, -1]; seq 1: [1, 1, 0 (masked)]
    assert_close(loss, t([[-1.2, -1.0, -1.0], [1.0, 1.0, 0.0]]))
    assert stats["pg_clipfrac"] == pytest.approx(1 / 5)  # 1 clipped of 5 mask tokens
    assert stats["ppo_kl"] == pytest.approx(-math.log(1.5) / 5, abs=1e-6)
    column, _ = ca.clipped_surrogate(new, old, t([[1], [-1]]), mask)  # [B, 1] broadcasts too
    assert_close(column, loss)


def test_policy_loss_registry():
    assert ca.get_policy_loss("ppo_clip") is ca.clipped_surrogate
    assert ca.get_policy_loss("vanilla") is ca.clipped_surrogate
    with pytest.raises(ValueError, match=r"unknown policy loss 'nope'; known: .*ppo_clip"):
        ca.get_policy_loss("nope")
    with pytest.raises(ValueError, match="dual_clip"):
        ca.clipped_surrogate(torch.zeros(1, 1), torch.zeros(1, 1), t([1]), torch.ones(1, 1), dual_clip=0.5)


# ------------------------------------------------------------------ aggregation

LOSS = t([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
MASK = torch.tensor([[1, 1, 1], [1, 0, 0], [0, 0, 0]])  # ragged; third row has no tokens


def test_aggregation_modes_on_ragged_mask():
    # token-mean:          (1 + 2 + 3 + 4) / 4 tokens          = 2.5
    # seq-mean-token-mean: (mean[1,2,3] = 2, mean[4] = 4) / 2  = 3.0
    # seq-mean-token-sum:  (sum = 6, sum = 4) / 2              = 5.0
    # (the empty third row is left out of the sequence count)
    assert_close(ca.aggregate_loss(LOSS, MASK, "token-mean"), t(2.5))
    assert_close(ca.aggregate_loss(LOSS, MASK, "seq-mean-token-mean"), t(3.0))
    assert_close(ca.aggregate_loss(LOSS, MASK, "seq-mean-token-sum"), t(5.0))
    assert ca.loss_normalizers(MASK) == (4.0, 2.0)


def test_aggregation_with_global_normalisers():
    # token-mean with 8 global tokens: 10 / 8 = 1.25; seq-mean-token-sum with 4 global seqs: 10 / 4 = 2.5
    assert_close(ca.aggregate_loss(LOSS, MASK, "token-mean", global_tokens=8), t(1.25))
    assert_close(ca.aggregate_loss(LOSS, MASK, "seq-mean-token-sum", global_seqs=4), t(2.5))
    with pytest.raises(ValueError, match="unknown loss aggregation mode 'mean'; known: token-mean"):
        ca.aggregate_loss(LOSS, MASK, "mean")
    with pytest.raises(ValueError, match="global_tokens must be positive"):
        ca.aggregate_loss(LOSS, MASK, global_tokens=0)


@pytest.mark.parametrize("mode", ca.AGG_MODES)
def test_micro_batch_sum_equals_full_batch(mode):
    gen = torch.Generator().manual_seed(0)
    loss = torch.randn(7, 5, generator=gen, dtype=torch.float64)
    lengths = torch.tensor([5, 1, 3, 0, 4, 2, 5])  # ragged, one empty sequence
    mask = torch.arange(5)[None, :] < lengths[:, None]
    tokens, seqs = ca.loss_normalizers(mask)
    assert (tokens, seqs) == (20.0, 6.0)

    full_param = loss.clone().requires_grad_(True)
    full = ca.aggregate_loss(full_param, mask, mode)
    full.backward()

    acc_param = loss.clone().requires_grad_(True)
    total = torch.zeros((), dtype=torch.float64)
    for rows in (slice(0, 3), slice(3, 4), slice(4, 7)):  # uneven micro-batches
        part = ca.aggregate_loss(acc_param[rows], mask[rows], mode, global_tokens=tokens, global_seqs=seqs)
        part.backward()
        total = total + part.detach()
    assert_close(total, full.detach())
    assert_close(acc_param.grad, full_param.grad)
    # without the global normaliser the micro-batch sum differs
    local = sum(ca.aggregate_loss(loss[r], mask[r], mode) for r in (slice(0, 3), slice(3, 4), slice(4, 7)))
    assert not torch.allclose(local, full.detach())


def test_masked_mean_and_sum():
    x = t([[1, 2, float("inf")], [3, float("nan"), 5]])
    m = torch.tensor([[1, 1, 0], [1, 0, 1]])
    assert_close(ca.masked_sum(x, m), t(11.0))  # 1 + 2 + 3 + 5
    assert_close(ca.masked_mean(x, m), t(11 / 4))
    assert_close(ca.masked_mean(x, m, dim=-1), t([1.5, 4.0]))
    assert_close(ca.masked_mean(x, torch.zeros_like(m)), t(0.0))  # empty mask -> 0, not nan


# ------------------------------------------------------------------ KL


def test_kl_estimators_at_known_points():
    logp = t([0.0, 0.0, 0.0])
    ref = t([math.log(2), -1.0, 25.0])
    # k3 with d = ref - logp:
    #   d = ln 2: e^d - d - 1 = 2 - 0.693147 - 1 = 0.306853
    #   d = -1:   e^-1 + 1 - 1 = 0.367879
    #   d = 25:   clamped to d = 20, e^20 - 21 is huge -> clamped to 10
    assert_close(ca.kl_penalty(logp, ref, "k3"), t([0.306853, 0.367879, 10.0]))
    assert_close(ca.kl_penalty(logp, ref), ca.kl_penalty(logp, ref, "low_var_kl"))
    # k1 = logp - ref; k2 = 0.5 (logp - ref)^2: 0.5 * 0.693147^2 = 0.240227, 0.5 * 1 = 0.5
    assert_close(ca.kl_penalty(logp[:2], ref[:2], "k1"), t([-0.693147, 1.0]))
    assert_close(ca.kl_penalty(logp[:2], ref[:2], "k2"), t([0.240227, 0.5]))
    assert_close(ca.kl_penalty(ref, ref, "k3"), torch.zeros(3))
    with pytest.raises(ValueError, match="unknown KL penalty 'k4'; known: k1, k2, k3"):
        ca.kl_penalty(logp, ref, "k4")


# ------------------------------------------------------------------ template ratio mask


def test_template_ratio_mask():
    # ratio π(y|x)/π(y|x̃) per token; kept iff 0.01 <= ratio <= 10
    #   0.005 drop, 1 keep, 20 drop, 0.0101 keep, 9.99 keep, 0.5 keep
    ratios = [0.005, 1.0, 20.0, 0.0101, 9.99, 0.5]
    logp_t = t([[-2.0] * 6])
    logp_o = logp_t + torch.log(t([ratios]))
    keep, stats = ca.template_ratio_mask(logp_o, logp_t)
    assert keep.tolist() == [[False, True, False, True, True, True]]
    # mean = (0.005 + 1 + 20 + 0.0101 + 9.99 + 0.5) / 6 = 31.5051 / 6 = 5.25085
    assert stats["ratio_mean"] == pytest.approx(5.25085, rel=1e-5)
    assert stats["ratio_min"] == pytest.approx(0.005, rel=1e-5)
    assert stats["ratio_max"] == pytest.approx(20.0, rel=1e-5)
    assert stats["masked_frac"] == pytest.approx(2 / 6)


def test_template_ratio_mask_respects_response_mask_and_extremes():
    # valid tokens: ratios 0.005, 1, 20, 0.5; padding holds e^1000 (would overflow as a ratio)
    logp_o = t([[math.log(0.005), 0.0, math.log(20), math.log(0.5), 1000.0]])
    logp_t = torch.zeros(1, 5)
    resp = torch.tensor([[1, 1, 1, 1, 0]])
    keep, stats = ca.template_ratio_mask(logp_o, logp_t, resp, low=0.01, high=10.0)
    assert keep.tolist() == [[False, True, False, True, False]]
    # mean = (0.005 + 1 + 20 + 0.5) / 4 = 21.505 / 4 = 5.37625; 2 of 4 valid dropped
    assert stats["ratio_mean"] == pytest.approx(5.37625, rel=1e-5)
    assert stats["ratio_max"] == pytest.approx(20.0, rel=1e-5)
    assert stats["masked_frac"] == pytest.approx(0.5)
    # a huge log-ratio on a valid token is dropped and the stats stay finite
    keep, stats = ca.template_ratio_mask(t([[1000.0, 0.0]]), torch.zeros(1, 2))
    assert keep.tolist() == [[False, True]]
    assert math.isfinite(stats["ratio_max"]) and math.isfinite(stats["ratio_mean"])
    with pytest.raises(ValueError, match="0 < low <= high"):
        ca.template_ratio_mask(logp_o, logp_t, low=10.0, high=0.01)


# ------------------------------------------------------------------ logits -> log-probs


def test_token_log_probs_matches_log_softmax():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 7, generator=gen)
    labels = torch.randint(0, 7, (2, 4), generator=gen)
    labels[1, 3] = -100
    manual = torch.log_softmax(logits.double(), -1).gather(-1, labels.clamp(min=0)[..., None])[..., 0].float()
    manual[1, 3] = 0.0
    assert_close(ca.token_log_probs(logits, labels, chunk_size=3), manual)

    # tiny hand case: logits [0, ln 3] -> probs [1/4, 3/4]; log 0.75 = -0.287682, log 0.25 = -1.386294
    small = t([[[0.0, math.log(3)], [0.0, math.log(3)]]])
    assert_close(ca.token_log_probs(small, torch.tensor([[1, 0]])), t([[-0.287682, -1.386294]]))


def test_token_log_probs_gradients_and_half_precision():
    gen = torch.Generator().manual_seed(2)
    base = torch.randn(2, 5, 11, generator=gen)
    labels = torch.randint(0, 11, (2, 5), generator=gen)
    w = torch.randn(2, 5, generator=gen)

    ours = base.clone().requires_grad_(True)
    (ca.token_log_probs(ours[:, :-1], labels[:, 1:], chunk_size=2) * w[:, 1:]).sum().backward()
    ref = base.clone().requires_grad_(True)
    (torch.log_softmax(ref[:, :-1], -1).gather(-1, labels[:, 1:, None])[..., 0] * w[:, 1:]).sum().backward()
    assert_close(ours.grad, ref.grad)

    # bf16 logits: result is float32 and equals float32 math on the bf16 values (checkpointed path)
    half = base.bfloat16().requires_grad_(True)
    out = ca.token_log_probs(half, labels, chunk_size=4)
    assert out.dtype == torch.float32
    upcast = half.detach().float().requires_grad_(True)
    expected = torch.log_softmax(upcast, -1).gather(-1, labels[..., None])[..., 0]
    assert_close(out, expected.detach())
    (out * w).sum().backward()
    (expected * w).sum().backward()
    # the gathered and logsumexp gradients are summed in bf16, so compare at bf16 precision
    assert_close(half.grad, upcast.grad.bfloat16())


def test_entropy_from_logits():
    # uniform over 4 -> ln 4 = 1.386294
    # probs [0.5, 0.25, 0.25] -> 0.5 ln 2 + 2 * 0.25 ln 4 = 0.346574 + 0.693147 = 1.039721
    # probs [1, 0] via logits [0, -inf] -> 0 (no nan)
    uniform = torch.zeros(1, 1, 4)
    assert_close(ca.entropy_from_logits(uniform), t([[1.386294]]))
    skewed = torch.log(t([[[0.5, 0.25, 0.25]]]))
    assert_close(ca.entropy_from_logits(skewed), t([[1.039721]]))
    assert_close(ca.entropy_from_logits(t([[0.0, float("-inf")]])), t([0.0]))


# ------------------------------------------------------------------ registries


def test_advantage_registry_and_custom_registration():
    from p2o_cli.rl import registry

    assert {"grpo", "dr_grpo", "grpo_no_std"} <= set(ca.known_advantage_estimators())
    with pytest.raises(ValueError, match=r"unknown advantage estimator 'ppo'; known: dr_grpo, grpo, grpo_no_std"):
        ca.compute_advantages("ppo", t([1.0]), ["a"])

    @ca.register_advantage_estimator("test_raw")
    def raw(rewards: torch.Tensor, index: torch.Tensor, norm_by_std: bool = True, eps: float = 1e-6) -> torch.Tensor:
        return rewards * 2

    try:
        assert_close(ca.compute_advantages("test_raw", t([1.0, 0.0]), ["a", "b"]), t([2.0, 0.0]))
        with pytest.raises(ValueError, match="already registered"):
            ca.register_advantage_estimator("grpo")(raw)
    finally:
        registry.ADVANTAGE_ESTIMATORS.unregister("test_raw")
    assert "test_raw" not in ca.known_advantage_estimators()
    assert ca.known_kl_penalties() == ["k1", "k2", "k3", "kl", "low_var_kl", "mse"]
    assert ca.get_kl_penalty("kl") is ca.get_kl_penalty("k1")
