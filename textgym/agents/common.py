"""What the trainers' loops share: the device and seeding, the setup of envs and policy, the KL
reference, compilation and precision, the step-size schedule, an iteration's rollout, minibatches,
the gradient step, the update's statistics and the NaN check."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from textgym.agents.configs import KLConfig, TrainConfig
from textgym.agents.losses import kl_penalty
from textgym.agents.optim import Adam
from textgym.agents.rollout import Rollout, SequenceView, collect, evaluate_logprobs, make_envs
from textgym.distributed import Ranks, init_ranks, rank_device
from textgym.policies import load_policy, make_policy


class TrainingError(RuntimeError):
    """Training stopped (a NaN loss); the last good checkpoint is kept."""


def frozen_reference(policy: nn.Module, cfg: KLConfig) -> nn.Module | None:
    """The KL reference: ``policy`` as it is now, frozen (``policy.frozen_reference()``: a copy, or
    for LoRA the model with its adapters off), or None when ``cfg.kl_coef`` is 0."""
    return policy.frozen_reference() if cfg.kl_coef > 0 else None


@torch.no_grad()
def reference_logprobs(reference: nn.Module, rollout: Rollout, temperature: float = 1.0) -> torch.Tensor:
    """The reference's log-probs ``(B, T)`` of a rollout's actions at the rollout's sampling
    ``temperature``, one forward pass per episode."""
    return evaluate_logprobs(reference, rollout, temperature)[0]


def kl_to_reference(reference: nn.Module | None, rollout: Rollout, cfg: KLConfig) -> torch.Tensor:
    """The per-step KL estimate ``(B, T)`` of the acting policy to the reference (0 without one),
    both at the rollout's sampling temperature (``cfg.temperature``)."""
    if reference is None:
        return torch.zeros_like(rollout.rewards)
    ref = reference_logprobs(reference, rollout, getattr(cfg, "temperature", 1.0))
    return kl_penalty(rollout.logprobs, ref, cfg.kl_estimator) * rollout.mask


def critic_parameters(policy: nn.Module) -> set[int]:
    """The ids of the parameters of ``policy``'s value function (``policy.value_parameters()``:
    the value head, and the value trunk of a separate value model), for a critic warm-up.

    Raises:
        TypeError: the policy does not say which parameters are its value function's.
    """
    if not hasattr(policy, "value_parameters"):
        raise TypeError(f"critic_warmup needs the policy to say which parameters are its value function's: "
                        f"{type(policy).__name__} has no value_parameters() method")
    return {id(p) for p in policy.value_parameters()}


def resolve_device(name: str) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; a clear error for an unavailable or unknown device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ValueError(f"unknown device {name!r}: expected 'auto', 'cpu' or 'cuda'")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but CUDA is not available; use 'auto' or 'cpu'")
    return torch.device(name)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, numpy and torch; return a generator for sampling actions."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def initial_policy(cfg: TrainConfig, view: SequenceView, device: torch.device) -> nn.Module:
    """The policy a run starts from: loaded from ``cfg.init``, or a new textgym policy sized for the env."""
    if cfg.init is not None:
        return load_policy(cfg.init, device, **cfg.policy_options())
    return make_policy(**view.policy_spec(), n_layers=cfg.n_layers, n_heads=cfg.n_heads, d_model=cfg.d_model,
                       value_model=cfg.value_model)


class Setup(NamedTuple):
    """What a trainer starts from (see :func:`setup`)."""

    device: torch.device
    envs: Any
    """This rank's vector env (a textgym ``TorchVectorEnv``)."""
    view: SequenceView
    """How the policy reads the envs' observations."""
    policy: nn.Module
    generator: torch.Generator
    """The sampling generator of the rollouts."""
    ranks: Ranks
    """This process's place in a torchrun group (one rank without torchrun)."""


def setup(cfg: TrainConfig, policy: nn.Module | None) -> Setup:
    """Device, envs, view, policy (given, else :func:`initial_policy`; moved to the device), the
    sampling generator and this process's :class:`~textgym.distributed.Ranks` (one rank
    without torchrun; with it, this rank's share of the envs and rank 0's weights)."""
    device = resolve_device(cfg.device)
    ranks = init_ranks(cfg.dist_backend, cfg.num_envs, device)
    device = rank_device(device, ranks)
    seed_everything(cfg.seed)  # the same on every rank: the same new policy, the same minibatch order
    sampling_seed = cfg.seed + 1_000_003 * ranks.rank
    generator = torch.Generator(device=device if device.type == "cuda" else "cpu").manual_seed(sampling_seed)
    envs = make_envs(cfg.env_id, ranks.envs_per_rank(cfg.num_envs), device, **cfg.env_kwargs)
    if cfg.curriculum is not None:  # each rank moves the difficulty of its own envs
        envs.set_curriculum(cfg.curriculum)
    view = SequenceView(envs)
    if policy is None:
        policy = initial_policy(cfg, view, device)
    view.check(policy)
    policy = policy.to(device)
    ranks.broadcast_parameters(policy)
    return Setup(device, envs, view, policy, generator, ranks)


def compiled(cfg: TrainConfig, policy: nn.Module) -> tuple[Any, Any]:
    """``(score, step)``: what the updates call to score whole episodes and what the rollouts call
    to step the KV cache; with ``cfg.compile`` their ``torch.compile``'d forms (the same
    parameters: the policy itself is what is saved)."""
    if not cfg.compile:
        return policy, policy.step
    return torch.compile(policy), torch.compile(policy.step, dynamic=True)  # the cache's fill level varies


