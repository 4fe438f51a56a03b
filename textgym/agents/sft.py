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

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from textgym.agents.common import (
    anneal,
    check_finite,
    compiled,
    gradient_step,
    precision,
    setup,
    update_minibatches,
)
from textgym.agents.configs import TrainConfig
from textgym.agents.evaluate import TrainResult, evaluate_policy
from textgym.agents.losses import masked_mean
from textgym.agents.optim import Adam
from textgym.agents.rollout import SequenceView, collect, evaluate_logprobs, make_envs
from textgym.agents.run import save_and_evaluate, start_run
from textgym.agents.scripted import vector_expert
from textgym.config import POSITIVE_INT, Check
from textgym.tasks import iter_jsonl


@dataclass(frozen=True)
class SFTConfig(TrainConfig):
    """SFT's hyperparameters (and, from :class:`TrainConfig`, the env, budget, device and model).

    ``total_steps`` counts demonstration steps (tokens written by the expert).
    """

    learning_rate: float = 1e-3
    """Adam's step size."""
    eval_every: int = 10
    """Iterations between greedy evaluations of the policy (logged as ``mean_return``)."""
    update_epochs: int = 1
    """Passes over each batch of demonstrations."""
    num_minibatches: int = 1
    """Optimizer steps per pass, each on a minibatch of whole episodes; must divide ``num_envs``.
    A batch then buys ``update_epochs * num_minibatches`` steps: an expert that is a large lookup
    tree (Mastermind's) needs many more steps than its demonstrations cost to play."""

    RULES: ClassVar[dict[str, Check]] = {"eval_every": POSITIVE_INT, "update_epochs": POSITIVE_INT,
                                         "num_minibatches": POSITIVE_INT}

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_minibatches(self.num_minibatches)


@dataclass
class Replay:
    """Recorded episodes to imitate: a vector env reset with ``seed`` replays them, sub-env by sub-env."""

    envs: object
    seed: int
    actions: torch.Tensor  # (B, T) the recorded actions, padded
    keep: torch.Tensor  # (B,) the episodes to learn from (recorded, and with return >= min_return)
    lengths: torch.Tensor  # (B,) their recorded lengths

    def expert(self) -> Callable[[object], torch.Tensor]:
        """``obs -> actions``: the recorded action of every sub-env at each step, in turn."""
        step = iter(range(self.actions.shape[1] + 1))
        return lambda obs: self.actions[:, min(next(step), self.actions.shape[1] - 1)]


REPLAY_WINDOW = 4096
"""The most sub-envs a replayed batch has, whatever ``num_envs`` the recorded rows name."""


def replays(rows: list[dict], cfg: SFTConfig, device: torch.device, min_return: float | None = None) -> list[Replay]:
    """The episodes of ``textgym eval --save`` rows as :class:`Replay` batches, one per seed.

    Raises:
        ValueError: rows of another env than ``cfg``'s, or no episode with ``return >= min_return``.
    """
    groups: dict[tuple[int, int], list[dict]] = {}
    for row in rows:
        if (row["env_id"], row["env_kwargs"]) != (cfg.env_id, cfg.env_kwargs):
            raise ValueError(f"the data was played on {row['env_id']} with {row['env_kwargs']}, but SFT trains on "
                             f"{cfg.env_id} with {cfg.env_kwargs}: pass the same --env and --env-kwargs")
        # sub-env i of a vector env reset with seed plays the episode of stream seed + i, whatever
        # the vector env's size: rows are replayed in windows of at most REPLAY_WINDOW sub-envs
        lo = row["index"] - row["index"] % REPLAY_WINDOW
        groups.setdefault((row["seed"] + lo, min(REPLAY_WINDOW, row["num_envs"] - lo)), []).append({**row, "index": row["index"] - lo})
    out = []
    for (seed, num_envs), group in groups.items():
        T = max(len(r["actions"]) for r in group)
        actions = torch.zeros(num_envs, T, dtype=torch.int64)
        keep = torch.zeros(num_envs, dtype=torch.bool)
        lengths = torch.zeros(num_envs, dtype=torch.int64)
        for r in group:
            actions[r["index"], : len(r["actions"])] = torch.tensor(r["actions"], dtype=torch.int64)
            keep[r["index"]] = min_return is None or r["return"] >= min_return
            lengths[r["index"]] = len(r["actions"])
        envs = make_envs(cfg.env_id, num_envs, device, **cfg.env_kwargs)
        out.append(Replay(envs, seed, actions.to(device), keep.to(device), lengths.to(device)))
    if not any(bool(r.keep.any()) for r in out):
        raise ValueError(f"no episode in the data has a return >= {min_return}")
    return out


