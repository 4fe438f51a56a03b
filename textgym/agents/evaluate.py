"""Greedy evaluation of a policy on a textgym env, with the env's own metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from textgym.agents.rollout import Rollout, SequenceView, collect, make_envs


@dataclass
class TrainResult:
    """What a trainer returns: the trained policy, one metrics dict per iteration, a greedy evaluation."""

    policy: nn.Module
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
def _play(policy: nn.Module, env_id: str, env_kwargs: dict | None, episodes: int, device: str | torch.device,
          seed: int, sample: bool) -> tuple[Any, Rollout]:
    """One episode per sub-env of a fresh vector env: the envs (which hold the episodes' ends) and the rollout."""
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {episodes!r}")
    device = torch.device(device)
    envs = make_envs(env_id, episodes, device, **(env_kwargs or {}))
    view = SequenceView(envs)
    view.check(policy)
    was_training = policy.training
    policy.eval()
    generator = torch.Generator(device=device).manual_seed(seed) if sample else None
    rollout = collect(envs, view, policy.to(device), seed=seed, greedy=not sample, generator=generator)
    policy.train(was_training)
    return envs, rollout


def play_policy(policy: nn.Module, env_id: str, env_kwargs: dict | None = None, episodes: int = 256,
                device: str | torch.device = "cpu", seed: int = 12345,
                sample: bool = False) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Play ``episodes`` episodes at once: :func:`episode_metrics` and one :func:`trajectories` row each.

    Args:
        policy: the policy (its config must fit the env).
        env_id, env_kwargs: the env.
        episodes: how many (all played in parallel).
        device: where to run.
        seed: the envs' seed; the same seed gives the same examples to every policy compared.
        sample: sample at temperature 1 (from a generator seeded with ``seed``) instead of greedy.
    """
    envs, rollout = _play(policy, env_id, env_kwargs, episodes, device, seed, sample)
    return episode_metrics(envs, rollout), trajectories(envs, rollout, env_id, env_kwargs or {}, seed)


def evaluate_policy(policy: nn.Module, env_id: str, env_kwargs: dict | None = None, episodes: int = 256,
                    device: str | torch.device = "cpu", seed: int = 12345, sample: bool = False) -> dict[str, float]:
    """Play ``episodes`` episodes at once (greedy unless ``sample``) and return :func:`episode_metrics`;
    arguments as :func:`play_policy`, which also gives each episode's row."""
    return episode_metrics(*_play(policy, env_id, env_kwargs, episodes, device, seed, sample))


def trajectories(envs, rollout: Rollout, env_id: str, env_kwargs: dict, seed: int) -> list[dict[str, Any]]:
    """One row per episode, as ``textgym eval --save`` writes them and ``textgym train sft --data`` reads them.

    Each row holds where the episode was played (``env_id``, ``env_kwargs``, ``seed``, ``num_envs``,
    ``index``: sub-env ``index`` of a vector env reset with ``seed`` replays it), its ``actions``,
    ``return``, ``success`` and ``length``, and its text: ``prompt``, ``completion`` and
    ``references`` for token envs, or the whole ``transcript`` where the env has a tokenizer.
    """
    texts = envs.episode_texts() if hasattr(envs, "episode_texts") else None
    tokenizer = getattr(envs, "tokenizer", None)
    lengths = rollout.lengths.tolist()
    rows = []
    for i, (actions, ret, won) in enumerate(zip(rollout.actions.tolist(), rollout.returns.tolist(), rollout.success.tolist())):
        row: dict[str, Any] = {"env_id": env_id, "env_kwargs": env_kwargs, "seed": seed, "num_envs": envs.num_envs,
                               "index": i, "return": ret, "success": bool(won), "length": lengths[i],
                               "actions": actions[: lengths[i]]}
        if texts is not None:
            example, completion = texts[i]
            row.update(prompt=example.prompt, completion=completion, references=list(example.references))
        elif tokenizer is not None:
            row["transcript"] = tokenizer.decode(rollout.inputs[i].tolist())
        rows.append(row)
    return rows
