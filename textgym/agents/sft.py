"""Supervised fine-tuning: teacher forcing on the expert's actions, with cross-entropy.

The expert is the env's scripted player (:func:`textgym.agents.scripted.vector_expert`): for
token tasks it writes the first reference then eos, so SFT is teacher forcing on the task's
references; for the guessing games it plays binary search, so SFT is behaviour cloning. Every
iteration plays a fresh batch of demonstrations in the vector env (cheap, and never the same
examples twice), and the policy learns ``-log π(a_expert | prefix)`` at every step.

The same policy object then trains with PPO or REINFORCE (SFT-then-RL)::

    from textgym.agents import ppo, sft
    result = sft.train(sft.SFTConfig(env_id="textgym/Reverse-v0", total_steps=100_000))
    result = ppo.train(ppo.PPOConfig(env_id="textgym/Reverse-v0", kl_coef=0.05), policy=result.policy)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from textgym.agents.common import RunLogger, TrainConfig, check_finite, finish, setup
from textgym.agents.evaluate import TrainResult, evaluate_policy
from textgym.agents.losses import masked_mean
from textgym.agents.model import Policy
from textgym.agents.rollout import collect, evaluate_logprobs
from textgym.agents.scripted import vector_expert
from textgym.config import POSITIVE_INT, Check


@dataclass(frozen=True)
class SFTConfig(TrainConfig):
    """SFT's hyperparameters (and, from :class:`TrainConfig`, the env, budget, device and model).

    ``total_steps`` counts demonstration steps (tokens written by the expert).
    """

    learning_rate: float = 1e-3
    """Adam's step size."""
    eval_every: int = 10
    """Iterations between greedy evaluations of the policy (logged as ``mean_return``)."""

    RULES: ClassVar[dict[str, Check]] = {"eval_every": POSITIVE_INT}


def train(cfg: SFTConfig, policy: Policy | None = None, out: str | Path | None = None, progress: bool = True,
          save_every: int = 10) -> TrainResult:
    """Train ``policy`` (a new one when None) on the expert's demonstrations; arguments as :func:`textgym.agents.ppo.train`."""
    # 1. Setup: the envs and their expert.
    device, envs, view, policy, _ = setup(cfg, policy)
    expert = vector_expert(envs)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.learning_rate, weight_decay=0.01)
    logger = RunLogger(out, cfg.total_steps, "sft", progress)
    env_steps, iteration, start, evaluation = 0, 0, time.time(), {}
    try:
        while env_steps < cfg.total_steps:
            iteration += 1
            # 2. Demonstrations: the expert plays one episode per env.
            demos = collect(envs, view, expert=expert, seed=cfg.seed if iteration == 1 else None)
            mask = demos.mask
            env_steps += int(mask.sum())

            # 3. Cross-entropy on the expert's actions, one forward pass per episode.
            policy.train()
            logprobs, _, _ = evaluate_logprobs(policy, demos)
            loss = -masked_mean(logprobs, mask)
            check_finite(iteration, loss=loss)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
            optimizer.step()

            # 4. Evaluate greedily now and then, log, checkpoint.
            if iteration == 1 or iteration % cfg.eval_every == 0 or env_steps >= cfg.total_steps:
                evaluation = evaluate_policy(policy, cfg.env_id, cfg.env_kwargs, min(cfg.num_envs, cfg.eval_episodes), device, seed=cfg.seed + 1)
            logger.log({
                "iteration": iteration, "env_steps": env_steps, "time": time.time() - start, "loss": loss.item(),
                "mean_return": evaluation["mean_return"], "success_rate": evaluation["success_rate"],
            })
            if out is not None and iteration % save_every == 0:
                policy.save(out)
    finally:
        logger.close()
    return finish(cfg, policy, logger, out, device)