def train(cfg: SFTConfig, policy: nn.Module | None = None, out: str | Path | None = None, progress: bool = True,
          save_every: int = 10, data: list[dict] | None = None, min_return: float | None = None,
          resume: bool = False) -> TrainResult:
    """Train ``policy`` (a new one when None) on the expert's demonstrations; arguments as :func:`textgym.agents.ppo.train`.

    With ``data`` (rows of ``textgym eval --save``), the demonstrations are those recorded
    episodes instead, replayed in the env, and only those with ``return >= min_return``: sample,
    keep the good ones, SFT, repeat is rejection sampling (expert iteration).
    """
    # 1. Setup: the envs and their expert, or the recorded episodes to replay.
    device, envs, view, policy, generator, ranks = setup(cfg, policy)
    sources = replays(data, cfg, device, min_return) if data is not None else None
    expert = vector_expert(envs) if sources is None else None
    optimizer = Adam(policy.parameters(), lr=cfg.learning_rate, weight_decay=0.01, decoupled_weight_decay=True)
    checkpointer, run, logger = start_run("sft", cfg, policy, optimizer, generator, envs, ranks, out, progress, save_every,
                                          resume)  # where the run stands: restored with resume
    evaluation = run.extra.get("evaluation", {})
    score, _ = compiled(cfg, policy)  # the policy's forward, compiled with cfg.compile
    with checkpointer.stop_on_signals(), logger, precision(cfg, device):
        while run.env_steps < cfg.total_steps:
            run.iteration += 1
            anneal(optimizer, cfg, run.env_steps)  # with cfg.anneal_lr: a step size that decays to 0
            # 2. Demonstrations: the expert plays one episode per env, or a recorded batch is replayed.
            if sources is None:
                demos = collect(envs, view, expert=expert, seed=ranks.env_seed(cfg.seed, cfg.num_envs) if run.iteration == 1 else None)
                mask = demos.mask
            else:
                replay = sources[(run.iteration - 1) % len(sources)]
                demos = collect(replay.envs, SequenceView(replay.envs), expert=replay.expert(), seed=replay.seed)
                if run.iteration <= len(sources) and not bool((demos.lengths == replay.lengths)[replay.keep].all()):
                    raise ValueError("the recorded episodes do not replay in this env (another env version, "
                                     "arguments or textgym version?)")
                mask = demos.mask & replay.keep[:, None]
            run.env_steps += ranks.sum(int(mask.sum()))  # over every rank
            demos = demos.trimmed()  # the update scores only the positions actions were read from

            # 3. Cross-entropy on the expert's actions, one forward pass per episode, in epochs
            #    of minibatches.
            policy.train()
            losses = []
            for _idx, mb, mb_mask in update_minibatches(demos, mask, cfg, device):
                logprobs, _, _ = evaluate_logprobs(score, mb)
                loss = -masked_mean(logprobs, mb_mask)
                gradient_step(loss, policy, optimizer, ranks, cfg.max_grad_norm)
                losses.append(loss.detach())
            loss = torch.stack(losses).mean()
            check_finite(run.iteration, loss=loss)

            # 4. Evaluate greedily now and then, log, checkpoint.
            if run.iteration == 1 or run.iteration % cfg.eval_every == 0 or run.env_steps >= cfg.total_steps:
                evaluation = evaluate_policy(policy, cfg.env_id, cfg.env_kwargs, min(cfg.num_envs, cfg.eval_episodes), device, seed=cfg.seed + 1)
            logger.log(ranks.mean({
                "iteration": run.iteration, "env_steps": run.env_steps, "time": run.seconds(), "loss": loss.item(),
                "mean_return": evaluation["mean_return"], "success_rate": evaluation["success_rate"],
            }))
            run.extra = {"evaluation": evaluation}
            checkpointer.end_of_iteration(run)
    return save_and_evaluate(cfg, policy, logger, checkpointer, run, device)


def load_trajectories(path: str | Path) -> list[dict]:
    """Rows written by ``textgym eval --save``.

    Raises:
        ValueError: a line that is not a trajectory (the message names the file, the line and what is missing).
    """
    need = ("env_id", "env_kwargs", "seed", "num_envs", "index", "actions", "return")
    rows = []
    for _, where, row in iter_jsonl(path):
        if not isinstance(row, dict) or any(k not in row for k in need):
            missing = [k for k in need if not isinstance(row, dict) or k not in row]
            raise ValueError(f"{where}: not a trajectory of textgym eval --save: it lacks {missing}")
        ok = (isinstance(row["actions"], list) and all(isinstance(a, int) and not isinstance(a, bool) for a in row["actions"])
              and isinstance(row["num_envs"], int) and isinstance(row["index"], int) and 0 <= row["index"] < row["num_envs"]
              and isinstance(row["seed"], int) and isinstance(row["return"], (int, float)) and isinstance(row["env_kwargs"], dict))
        if not ok:
            raise ValueError(f"{where}: not a trajectory of textgym eval --save: actions must be a list of integers, "
                             "index an integer below num_envs, seed an integer, return a number")
        rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no trajectories (the file is empty)")
    return rows