def precision(cfg: TrainConfig, device: torch.device):
    """The autocast context of a run: bfloat16 forward passes with ``cfg.bf16``, else nothing changes."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16)


def anneal(optimizer: Adam | torch.optim.Optimizer, cfg: TrainConfig, env_steps: int) -> None:
    """With ``cfg.anneal_lr``, set the step size for the iteration that starts after ``env_steps``:
    ``learning_rate * (1 - env_steps / total_steps)``. A function of the run's progress alone, so a
    resumed run takes the same steps."""
    if cfg.anneal_lr:
        for group in optimizer.param_groups:
            group["lr"] = cfg.learning_rate * max(0.0, 1.0 - env_steps / cfg.total_steps)


def collect_batch(envs: Any, view: SequenceView, policy: nn.Module, generator: torch.Generator, ranks: Ranks,
                  cfg: TrainConfig, run: Any, step: Any, reset_options: dict | None = None) -> Rollout:
    """Iteration ``run.iteration``'s batch for an RL update: one episode per sub-env, sampled at
    ``cfg.temperature`` with the KV cache (``step``, from :func:`compiled`), trimmed to the positions
    actions were read from (all the update scores). The first iteration seeds the envs (with
    ``reset_options``, e.g. the group size). Its env steps, over every rank, are added to
    ``run.env_steps``."""
    first = run.iteration == 1
    policy.eval()
    rollout = collect(envs, view, policy, seed=ranks.env_seed(cfg.seed, cfg.num_envs) if first else None,
                      reset_options=reset_options if first else None, temperature=cfg.temperature,
                      generator=generator, step=step)
    rollout = rollout.trimmed()
    run.env_steps += ranks.sum(int(rollout.mask.sum()))
    return rollout


def minibatches(num_envs: int, num_minibatches: int, device: torch.device,
                group_size: int = 1) -> Iterator[torch.Tensor | slice]:
    """The episodes of each minibatch of one pass over a batch: a fresh random split into
    ``num_minibatches`` parts of ``num_envs // num_minibatches`` (the whole batch when there is one).
    With ``group_size`` > 1 the split keeps groups whole: the episodes ``g * group_size`` to
    ``(g + 1) * group_size - 1`` of group ``g`` always land in the same minibatch."""
    if num_minibatches == 1:
        yield slice(None)
        return
    perm = torch.randperm(num_envs // group_size, device=device)
    if group_size > 1:
        perm = (perm[:, None] * group_size + torch.arange(group_size, device=device)).flatten()
    size = max(1, num_envs // num_minibatches)
    for lo in range(0, num_envs, size):
        yield perm[lo : lo + size]


def update_minibatches(batch: Any, mask: torch.Tensor, cfg: Any, device: torch.device,
                       group_size: int = 1) -> Iterator[tuple[torch.Tensor | slice, Any, torch.Tensor]]:
    """``(idx, minibatch, its mask)`` for every minibatch of ``cfg.update_epochs`` passes over ``batch``
    (a rollout, or SFT's demonstrations: anything with ``index(idx)``), each pass a fresh split into
    ``cfg.num_minibatches`` by :func:`minibatches`. PPO writes the two loops out, as it stops
    between epochs at ``target_kl``."""
    for _epoch in range(cfg.update_epochs):
        for idx in minibatches(mask.shape[0], cfg.num_minibatches, device, group_size):
            yield idx, batch.index(idx), mask[idx]


def gradient_step(loss: torch.Tensor, policy: nn.Module, optimizer: Adam | torch.optim.Optimizer, ranks, max_grad_norm: float,
                  only: set[int] | None = None) -> None:
    """One optimizer step on ``loss``: the gradients averaged over the ranks (one all-reduce when
    there are several) and clipped to ``max_grad_norm``. With ``only`` (ids of parameters), every
    other parameter is left without a gradient, which Adam skips: it stays exactly as it is."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    ranks.average_gradients(policy)
    if only is not None:
        for p in policy.parameters():
            if id(p) not in only:
                p.grad = None
    torch.nn.utils.clip_grad_norm_(policy.parameters(), max_grad_norm)
    optimizer.step()


def check_finite(iteration: int, **values: torch.Tensor) -> None:
    """Raise :class:`TrainingError` naming the iteration and every value that is NaN or infinite (one device sync)."""
    finite = torch.stack([torch.isfinite(v).all() for v in values.values()]).tolist()
    bad = [name for name, ok in zip(values, finite) if not ok]
    if bad:
        raise TrainingError(f"iteration {iteration}: {', '.join(bad)} became NaN or infinite; training stopped")


class UpdateStats:
    """The statistics of one update's minibatches (losses, entropy, KL, ...), kept on the device and
    read once: by :meth:`check_finite` and, to log, by :meth:`means`."""

    def __init__(self) -> None:
        self.values: dict[str, list[torch.Tensor]] = {}

    def add(self, **values: torch.Tensor) -> None:
        """Record one minibatch's values (detached; no device sync)."""
        for name, value in values.items():
            self.values.setdefault(name, []).append(value.detach())

    def last(self, name: str) -> torch.Tensor:
        """The latest minibatch's ``name``."""
        return self.values[name][-1]

    def check_finite(self, iteration: int, *names: str) -> None:
        """:func:`check_finite` of every minibatch's ``names`` (one device sync)."""
        check_finite(iteration, **{name: torch.stack(self.values[name]) for name in names})

    def means(self) -> dict[str, float]:
        """Each statistic's mean over the minibatches."""
        return {name: float(torch.stack(v).mean()) for name, v in self.values.items()}
