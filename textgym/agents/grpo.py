"""Group Relative Policy Optimization (GRPO) on textgym envs, in one loop that reads top to bottom.

GRPO (Shao et al., "DeepSeekMath", 2024) is PPO without a critic: it samples ``k`` episodes of the
same prompt, and each episode's advantage is its return against the others of its group,
``(R - mean(R_group)) / std(R_group)``, for every step it took. The policy then takes several
clipped steps on the batch, as PPO does, with a KL penalty to a frozen reference in the loss
(the k3 estimator by default).

What the envs add, and what keeps it exploring:

* **Per-token advantages** (``advantage="per_token"``, the default where the env pays rewards
  per step): each step's return-to-go against its group's at the same step, so a shaped reward
  reaches the token that earned it. With rewards only at the end it is the episode form.
* **An entropy bonus** (``ent_coef``), as PPO's: once a group's samples agree, nothing else
  keeps the policy from collapsing onto one answer.
* **Groups whose samples all score the same** carry no signal (their advantages are 0):
  ``zero_variance="skip"`` (the default) leaves them out of the policy loss, as DAPO's dynamic
  sampling leaves them out of the batch; ``"keep"`` averages their zeros in, as the paper does.

Dr. GRPO (Liu et al., "Understanding R1-Zero-Like Training", 2025) is the option
``scale_rewards=False, loss_type="dr_grpo"``: no division by the group's std, and a loss summed
over tokens with a constant normaliser, which removes GRPO's biases toward easy or hard prompts
and toward long wrong answers.

Usage::

    from textgym.agents import grpo
    result = grpo.train(grpo.GRPOConfig(env_id="textgym/Reverse-v0", env_kwargs={"shaping": True}))
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
    precision,
    reference_logprobs,
    setup,
    update_minibatches,
)
from textgym.agents.configs import KLConfig, TrainConfig
from textgym.agents.evaluate import TrainResult
from textgym.agents.losses import (
    LOSS_TYPES,
    group_advantages,
    group_token_advantages,
    grpo_policy_loss,
    informative_groups,
    kl_penalty,
    masked_mean,
    returns_to_go,
    sequence_loss,
)
from textgym.agents.optim import Adam
from textgym.agents.rollout import evaluate_logprobs
from textgym.agents.run import env_metrics, iteration_metrics, save_and_evaluate, start_run
from textgym.config import NON_NEGATIVE, POSITIVE, POSITIVE_INT, Check


@dataclass(frozen=True)
class GRPOConfig(TrainConfig, KLConfig):
    """GRPO's hyperparameters (and, from :class:`TrainConfig`, the env, budget, device and model;
    from :class:`KLConfig`, the KL penalty to the reference)."""

    group_size: int = 8
    """Samples of each prompt; ``num_envs`` must be a multiple of it."""
    update_epochs: int = 2
    """Passes over each batch."""
    num_minibatches: int = 4
    """Minibatches per pass (of whole episodes)."""
    group_minibatches: bool = False
    """Keep each group in one minibatch (``num_minibatches`` must divide the number of groups).
    A policy that computes a repeated prompt once (Hugging Face policies: ``forward(...,
    prefix=)``) then reads each group's prompt once per minibatch, not once per sample: with a
    chat template's long prompt and short answers, most of the update's compute."""
    clip_coef: float = 0.2
    """The ratio clip of the surrogate."""
    scale_rewards: bool = True
    """Divide by the group's std (GRPO); False is Dr. GRPO's."""
    loss_type: str = "grpo"
    """``"grpo"`` (mean per episode, then over episodes), ``"dr_grpo"`` (token sum / constant) or
    ``"token_mean"`` (the mean over the minibatch's steps, TRL's ``"bnpo"``)."""
    kl_estimator: str = "k3"
    """GRPO's in-loss estimator: ``"k3"`` (unbiased, never negative) or ``"k1"``."""
    advantage: str = "auto"
    """``"per_token"`` (each step's return-to-go against its group's), ``"episode"`` (the episode's
    return for every step, as the paper's outcome supervision), or ``"auto"``: per-token where the
    env pays rewards per step (``envs.per_step_rewards``), else the episode form."""
    zero_variance: str = "skip"
    """Groups whose samples all score the same: ``"skip"`` (out of the policy loss) or ``"keep"``."""
    ent_coef: float = 0.01
    """Weight of the entropy bonus (0 is the paper's GRPO, which has none)."""
    temperature: float = 1.0
    """Sampling temperature of the rollouts."""

    RULES: ClassVar[dict[str, Check]] = {
        "group_size": Check(int, 2), "update_epochs": POSITIVE_INT, "num_minibatches": POSITIVE_INT,
        "group_minibatches": Check(bool),
        "clip_coef": POSITIVE, "scale_rewards": Check(bool), "loss_type": Check(str, choices=LOSS_TYPES),
        "advantage": Check(str, choices=("auto", "per_token", "episode")),
        "zero_variance": Check(str, choices=("skip", "keep")), "ent_coef": NON_NEGATIVE, "temperature": POSITIVE,
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_envs % self.group_size:
            raise ValueError(f"group_size={self.group_size} must divide num_envs={self.num_envs} "
                             "(every prompt is sampled group_size times)")
        if not self.num_minibatches <= self.num_envs:
            raise ValueError(f"num_minibatches must be between 1 and num_envs={self.num_envs}, got {self.num_minibatches}")
        if self.group_minibatches:
            self.check_group_minibatches(self.num_minibatches, self.group_size, "group_size")


def advantage_form(cfg: GRPOConfig, envs) -> bool:
    """Whether ``cfg`` credits each step with its own advantage on ``envs`` (see ``GRPOConfig.advantage``).

    Raises:
        ValueError: ``advantage="per_token"`` asked for on an env that pays only at the end.
    """
    paid_per_step = bool(getattr(envs, "per_step_rewards", True))
    if cfg.advantage == "per_token" and not paid_per_step:
        raise ValueError(f"advantage='per_token' needs rewards paid per step, but {cfg.env_id} with {cfg.env_kwargs} pays "
                         "only at the end of an episode: use advantage='episode' or 'auto', or an env with per-step "
                         "rewards (token envs: env_kwargs shaping=true)")
    return cfg.advantage == "per_token" or (cfg.advantage == "auto" and paid_per_step)


def train(cfg: GRPOConfig, policy: nn.Module | None = None, out: str | Path | None = None, progress: bool = True,
          save_every: int = 10, resume: bool = False) -> TrainResult:
    """Train ``policy`` (a new one when None) with GRPO; arguments as :func:`textgym.agents.ppo.train`.

    ``policy``, when given, is also the KL reference.
    """
    # 1. Setup: sub-envs in groups of k that play the same prompts, the policy, its frozen reference.
    device, envs, view, policy, generator, ranks = setup(cfg, policy)
    per_token = advantage_form(cfg, envs)
    reference = frozen_reference(policy, cfg)
    optimizer = Adam(policy.parameters(), lr=cfg.learning_rate, eps=1e-5)
    checkpointer, run, logger = start_run("grpo", cfg, policy, optimizer, generator, envs, ranks, out, progress, save_every,
                                          resume, reference)  # where the run stands: restored with resume
    score, step = compiled(cfg, policy)  # the policy's forward and cached step, compiled with cfg.compile
    with checkpointer.stop_on_signals(), logger, precision(cfg, device):
        while run.env_steps < cfg.total_steps:
            run.iteration += 1
            anneal(optimizer, cfg, run.env_steps)  # with cfg.anneal_lr: a step size that decays to 0
            # 2. Rollout: k samples of each prompt, with the KV cache.
            rollout = collect_batch(envs, view, policy, generator, ranks, cfg, run, step,
                                    reset_options={"group_size": cfg.group_size})
            mask = rollout.mask

            # 3. Advantages: each step's return-to-go against its group's at the same step (or the
            #    episode's return against its group's, for every step). Groups whose samples all
            #    scored the same have none, and with "skip" leave the policy loss.
            if per_token:
                advantages = group_token_advantages(returns_to_go(rollout.rewards, mask, 1.0), mask, cfg.group_size,
                                                    cfg.scale_rewards)  # (B, T)
            else:
                advantages = group_advantages(rollout.returns, cfg.group_size, cfg.scale_rewards)  # (B,)
            informative = informative_groups(rollout.returns, cfg.group_size)  # (B,)
            pg_mask = mask & informative[:, None] if cfg.zero_variance == "skip" else mask
            ref_logprobs = reference_logprobs(reference, rollout, cfg.temperature) if reference is not None else None

            # 4. Update: epochs of minibatches of whole episodes (of whole groups, with
            #    group_minibatches), the clipped surrogate plus the KL.
            policy.train()
            stats = UpdateStats()
            for idx, mb, mb_mask in update_minibatches(rollout, mask, cfg, device,
                                                       cfg.group_size if cfg.group_minibatches else 1):
                logprobs, entropy, _ = evaluate_logprobs(score, mb, cfg.temperature)
                pg_loss, clipfrac, approx_kl = grpo_policy_loss(logprobs, mb.logprobs, advantages[idx], pg_mask[idx],
                                                                cfg.clip_coef, cfg.loss_type)
                kl = torch.zeros((), device=device)
                if ref_logprobs is not None:  # the estimator of KL(policy ‖ reference) on the sampled actions
                    kl = sequence_loss(kl_penalty(logprobs, ref_logprobs[idx], cfg.kl_estimator), mb_mask, cfg.loss_type)
                ent = masked_mean(entropy, mb_mask)
                loss = pg_loss + cfg.kl_coef * kl - cfg.ent_coef * ent
                gradient_step(loss, policy, optimizer, ranks, cfg.max_grad_norm)
                stats.add(pg_loss=pg_loss, kl=kl, entropy=ent, approx_kl=approx_kl, clipfrac=clipfrac)

            stats.check_finite(run.iteration, "pg_loss", "kl", "entropy")  # one sync

            # 5. Log and checkpoint.
            logger.log(ranks.mean({
                **iteration_metrics(run, rollout, stats),
                "informative_groups": float(informative.float().mean()),
                **env_metrics(envs),
            }))
            checkpointer.end_of_iteration(run)
    return save_and_evaluate(cfg, policy, logger, checkpointer, run, device)
