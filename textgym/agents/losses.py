"""The maths of the trainers, as pure functions on ``(B, T)`` tensors with a step mask.

Every function takes ``mask`` (True for the steps an episode took) so episodes of different
lengths share one tensor; the tests check each against hand-computed numbers.
"""

from __future__ import annotations

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over the steps where ``mask`` is true."""
    return (x * mask).sum() / mask.sum().clamp(min=1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``(x - mean) / std`` over the masked steps; 0 elsewhere."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + eps) * mask


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation (Schulman et al., 2016) for whole episodes.

    An episode ends at its last masked step (terminated, or truncated by the env's own limit, which
    is part of the task), so the value after it is 0.

    Returns:
        ``(advantages, returns)`` with ``returns = advantages + values``; 0 outside the mask.
    """
    B, T = rewards.shape
    advantages = torch.zeros_like(rewards)
    last = torch.zeros(B, device=rewards.device)
    next_value = torch.zeros(B, device=rewards.device)
    m = mask.float()
    for t in reversed(range(T)):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = (delta + gamma * lam * last) * m[:, t]
        advantages[:, t] = last
        next_value = values[:, t] * m[:, t]
    return advantages, (advantages + values) * m


def returns_to_go(rewards: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """``G_t = r_t + gamma * G_{t+1}`` within each episode; 0 outside the mask."""
    out = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[0], device=rewards.device)
    for t in reversed(range(rewards.shape[1])):
        running = (rewards[:, t] + gamma * running) * mask[:, t]
        out[:, t] = running
    return out


def rloo_baseline(returns: torch.Tensor, group_size: int) -> torch.Tensor:
    """Leave-one-out baseline (Kool et al., 2019; Ahmadian et al., 2024): for each of ``k`` samples
    of the same prompt, the mean return of the other ``k - 1``.

    Args:
        returns: ``(B,)`` or ``(B, T)``, episodes in consecutive groups of ``group_size``.
    """
    if group_size < 2:
        raise ValueError(f"a leave-one-out baseline needs at least 2 samples per prompt, got {group_size}")
    shape = returns.shape
    grouped = returns.reshape(-1, group_size, *shape[1:])
    total = grouped.sum(1, keepdim=True)
    return ((total - grouped) / (group_size - 1)).reshape(shape)


def ppo_policy_loss(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, clip_coef: float,
    loss_type: str = "token_mean",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate (Schulman et al., 2017), to minimise: the mean over the masked steps,
    or another reduction of :func:`sequence_loss`.

    Returns:
        ``(pg_loss, clipfrac, approx_kl)``; ``approx_kl`` is the k3 estimator of
        KL(old ‖ new), ``(ratio - 1) - log ratio`` (Schulman, "Approximating KL divergence", 2020).
    """
    log_ratio = logprobs - old_logprobs
    ratio = log_ratio.exp()
    pg_loss1 = -advantages * ratio
    pg_loss2 = -advantages * ratio.clamp(1 - clip_coef, 1 + clip_coef)
    pg_loss = sequence_loss(torch.maximum(pg_loss1, pg_loss2), mask, loss_type)
    with torch.no_grad():
        clipfrac = masked_mean(((ratio - 1).abs() > clip_coef).float(), mask)
        approx_kl = masked_mean((ratio - 1) - log_ratio, mask)
    return pg_loss, clipfrac, approx_kl


def value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, clip_coef: float | None
) -> torch.Tensor:
    """``0.5 * (V - R)^2``, with PPO's value clipping when ``clip_coef`` is set (the max of the two)."""
    loss = (values - returns) ** 2
    if clip_coef is not None:
        clipped = old_values + (values - old_values).clamp(-clip_coef, clip_coef)
        loss = torch.maximum(loss, (clipped - returns) ** 2)
    return 0.5 * masked_mean(loss, mask)


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-step estimate of KL(policy ‖ reference) from the sampled actions' log-probs.

    ``k1 = log p - log q`` (unbiased, can be negative); ``k3 = (q/p - 1) - log(q/p)`` (unbiased,
    never negative, lower variance). Names from Schulman (2020), as in TRL.
    """
    log_ratio = logprobs - ref_logprobs
    if estimator == "k1":
        return log_ratio
    if estimator == "k3":
        return (-log_ratio).exp() - 1 + log_ratio
    raise ValueError(f"unknown KL estimator {estimator!r}: expected 'k1' or 'k3'")


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """``1 - Var(returns - values) / Var(returns)`` over the masked steps (1 is perfect, <= 0 useless)."""
    var_returns = masked_mean((returns - masked_mean(returns, mask)) ** 2, mask)
    diff = returns - values
    var_diff = masked_mean((diff - masked_mean(diff, mask)) ** 2, mask)
    return float("nan") if var_returns == 0 else float(1 - var_diff / var_returns)


class AdaptiveKLController:
    """The adaptive KL coefficient of Ziegler et al. (2019): move ``value`` so the KL tracks ``target``.

    ``value *= 1 + clip(kl / target - 1, -0.2, 0.2) * n_steps / horizon``.
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: int) -> None:
        self.value, self.target, self.horizon = init_kl_coef, target, horizon

    def update(self, kl: float, n_steps: int) -> float:
        error = max(-0.2, min(0.2, kl / self.target - 1))
        self.value *= 1 + error * n_steps / self.horizon
        return self.value


