"""The trainers' maths against numbers computed by hand."""

import math

import pytest
import torch

from textgym.agents.losses import (
    AdaptiveKLController,
    explained_variance,
    gae,
    kl_penalty,
    masked_whiten,
    ppo_policy_loss,
    returns_to_go,
    rloo_baseline,
    value_loss,
)


def t(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_gae_hand_computed():
    # gamma 1, lambda 0.5: deltas 0.1, 0.1, 0.3; A2 = 0.3, A1 = 0.1 + 0.5*0.3, A0 = 0.1 + 0.5*0.25
    adv, ret = gae(t([0, 0, 1]), t([0.5, 0.6, 0.7]), torch.ones(1, 3, dtype=torch.bool), 1.0, 0.5)
    assert adv[0].tolist() == pytest.approx([0.225, 0.25, 0.3])
    assert ret[0].tolist() == pytest.approx([0.725, 0.85, 1.0])


def test_gae_stops_at_the_end_of_the_episode():
    mask = torch.tensor([[True, True, False]])
    adv, ret = gae(t([0, 1, 5]), t([0.5, 0.6, 0.7]), mask, 1.0, 0.5)
    assert adv[0].tolist() == pytest.approx([0.3, 0.4, 0.0])  # the value after the last step is 0
    assert ret[0, 2] == 0


def test_gae_with_lambda_one_is_the_discounted_return_minus_the_value():
    adv, _ = gae(t([1, 2]), t([0.0, 0.0]), torch.ones(1, 2, dtype=torch.bool), 0.9, 1.0)
    assert adv[0].tolist() == pytest.approx([2.8, 2.0])
    assert returns_to_go(t([1, 2]), torch.ones(1, 2, dtype=torch.bool), 0.9)[0].tolist() == pytest.approx([2.8, 2.0])


def test_ppo_policy_loss_hand_computed():
    old = torch.zeros(1, 3)
    new = torch.log(t([1.5, 0.5, 0.5]))
    adv = t([1.0, 1.0, -1.0])
    pg_loss, clipfrac, approx_kl = ppo_policy_loss(new, old, adv, torch.ones(1, 3, dtype=torch.bool), 0.2)
    # max(-A r, -A clip(r)): -1.2, -0.5, 0.8
    assert float(pg_loss) == pytest.approx((-1.2 - 0.5 + 0.8) / 3)
    assert float(clipfrac) == 1.0
    k3 = [(r - 1) - math.log(r) for r in (1.5, 0.5, 0.5)]
    assert float(approx_kl) == pytest.approx(sum(k3) / 3)


def test_ppo_policy_loss_ignores_masked_steps():
    mask = torch.tensor([[True, False]])
    pg_loss, _, _ = ppo_policy_loss(torch.zeros(1, 2), torch.zeros(1, 2), t([2.0, 100.0]), mask, 0.2)
    assert float(pg_loss) == pytest.approx(-2.0)


def test_value_loss_clipped_and_unclipped():
    mask = torch.ones(1, 1, dtype=torch.bool)
    # unclipped (1 - 2)^2 = 1; clipped 0.5 + 0.2 = 0.7 -> (0.7 - 2)^2 = 1.69; the max, halved
    assert float(value_loss(t([1.0]), t([0.5]), t([2.0]), mask, 0.2)) == pytest.approx(0.845)
    assert float(value_loss(t([1.0]), t([0.5]), t([2.0]), mask, None)) == pytest.approx(0.5)


def test_kl_estimators():
    logp, ref = torch.log(t([0.5])), torch.log(t([0.25]))
    assert float(kl_penalty(logp, ref, "k1")) == pytest.approx(math.log(2))
    assert float(kl_penalty(logp, ref, "k3")) == pytest.approx(-0.5 + math.log(2))
    assert float(kl_penalty(logp, logp, "k3")) == 0.0
    with pytest.raises(ValueError, match="unknown KL estimator 'k2'"):
        kl_penalty(logp, ref, "k2")


def test_rloo_baseline_hand_computed():
    returns = torch.tensor([1.0, 2.0, 3.0, 10.0, 20.0, 30.0])
    assert rloo_baseline(returns, 3).tolist() == pytest.approx([2.5, 2.0, 1.5, 25.0, 20.0, 15.0])
    with pytest.raises(ValueError, match="at least 2 samples"):
        rloo_baseline(returns, 1)


def test_whiten_and_explained_variance():
    mask = torch.tensor([[True, True, True, False]])
    x = t([1.0, 2.0, 3.0, 100.0])
    w = masked_whiten(x, mask)
    assert w[0, :3].mean() == pytest.approx(0.0, abs=1e-6) and w[0, 3] == 0
    assert explained_variance(x, x, mask) == pytest.approx(1.0)
    assert explained_variance(torch.full_like(x, 7.0), x, mask) == pytest.approx(0.0)


def test_adaptive_kl_controller():
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=1000)
    assert ctl.update(kl=9.0, n_steps=100) == pytest.approx(0.1 * (1 + 0.2 * 0.1))  # error clipped to 0.2
    assert ctl.update(kl=5.4, n_steps=100) == pytest.approx(0.102 * (1 - 0.1 * 0.1))


