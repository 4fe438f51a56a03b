"""Greedy evaluation of a policy on a textgym env, with the env's own metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from textgym.agents.model import Policy
from textgym.agents.rollout import Rollout, SequenceView, collect, make_envs


@dataclass
class TrainResult:
    """What a trainer returns: the trained policy, one metrics dict per iteration, a greedy evaluation."""

    policy: Policy
    history: list[dict[str, Any]] = field(default_factory=list)
    eval: dict[str, float] = field(default_factory=dict)


def episode_metrics(envs, rollout: Rollout) -> dict[str, float]:
    """Mean return, success rate, mean episode length, and the env's own metrics.

    The env's own come from ``envs.episode_metrics()`` (the env -> trainer protocol): guessing
    games add ``mean_guesses``; token envs add ``exact_match`` and ``f1`` of the completions
    against the references and the task's own metrics (Review-v0: ``grammatical`` and
    ``positive_words``); multi-turn games add their turns and what their text env reports.
    """
    return {
        "episodes": float(envs.num_envs),
        "mean_return": float(rollout.returns.mean()),
        "success_rate": float(rollout.success.float().mean()),
        "mean_length": float(rollout.lengths.float().mean()),
        **envs.episode_metrics(),
    }


@torch.no_grad()
def evaluate_policy(policy: Policy, env_id: str, env_kwargs: dict | None = None, episodes: int = 256,
                    device: str | torch.device = "cpu", seed: int = 12345) -> dict[str, float]:
    """Play ``episodes`` greedy episodes at once and return :func:`episode_metrics`.

    Args:
        policy: the policy (its config must fit the env).
        env_id, env_kwargs: the env.
        episodes: how many (all played in parallel).
        device: where to run.
        seed: the envs' seed; the same seed gives the same examples to every policy compared.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {episodes}")
    envs = make_envs(env_id, episodes, torch.device(device), **(env_kwargs or {}))
    view = SequenceView(envs)
    view.check(policy.cfg)
    was_training = policy.training
    policy.eval()
    rollout = collect(envs, view, policy.to(device), seed=seed, greedy=True)
    policy.train(was_training)
    return episode_metrics(envs, rollout)
