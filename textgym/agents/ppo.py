"""Proximal Policy Optimization on textgym envs, in one loop that reads top to bottom.

PPO (Schulman et al., 2017) with the details that make it work on text (Ziegler et al., 2019;
Huang et al., "The 37 implementation details of PPO", 2022; TRL): GAE, advantage whitening, a
clipped value loss, an entropy bonus, gradient-norm clipping, several epochs of minibatches with
an early stop on a target KL, and a KL penalty to a frozen reference policy (k1 or k3, with a fixed
or adaptive coefficient) added to the reward at every step.

Host syncs (each a wait for the device on CUDA), all of them needed: the rollout reads the longest
prompt once and whether every episode has ended every ``check_every`` steps; an iteration counts
its env steps (the budget), checks its losses for NaN once, reads ``approx_kl`` after each epoch
only with ``target_kl``, and reads its metrics once to log them.

Usage::

    from textgym.agents import ppo
    result = ppo.train(ppo.PPOConfig(env_id="textgym/Reverse-v0", total_steps=200_000))
    print(result.eval)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from torch import nn

from textgym.agents.common import (
    UpdateStats,
    anneal,
    collect_batch,
    compiled,
    critic_parameters,
    frozen_reference,
    gradient_step,
    kl_to_reference,
    minibatches,
    precision,
    setup,
)
from textgym.agents.configs import KLConfig, TrainConfig
from textgym.agents.evaluate import TrainResult
from textgym.agents.losses import (
    LOSS_TYPES,
    AdaptiveKLController,
    explained_variance,
    gae,
    masked_mean,
    masked_whiten,
    ppo_policy_loss,
    value_loss,
)
from textgym.agents.optim import Adam
from textgym.agents.rollout import evaluate_logprobs
from textgym.agents.run import env_metrics, iteration_metrics, save_and_evaluate, start_run
from textgym.config import FRACTION, NON_NEGATIVE, POSITIVE, POSITIVE_INT, Check


@dataclass(frozen=True)
class PPOConfig(TrainConfig, KLConfig):
    """PPO's hyperparameters (and, from :class:`TrainConfig`, the env, budget, device and model)."""

    gamma: float = 1.0
    """Discount: 1 for episodes as short as these."""
    gae_lambda: float = 0.95
    """GAE's bias/variance trade-off."""
    update_epochs: int = 4
    """Passes over each rollout."""
    num_minibatches: int = 4
    """Minibatches per pass (episodes are split, not steps: one forward per episode)."""
    clip_coef: float = 0.2
    """PPO's ratio clip."""
    clip_vloss: bool = True
    """Clip the value update around the rollout's values, as the policy's."""
    vf_coef: float = 0.5
    """Weight of the value loss."""
    ent_coef: float = 0.01
    """Weight of the entropy bonus."""
    norm_adv: bool = True
    """Whiten advantages over the rollout."""
    loss_type: str = "token_mean"
    """How the surrogate's per-step terms become one loss (:func:`~textgym.agents.losses.sequence_loss`):
    ``"token_mean"`` (the mean over the minibatch's steps, PPO's), ``"dr_grpo"`` (their sum over a
    constant) or ``"grpo"`` (each episode's mean, then the mean over episodes)."""
    target_kl: float | None = None
    """Stop an iteration's epochs once approx_kl passes this (None: never)."""
    adaptive_kl_target: float | None = None
    """When set, adapt ``kl_coef`` so the KL per episode tracks this value (Ziegler et al.)."""
    adaptive_kl_horizon: int = 10_000
    """Horizon of the adaptive controller, in episodes."""
    temperature: float = 1.0
    """Sampling temperature of the rollouts."""
    critic_warmup: int = 0
    """Iterations at the start that train only the value function (``policy.value_parameters()``),
    the policy's own weights frozen: a run that starts from a trained policy (after SFT) then
    begins its policy updates with advantages from a critic that knows the policy, instead of
    from an untrained value head's noise. Their env steps count toward ``total_steps``."""

    RULES: ClassVar[dict[str, Check]] = {
        "gamma": FRACTION, "gae_lambda": FRACTION, "update_epochs": POSITIVE_INT, "num_minibatches": POSITIVE_INT,
        "clip_coef": POSITIVE, "clip_vloss": Check(bool), "vf_coef": NON_NEGATIVE, "ent_coef": NON_NEGATIVE,
        "norm_adv": Check(bool), "target_kl": Check(float, 0, low_open=True, optional=True),
        "adaptive_kl_target": Check(float, 0, low_open=True, optional=True),
        "adaptive_kl_horizon": POSITIVE_INT, "temperature": POSITIVE, "critic_warmup": Check(int, 0),
        "loss_type": Check(str, choices=LOSS_TYPES),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.num_minibatches <= self.num_envs:
            raise ValueError(f"num_minibatches must be between 1 and num_envs={self.num_envs}, got {self.num_minibatches}")
        if self.adaptive_kl_target is not None and self.kl_coef <= 0:
            raise ValueError("adaptive_kl_target needs kl_coef > 0 (the starting coefficient)")


def train(cfg: PPOConfig, policy: nn.Module | None = None, out: str | Path | None = None, progress: bool = True,
          save_every: int = 10, resume: bool = False) -> TrainResult:
    """Train ``policy`` (a new one when None) with PPO.

    Args:
        cfg: the hyperparameters.
        policy: a policy to start from (e.g. after SFT); it is also the KL reference.
        out: a run directory for ``metrics.jsonl``, TensorBoard events, the learning curve, the
            policy and the training state (saved every ``save_every`` iterations and at the end).
        progress: show a progress bar.
        resume: continue the run saved in ``out`` exactly where its training state stands
            (see :mod:`textgym.agents.state`).

    Returns:
        A :class:`TrainResult` with the policy, the metrics of every iteration and a greedy evaluation.

    Raises:
        TrainingError: a loss became NaN (the last checkpoint in ``out`` is kept).
        TrainingInterrupted: SIGINT or SIGTERM stopped it after an iteration (its state is saved).
    """
    # 1. Setup: envs with one episode per sub-env per rollout, the policy, its frozen reference.
    device, envs, view, policy, generator, ranks = setup(cfg, policy)
    critic = critic_parameters(policy) if cfg.critic_warmup else None
    reference = frozen_reference(policy, cfg)
    kl_ctl = AdaptiveKLController(cfg.kl_coef, cfg.adaptive_kl_target, cfg.adaptive_kl_horizon) if cfg.adaptive_kl_target else None
    optimizer = Adam(policy.parameters(), lr=cfg.learning_rate, eps=1e-5)
    checkpointer, run, logger = start_run("ppo", cfg, policy, optimizer, generator, envs, ranks, out, progress, save_every,
                                          resume, reference)  # where the run stands: restored with resume
    kl_coef = run.extra.get("kl_coef", cfg.kl_coef)
    if kl_ctl is not None:
        kl_ctl.value = kl_coef
    score, step = compiled(cfg, policy)  # the policy's forward and cached step, compiled with cfg.compile
    with checkpointer.stop_on_signals(), logger, precision(cfg, device):
        while run.env_steps < cfg.total_steps:
            run.iteration += 1
            anneal(optimizer, cfg, run.env_steps)  # with cfg.anneal_lr: a step size that decays to 0
            # 2. Rollout: sample one episode per env with the KV cache.
            rollout = collect_batch(envs, view, policy, generator, ranks, cfg, run, step)
            mask = rollout.mask

            # 3. Rewards: the env's, minus the KL penalty to the reference at every step.
            kl = kl_to_reference(reference, rollout, cfg)
            rewards = rollout.rewards - kl_coef * kl

            # 4. Advantages: GAE on the rollout's values, whitened.
            advantages, returns = gae(rewards, rollout.values, mask, cfg.gamma, cfg.gae_lambda)
            if cfg.norm_adv:
                advantages = masked_whiten(advantages, mask)

            # 5. Update: epochs of minibatches of whole episodes, one forward pass each. During the
            #    critic warm-up only the value function learns: the other weights get no gradient.
            warmup = run.iteration <= cfg.critic_warmup
            policy.train()
            stats = UpdateStats()
            for _epoch in range(cfg.update_epochs):
                for idx in minibatches(envs.num_envs, cfg.num_minibatches, device):
                    mb, mb_mask = rollout.index(idx), mask[idx]
                    logprobs, entropy, values = evaluate_logprobs(score, mb, cfg.temperature)
                    pg_loss, clipfrac, approx_kl = ppo_policy_loss(logprobs, mb.logprobs, advantages[idx], mb_mask, cfg.clip_coef,
                                                                   cfg.loss_type)
                    v_loss = value_loss(values, mb.values, returns[idx], mb_mask, cfg.clip_coef if cfg.clip_vloss else None)
                    ent = masked_mean(entropy, mb_mask)
                    loss = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * ent if not warmup else v_loss
                    gradient_step(loss, policy, optimizer, ranks, cfg.max_grad_norm, only=critic if warmup else None)
                    stats.add(pg_loss=pg_loss, v_loss=v_loss, entropy=ent, approx_kl=approx_kl, clipfrac=clipfrac)
                if cfg.target_kl is not None and ranks.mean_of(stats.last("approx_kl")) > cfg.target_kl:
                    break

            # One check of every minibatch's losses (one device sync); a NaN stops the run before
            # anything is saved, so the last checkpoint on disk stays good.
            stats.check_finite(run.iteration, "pg_loss", "v_loss", "entropy")

            # 6. Adapt the KL coefficient, log, checkpoint.
            ref_kl = ranks.mean_of((kl * mask).sum(1).mean())  # the same on every rank
            if kl_ctl is not None:
                kl_coef = kl_ctl.update(ref_kl, cfg.num_envs)
            metrics = {
                **iteration_metrics(run, rollout, stats),
                "explained_variance": explained_variance(rollout.values, returns, mask),
                "ref_kl": ref_kl, "kl_coef": kl_coef,
                **env_metrics(envs),  # the env's own (mean guesses, exact match, ...), by the protocol
            }
            logger.log(ranks.mean(metrics))
            run.extra = {"kl_coef": kl_coef}
            checkpointer.end_of_iteration(run)
    return save_and_evaluate(cfg, policy, logger, checkpointer, run, device)