def group_advantages(returns: torch.Tensor, group_size: int, scale: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """GRPO's advantages (Shao et al., 2024): each episode's return less the mean return of its group of
    ``group_size`` samples of the same prompt, divided by the group's standard deviation when ``scale``.

    ``scale=False`` is Dr. GRPO's (Liu et al., 2025): dividing by the std weights the groups whose
    samples nearly agree (too easy or too hard prompts) the most. The std is the sample std
    (``n - 1``), as TRL computes it; a group whose returns all agree gets advantages of 0.

    Args:
        returns: ``(B,)``, episodes in consecutive groups of ``group_size``.
    """
    if group_size < 2 or returns.shape[0] % group_size:
        raise ValueError(f"group_size must be at least 2 and divide the {returns.shape[0]} episodes, got {group_size}")
    grouped = returns.reshape(-1, group_size)
    centred = grouped - grouped.mean(1, keepdim=True)
    if scale:
        centred = centred / (grouped.std(1, keepdim=True) + eps)
    return centred.reshape(-1)


def group_token_advantages(returns_to_go: torch.Tensor, mask: torch.Tensor, group_size: int, scale: bool = True,
                           eps: float = 1e-4) -> torch.Tensor:
    """GRPO's advantages for envs that pay rewards per step: at each step ``t``, an episode's
    return-to-go ``G_t`` less the mean ``G_t`` of its group's samples, divided by their std when
    ``scale``; 0 outside the mask.

    Every sample of a group plays the same prompt, so step ``t`` of each is the same position of
    the answer; a sample that has ended counts with ``G_t = 0`` (what is left of its return), as in
    :func:`rloo_baseline`. A step is then credited with the rewards that came after it, and
    shaped rewards reach the token that earned them, instead of one advantage per episode that
    every token shares (:func:`group_advantages`). With rewards only at the end, ``G_t`` is the
    episode's return at every step and this is :func:`group_advantages` for each step.

    Args:
        returns_to_go: ``(B, T)``, episodes in consecutive groups of ``group_size``.
    """
    B = returns_to_go.shape[0]
    if group_size < 2 or B % group_size:
        raise ValueError(f"group_size must be at least 2 and divide the {B} episodes, got {group_size}")
    grouped = (returns_to_go * mask).reshape(-1, group_size, returns_to_go.shape[1])
    centred = grouped - grouped.mean(1, keepdim=True)
    if scale:
        centred = centred / (grouped.std(1, keepdim=True) + eps)
    return centred.reshape(returns_to_go.shape) * mask


def informative_groups(returns: torch.Tensor, group_size: int) -> torch.Tensor:
    """``(B,)`` True for the episodes of groups whose returns are not all the same.

    A group whose samples all score the same gives no signal on which of them was better (its
    episode advantages are exactly 0); DAPO (Yu et al., 2025) resamples such prompts, and GRPO
    here leaves them out of the policy loss, so they do not dilute the mean over episodes.
    """
    grouped = returns.reshape(-1, group_size)
    spread = grouped.amax(1) - grouped.amin(1)
    return (spread > 1e-6).repeat_interleave(group_size)


LOSS_TYPES = ("token_mean", "grpo", "dr_grpo")


def sequence_loss(per_token: torch.Tensor, mask: torch.Tensor, loss_type: str = "grpo") -> torch.Tensor:
    """Reduce a per-token loss ``(B, T)`` to a scalar.

    * ``"token_mean"``: the mean over every step in ``mask`` (PPO's; TRL's ``"bnpo"``), so a long
      episode weighs more than a short one, and the scale of the whole follows how many steps
      the minibatch holds.
    * ``"grpo"``: the mean over each episode's steps, then over the episodes that have any step in
      ``mask`` (Shao et al., 2024), so every episode weighs the same, however long.
    * ``"dr_grpo"``: the sum over every step divided by ``B * T``, a constant (Liu et al., 2025),
      so a long wrong episode is not pushed down less per token than a short one.
    """
    if loss_type == "token_mean":
        return masked_mean(per_token, mask)
    m = mask.float()
    if loss_type == "grpo":
        steps = m.sum(1)
        return ((per_token * m).sum(1) / steps.clamp(min=1)).sum() / (steps > 0).sum().clamp(min=1)
    if loss_type == "dr_grpo":
        return (per_token * m).sum() / m.numel()
    raise ValueError(f"unknown loss_type {loss_type!r}: expected one of {list(LOSS_TYPES)}")


def grpo_policy_loss(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
    clip_coef: float, loss_type: str = "grpo",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The clipped surrogate of PPO with one advantage per episode ``(B,)`` for all its steps, or one
    per step ``(B, T)``, reduced by :func:`sequence_loss`.

    Returns:
        ``(pg_loss, clipfrac, approx_kl)`` as :func:`ppo_policy_loss`.
    """
    adv = advantages[:, None] if advantages.dim() == 1 else advantages
    return ppo_policy_loss(logprobs, old_logprobs, adv, mask, clip_coef, loss_type)