def test_group_advantages_hand_computed():
    from textgym.agents.losses import group_advantages

    returns = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0])
    a = 0.5 / math.sqrt(1 / 3)  # group 1: mean 0.5, sample std sqrt((4 * 0.25) / 3)
    expected = torch.tensor([a, -a, -a, a, 0, 0, 0, 0])
    assert torch.allclose(group_advantages(returns, 4, eps=0.0 + 1e-12), expected, atol=1e-6)
    assert torch.allclose(group_advantages(returns, 4, scale=False),
                          torch.tensor([0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0]))  # Dr. GRPO: no std
    with pytest.raises(ValueError, match="group_size must be at least 2 and divide the 8 episodes, got 3"):
        group_advantages(returns, 3)


def test_sequence_loss_grpo_and_dr_grpo_hand_computed():
    from textgym.agents.losses import sequence_loss

    per_token = torch.tensor([[1.0, 2.0, 3.0], [4.0, 9.0, 9.0]])
    mask = torch.tensor([[True, True, True], [True, False, False]])
    assert sequence_loss(per_token, mask, "grpo").item() == pytest.approx((2.0 + 4.0) / 2)  # per episode, then mean
    assert sequence_loss(per_token, mask, "dr_grpo").item() == pytest.approx(10.0 / 6)  # token sum / (B * T)
    assert sequence_loss(per_token, mask, "token_mean").item() == pytest.approx(10.0 / 4)  # over the 4 steps taken
    with pytest.raises(ValueError, match=r"unknown loss_type 'sum': expected one of \['token_mean', 'grpo', 'dr_grpo'\]"):
        sequence_loss(per_token, mask, "sum")


def test_ppo_policy_loss_reductions_hand_computed():
    # ratio 1 everywhere, so the per-step terms are -A: [[-1, -2, -3], [-6, ., .]]
    adv = torch.tensor([[1.0, 2.0, 3.0], [6.0, 50.0, 50.0]])
    mask = torch.tensor([[True, True, True], [True, False, False]])
    zeros = torch.zeros(2, 3)
    assert ppo_policy_loss(zeros, zeros, adv, mask, 0.2)[0].item() == pytest.approx(-12.0 / 4)
    assert ppo_policy_loss(zeros, zeros, adv, mask, 0.2, "dr_grpo")[0].item() == pytest.approx(-12.0 / 6)
    assert ppo_policy_loss(zeros, zeros, adv, mask, 0.2, "grpo")[0].item() == pytest.approx(-(2.0 + 6.0) / 2)


def test_grpo_policy_loss_clips_per_episode_advantage():
    from textgym.agents.losses import grpo_policy_loss

    old = torch.zeros(2, 1)
    new = torch.full((2, 1), math.log(1.5))  # ratio 1.5 for both
    mask = torch.ones(2, 1, dtype=torch.bool)
    loss, clipfrac, _ = grpo_policy_loss(new, old, torch.tensor([1.0, -1.0]), mask, clip_coef=0.2)
    # A = +1: -min(1.5, 1.2) = -1.2; A = -1: -min(-1.5, -1.2) = 1.5; mean = 0.15
    assert loss.item() == pytest.approx(0.15) and clipfrac.item() == 1.0


