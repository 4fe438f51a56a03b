"""Greedy evaluation of a policy on a textgym env, with the env's own metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from textgym.agents.model import Policy
from textgym.agents.rollout import Rollout, SequenceView, collect, make_envs
from textgym.envs.core import TorchVectorEnv
from textgym.envs.token_generation import TokenGenerationVectorEnv
from textgym.rewards.metrics import exact_match_score, f1_score


@dataclass
class TrainResult:
    """What a trainer returns: the trained policy, one metrics dict per iteration, a greedy evaluation."""

    policy: Policy
    history: list[dict[str, Any]] = field(default_factory=list)
    eval: dict[str, float] = field(default_factory=dict)


def completions(envs: TokenGenerationVectorEnv, rollout: Rollout) -> list[str]:
    """The text each episode wrote (up to its eos), from the rollout's final sequences."""
    prompt_len = rollout.positions[:, 0] + 1
    written = rollout.lengths - (rollout.actions.gather(1, (rollout.lengths - 1)[:, None]).squeeze(1) == envs.tokenizer.eos_id).long()
    out = []
    for ids, start, n in zip(rollout.inputs.tolist(), prompt_len.tolist(), written.tolist()):
        out.append(envs.tokenizer.decode(ids[start : start + n]))
    return out


def episode_metrics(envs: TorchVectorEnv, rollout: Rollout) -> dict[str, float]:
    """Mean return, success rate, mean episode length, and the env's own metrics.

    Guessing games add ``mean_guesses`` (over all games); token envs add ``exact_match`` and ``f1``
    of the completions against the references, and the task's own :meth:`~textgym.tasks.Task.text_metrics`
    (the review task: ``grammatical`` and ``positive_words``).
    """
    metrics = {
        "episodes": float(envs.num_envs),
        "mean_return": float(rollout.returns.mean()),
        "success_rate": float(rollout.success.float().mean()),
        "mean_length": float(rollout.lengths.float().mean()),
    }
    if hasattr(envs, "max_guesses"):
        metrics["mean_guesses"] = float(rollout.guesses.float().mean())
    if isinstance(envs, TokenGenerationVectorEnv):
        examples = [envs.setup.task.example(k) for k in envs.keys.tolist()]
        refs = [ex.references for ex in examples]
        texts = completions(envs, rollout)
        metrics["exact_match"] = sum(exact_match_score(c, r) for c, r in zip(texts, refs)) / len(texts)
        metrics["f1"] = sum(f1_score(c, r) for c, r in zip(texts, refs)) / len(texts)
        metrics.update(envs.setup.task.text_metrics([ex.prompt for ex in examples], texts))
    return metrics


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
