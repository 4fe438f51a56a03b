"""REINFORCE (Williams, 1992) with a baseline, on textgym envs.

The gradient of ``E[G]`` is ``E[Σ_t ∇ log π(a_t | s_t) (G_t - b_t)]``: every action is pushed up
or down by how much better its return-to-go ``G_t`` was than a baseline ``b_t``. Three baselines:

* ``"moving_average"``: an exponential moving average of past returns-to-go, per step index;
* ``"value"``: the policy's value head, trained by regression on ``G_t``;
* ``"rloo"``: leave-one-out over ``k`` samples of the same prompt (Kool et al., 2019; Ahmadian et
  al., 2024): each sample's baseline is the mean return-to-go of the other ``k - 1`` at the same step.

The update, as TRL's RLOO runs it: the advantages are whitened over the batch, and the policy
takes ``update_epochs`` passes of ``num_minibatches`` steps on PPO's clipped surrogate, so each
batch of samples buys several optimizer steps. ``update_epochs=1, num_minibatches=1,
norm_adv=False`` is the plain REINFORCE of the textbook: one gradient step per batch, whose
ratio is exactly 1, so the clipped surrogate's gradient is ``-Σ ∇ log π(a|s) (G_t - b_t)``.

Usage::

    from textgym.agents import reinforce
    result = reinforce.train(reinforce.ReinforceConfig(env_id="textgym/GuessNumber-v0"))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from textgym.agents.common import (
    UpdateStats,
    anneal,
    collect_batch,
    compiled,
    frozen_reference,
    gradient_step,
    kl_to_reference,
    precision,
    setup,
    update_minibatches,
)
from textgym.agents.configs import KLConfig, TrainConfig
from textgym.agents.evaluate import TrainResult
from textgym.agents.losses import (
    LOSS_TYPES,
    masked_mean,
    masked_whiten,
    ppo_policy_loss,
    returns_to_go,
    rloo_baseline,
)
from textgym.agents.optim import Adam
from textgym.agents.rollout import evaluate_logprobs
from textgym.agents.run import env_metrics, iteration_metrics, save_and_evaluate, start_run
from textgym.config import FRACTION, NON_NEGATIVE, POSITIVE, POSITIVE_INT, Check

BASELINES = ("moving_average", "value", "rloo")


@dataclass(frozen=True)
class ReinforceConfig(TrainConfig, KLConfig):
    """REINFORCE's hyperparameters (and, from :class:`TrainConfig`, the env, budget, device and model)."""

    gamma: float = 1.0
    """Discount of the return-to-go."""
    baseline: str = "rloo"
    """``"moving_average"``, ``"value"`` or ``"rloo"``."""
    rloo_k: int = 4
    """Samples per prompt for ``"rloo"`` (``num_envs`` must be a multiple)."""
    baseline_decay: float = 0.9
    """Decay of the moving average baseline."""
    vf_coef: float = 0.5
    """Weight of the value regression, for the ``"value"`` baseline."""
    ent_coef: float = 0.01
    """Weight of the entropy bonus."""
    temperature: float = 1.0
    """Sampling temperature of the rollouts."""
    update_epochs: int = 4
    """Passes over each batch (1, with one minibatch: plain REINFORCE)."""
    num_minibatches: int = 4
    """Optimizer steps per pass, each on a minibatch of whole episodes; must divide ``num_envs``.
    The baselines are computed on the whole batch first, so a minibatch may split a group."""
    group_minibatches: bool = False
    """With ``"rloo"``: keep each group of ``rloo_k`` in one minibatch (``num_minibatches`` must
    divide the number of groups), so a policy that computes a repeated prompt once (Hugging Face
    policies) reads each group's prompt once per minibatch, as GRPO's option of the same name."""
    clip_coef: float = 0.2
    """The ratio clip of the surrogate after the first step on a batch."""
    norm_adv: bool = True
    """Whiten the advantages over the batch."""
    loss_type: str = "token_mean"
    """How the surrogate's per-step terms become one loss: ``"token_mean"`` (the mean over the
    minibatch's steps, as PPO), ``"dr_grpo"`` (their sum over a constant, Liu et al., 2025: with
    ``norm_adv=False`` the update of GRPO's Dr. GRPO form, whose advantages RLOO's equal times
    ``k / (k - 1)``) or ``"grpo"`` (the mean per episode, then over episodes)."""

    RULES: ClassVar[dict[str, Check]] = {
        "gamma": FRACTION, "rloo_k": Check(int, 2), "baseline_decay": Check(float, 0, 1, high_open=True),
        "vf_coef": NON_NEGATIVE, "ent_coef": NON_NEGATIVE, "temperature": POSITIVE,
        "update_epochs": POSITIVE_INT, "num_minibatches": POSITIVE_INT, "clip_coef": POSITIVE, "norm_adv": Check(bool),
        "group_minibatches": Check(bool), "loss_type": Check(str, choices=LOSS_TYPES),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.baseline not in BASELINES:
            raise ValueError(f"unknown baseline {self.baseline!r}: expected one of {list(BASELINES)}")
        if self.baseline == "rloo" and (self.rloo_k < 2 or self.num_envs % self.rloo_k):
            raise ValueError(f"rloo needs rloo_k >= 2 dividing num_envs={self.num_envs}, got rloo_k={self.rloo_k}")
        self.check_minibatches(self.num_minibatches)
        if self.group_minibatches:
            if self.baseline != "rloo":
                raise ValueError(f"group_minibatches=True keeps RLOO's groups whole: it needs baseline='rloo', got {self.baseline!r}")
            self.check_group_minibatches(self.num_minibatches, self.rloo_k, "rloo_k")


def train(cfg: ReinforceConfig, policy: nn.Module | None = None, out: str | Path | None = None, progress: bool = True,
          save_every: int = 10, resume: bool = False) -> TrainResult:
    """Train ``policy`` (a new one when None) with REINFORCE; arguments as :func:`textgym.agents.ppo.train`."""
    # 1. Setup. With RLOO, sub-envs come in groups of k that play the same examples.
    device, envs, view, policy, generator, ranks = setup(cfg, policy)
    reference = frozen_reference(policy, cfg)  # the KL penalty's, when kl_coef > 0 (SFT-then-RL)
    optimizer = Adam(policy.parameters(), lr=cfg.learning_rate)
    reset_options = {"group_size": cfg.rloo_k} if cfg.baseline == "rloo" else None
    checkpointer, run, logger = start_run("reinforce", cfg, policy, optimizer, generator, envs, ranks, out, progress,
                                          save_every, resume, reference)  # where the run stands: restored with resume
    moving = run.extra.get("moving")  # (T,) moving average of the return-to-go at each step index
    score, step = compiled(cfg, policy)  # the policy's forward and cached step, compiled with cfg.compile
    with checkpointer.stop_on_signals(), logger, precision(cfg, device):
        while run.env_steps < cfg.total_steps:
            run.iteration += 1
            anneal(optimizer, cfg, run.env_steps)  # with cfg.anneal_lr: a step size that decays to 0
            # 2. Rollout: one episode per env, sampled with the KV cache.
            rollout = collect_batch(envs, view, policy, generator, ranks, cfg, run, step, reset_options)
            mask = rollout.mask

            # 3. Returns-to-go of the rewards less the KL penalty, and the baseline.
            kl = kl_to_reference(reference, rollout, cfg)
            returns = returns_to_go(rollout.rewards - cfg.kl_coef * kl, mask, cfg.gamma)  # (B, T)
            if cfg.baseline == "rloo":
                baseline = rloo_baseline(returns, cfg.rloo_k)
            elif cfg.baseline == "moving_average":
                batch_mean = (returns * mask).sum(0) / mask.sum(0).clamp(min=1)  # (T,)
                moving = batch_mean if moving is None else cfg.baseline_decay * moving + (1 - cfg.baseline_decay) * batch_mean
                baseline = moving.expand_as(returns)
            else:
                baseline = rollout.values
            advantages = (returns - baseline) * mask
            if cfg.norm_adv:
                advantages = masked_whiten(advantages, mask)

            # 4. Update: epochs of minibatches of whole episodes, -Σ log π(a|s) * advantage as
            #    PPO's clipped surrogate (the same gradient on the first step, when the ratio is 1).
            policy.train()
            stats = UpdateStats()
            for idx, mb, mb_mask in update_minibatches(rollout, mask, cfg, device,
                                                       cfg.rloo_k if cfg.group_minibatches else 1):
                logprobs, entropy, values = evaluate_logprobs(score, mb, cfg.temperature)
                pg_loss, clipfrac, approx_kl = ppo_policy_loss(logprobs, mb.logprobs, advantages[idx], mb_mask, cfg.clip_coef,
                                                               cfg.loss_type)
                ent = masked_mean(entropy, mb_mask)
                v_loss = (0.5 * masked_mean((values - returns[idx]) ** 2, mb_mask) if cfg.baseline == "value"
                          else torch.zeros((), device=device))
                loss = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * ent
                gradient_step(loss, policy, optimizer, ranks, cfg.max_grad_norm)
                stats.add(pg_loss=pg_loss, v_loss=v_loss, entropy=ent, approx_kl=approx_kl, clipfrac=clipfrac)
            stats.check_finite(run.iteration, "pg_loss", "v_loss", "entropy")  # one sync

            # 5. Log and checkpoint.
            logger.log(ranks.mean({
                **iteration_metrics(run, rollout, stats),
                "ref_kl": float(kl.sum(1).mean()),
                **env_metrics(envs),  # the env's own (mean guesses, exact match, ...), by the protocol
            }))
            run.extra = {"moving": moving}
            checkpointer.end_of_iteration(run)
    return save_and_evaluate(cfg, policy, logger, checkpointer, run, device)