def test_group_token_advantages_hand_computed():
    from textgym.agents.losses import group_token_advantages

    # One group of 2 samples of the same prompt, 3 steps; sample 1 ended after 2 steps.
    # Returns-to-go: sample 0 [1.0, 0.5, 0.25], sample 1 [0.5, 0.5, (0: ended)].
    rtg = t([1.0, 0.5, 0.25], [0.5, 0.5, 9.0])  # 9.0 sits outside the mask and must not count
    mask = torch.tensor([[True, True, True], [True, True, False]])
    # step 0: mean 0.75, centred +-0.25; step 1: equal, 0; step 2: values 0.25 and 0, centred +-0.125
    assert torch.allclose(group_token_advantages(rtg, mask, 2, scale=False),
                          t([0.25, 0.0, 0.125], [-0.25, 0.0, 0.0]))
    # scaled by the sample std of 2 values, |a - b| / sqrt(2): 0.25 / (0.5 / sqrt 2) = 1 / sqrt 2
    s = 1 / math.sqrt(2)
    assert torch.allclose(group_token_advantages(rtg, mask, 2, eps=1e-12), t([s, 0.0, s], [-s, 0.0, 0.0]), atol=1e-5)
    # rewards only at the end: every step's return-to-go is the episode's return, and the
    # per-token form is the episode form at every step
    from textgym.agents.losses import group_advantages

    returns = torch.tensor([1.0, 0.0, 0.0, 1.0])
    full = torch.ones(4, 2, dtype=torch.bool)
    assert torch.allclose(group_token_advantages(returns[:, None].expand(4, 2), full, 4),
                          group_advantages(returns, 4)[:, None].expand(4, 2))
    with pytest.raises(ValueError, match="group_size must be at least 2 and divide the 2 episodes, got 3"):
        group_token_advantages(rtg, mask, 3)


def test_zero_variance_groups_are_found_and_left_out_of_the_grpo_loss():
    from textgym.agents.losses import grpo_policy_loss, informative_groups, sequence_loss

    returns = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.3, 0.3])  # groups of 2: all agree, differ, all agree
    keep = informative_groups(returns, 2)
    assert keep.tolist() == [False, False, True, True, False, False]
    # the "grpo" mean is over the episodes left in the loss: (1 + 3) / 2, not (1 + 3) / 6
    per_token = t([5.0], [5.0], [1.0], [3.0], [5.0], [5.0])
    mask = torch.ones(6, 1, dtype=torch.bool) & keep[:, None]
    assert sequence_loss(per_token, mask, "grpo").item() == pytest.approx(2.0)
    # per-step advantages (B, T) go through the same clipped surrogate
    loss, _, _ = grpo_policy_loss(torch.zeros(2, 2), torch.zeros(2, 2), t([1.0, -2.0], [0.5, 0.5]),
                                  torch.ones(2, 2, dtype=torch.bool), 0.2)
    assert loss.item() == pytest.approx(((-1.0 + 2.0) / 2 + (-0.5 - 0.5) / 2) / 2)


def test_rloo_whitened_advantages_and_the_clipped_update_hand_computed():
    # two groups of 2 samples, one step each: returns 1, 0 | 1, 1; leave-one-out baselines 0, 1 | 1, 1
    returns = t([1.0], [0.0], [1.0], [1.0])
    mask = torch.ones(4, 1, dtype=torch.bool)
    advantages = returns - rloo_baseline(returns, 2)
    assert advantages.squeeze(1).tolist() == [1.0, -1.0, 0.0, 0.0]
    white = masked_whiten(advantages, mask, eps=0.0)  # mean 0, std sqrt(0.5)
    s = math.sqrt(2)
    assert torch.allclose(white.squeeze(1), torch.tensor([s, -s, 0.0, 0.0]), atol=1e-6)
    # a later epoch: ratios 1.5 and 0.5 are clipped to 1.2 and 0.8 on the side that would gain
    new, old = t([math.log(1.5)], [math.log(0.5)], [0.0], [0.0]), torch.zeros(4, 1)
    loss, clipfrac, _ = ppo_policy_loss(new, old, white, mask, clip_coef=0.2)
    # -min(1.5 s, 1.2 s) = -1.2 s; -min(-0.5 s, -0.8 s) = 0.8 s; mean over 4 steps
    assert loss.item() == pytest.approx((-1.2 * s + 0.8 * s) / 4, abs=1e-6)
    assert clipfrac.item() == 0.5
    # the first step on a batch (ratio 1) has REINFORCE's gradient, -Σ ∇log π · A / n
    logp = torch.zeros(4, 1, requires_grad=True)
    ppo_policy_loss(logp, logp.detach(), white, mask, clip_coef=0.2)[0].backward()
    assert torch.allclose(logp.grad, -white / 4)


def test_rloo_advantages_are_dr_grpo_per_token_advantages_times_k_over_k_minus_1():
    from textgym.agents.losses import group_token_advantages, returns_to_go, rloo_baseline

    gen = torch.Generator().manual_seed(0)
    rewards = torch.rand(8, 5, generator=gen)
    mask = torch.arange(5)[None, :] < torch.tensor([5, 3, 4, 1, 2, 5, 5, 3])[:, None]
    returns = returns_to_go(rewards, mask, 1.0)
    rloo = (returns - rloo_baseline(returns, 4)) * mask
    assert torch.allclose(rloo, group_token_advantages(returns, mask, 4, scale=False) * 4 / 3, atol=1e-6)
