"""Rollouts: one episode per sub-env, batched on the device, generated with the KV cache.

The vector env runs with autoreset disabled, so every sub-env plays exactly one episode per
rollout and its observation only grows. The policy reads each observation as a sequence
(:class:`SequenceView`); each step appends the new positions to the KV cache and samples the next
action from the last one. Storage is allocated once per rollout; there is no numpy, no Python loop
over envs and no ``.item()`` in the loop (one sync every ``check_every`` steps to stop early).

At the end a :class:`Rollout` holds each episode's final sequence and, for every step, the
position the action was read from, so an update scores a whole episode with one forward pass.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import gymnasium as gym
import torch
import torch.nn.functional as F
from torch import nn

from textgym.config import POSITIVE
from textgym.names import import_env_module
from textgym.registry import ENV_PROTOCOL

PROTOCOL = ENV_PROTOCOL
"""What a trainer reads from a vector env (see ``textgym.envs.core.TorchVectorEnv``'s docstring)."""


POLICY_PROTOCOL = ("vocab_size", "n_actions", "max_len", "n_features", "forward", "new_cache", "step",
                   "frozen_reference", "save", "parameters")
"""What a trainer reads from a policy (see the docstring of :mod:`textgym.policies`)."""


def _check_follows(obj: object, protocol: tuple[str, ...], what: str, which: str, where: str) -> None:
    missing = [name for name in protocol if not hasattr(obj, name)]
    if missing:
        raise TypeError(f"{type(obj).__name__} is not a textgym {what}: it lacks {missing} of the {which} protocol "
                        f"(see the docstring of {where})")


def check_policy(policy: object) -> None:
    """Raise a TypeError naming what ``policy`` lacks of the trainer -> policy protocol."""
    _check_follows(policy, POLICY_PROTOCOL, "policy", "trainer -> policy", "textgym.policies")


def check_protocol(envs: object) -> None:
    """Raise a TypeError naming what ``envs`` lacks of the env -> trainer protocol."""
    _check_follows(envs, PROTOCOL, "vector env", "env -> trainer",
                   "textgym's vector env base class, in textgym/envs/core.py")


class SequenceView:
    """How a policy reads a vector env's observations as growing sequences, from the env's own
    declaration (``envs.sequence_spec`` and ``envs.sequence``): token ids, or one feature vector
    per position (GuessNumber-v0).

    Args:
        envs: a textgym vector env (anything with the env -> trainer protocol).
    """

    def __init__(self, envs) -> None:
        check_protocol(envs)
        self.envs = envs
        spec = envs.sequence_spec
        self.tokens_per_step = envs.tokens_per_step
        self.n_actions = int(envs.single_action_space.n)
        self.max_len, self.vocab_size, self.n_features = spec.max_len, spec.vocab_size, spec.n_features
        self.eos_id = getattr(spec, "eos_id", None)

    def policy_spec(self) -> dict[str, int]:
        """What a new policy for this env must read and write: ``vocab_size``, ``n_actions``,
        ``max_len``, ``n_features`` (the arguments of :func:`textgym.policies.make_policy`)."""
        return {"vocab_size": self.vocab_size, "n_actions": self.n_actions, "max_len": self.max_len,
                "n_features": self.n_features}

    def check(self, policy: nn.Module) -> None:
        """Raise a clear error, naming the env's and the policy's values, when ``policy`` does not fit this env."""
        check_policy(policy)
        if policy.n_features != self.n_features:
            what = lambda n: f"feature vectors of {n}" if n else "token ids"  # noqa: E731
            raise ValueError(f"the policy does not fit this env: the policy reads {what(policy.n_features)} but the env's observations are "
                             f"{what(self.n_features)}")
        if not self.n_features and policy.vocab_size < self.vocab_size:
            raise ValueError(f"the policy does not fit this env: the env's vocabulary has {self.vocab_size} tokens but the policy's has only "
                             f"{policy.vocab_size}: the env must tokenize with the model's tokenizer")
        if policy.n_actions != self.n_actions:
            raise ValueError(
                f"the policy does not fit this env: the env has {self.n_actions} actions (its vocabulary) but the policy writes {policy.n_actions}: "
                "the env must tokenize with the policy's tokenizer (env kwarg tokenizer=DIR); for a model "
                "whose embeddings are padded past its tokenizer, pass n_actions"
            )
        if policy.max_len < self.max_len:
            raise ValueError(f"the policy does not fit this env: the env's observations reach {self.max_len} positions but the policy reads at most "
                             f"{policy.max_len} (its max_position_embeddings): use a shorter env (max_new_tokens, "
                             "max_prompt_len) or a model with a longer context")
        eos, model_eos = self.eos_id, getattr(policy, "eos_ids", None)
        if eos is not None and model_eos is not None and eos not in model_eos:
            raise ValueError(f"the policy does not fit this env: the env's tokenizer ends a message with token id {eos}, but the model's eos ids are "
                             f"{sorted(model_eos)}: the env must tokenize with the model's tokenizer")

    def sequence(self, obs) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs, lengths)``: ``(B, L)`` ids or ``(B, L, F)`` features, and the real lengths ``(B,)``."""
        return self.envs.sequence(obs)


@dataclass
class Rollout:
    """One episode per sub-env. ``B`` episodes, ``T`` steps at most, ``L`` sequence positions."""

    inputs: torch.Tensor  # (B, L) ids or (B, L, F) features: the final sequences
    positions: torch.Tensor  # (B, T) the position each action was read from
    actions: torch.Tensor  # (B, T)
    logprobs: torch.Tensor  # (B, T) under the policy that acted
    values: torch.Tensor  # (B, T)
    rewards: torch.Tensor  # (B, T)
    mask: torch.Tensor  # (B, T) True for the steps the episode took
    success: torch.Tensor  # (B,) the env's own success flag (info["is_success"] at the episode's end)
    allowed: torch.Tensor | None = None  # (A,) bool: the actions the policy could take (the env's allowed_actions), or None: all

    @property
    def returns(self) -> torch.Tensor:
        """Undiscounted return of each episode ``(B,)``."""
        return (self.rewards * self.mask).sum(1)

    @property
    def lengths(self) -> torch.Tensor:
        return self.mask.sum(1)

    def index(self, idx: torch.Tensor) -> Rollout:
        """The episodes ``idx`` (a minibatch)."""
        return Rollout(**{f.name: getattr(self, f.name)[idx] for f in fields(self) if f.name != "allowed"},
                       allowed=self.allowed)  # one mask for every episode

    def trimmed(self) -> Rollout:
        """The same episodes with ``inputs`` cut after the last position an action was read from
        (one device sync). An update scores only those positions, and a causal model's outputs
        there do not depend on what follows, so the losses are the same for less compute: an
        episode that ends early no longer pays for the observation's padding."""
        used = int(self.positions.max()) + 1
        if used >= self.inputs.shape[1]:
            return self
        return Rollout(**{f.name: getattr(self, f.name) for f in fields(self)} | {"inputs": self.inputs[:, :used]})


MASKED_LOGIT = -1e8
"""The logit of an action the env does not allow (as sb3-contrib's ``MaskableCategorical``): finite, so
its probability is 0 and the entropy's ``p * log p`` is 0, not NaN."""


def mask_logits(logits: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
    """``logits (..., A)`` with the actions outside ``allowed (A,)`` set to :data:`MASKED_LOGIT` (None: unchanged)."""
    return logits if allowed is None else logits.masked_fill(~allowed, MASKED_LOGIT)


def make_envs(env_id: str, num_envs: int, device: torch.device, **env_kwargs):
    """A textgym vector env of tensors on ``device``, with autoreset disabled, as rollouts need, and
    without action checks."""
    import_env_module(env_id)
    try:
        envs = gym.make_vec(env_id, num_envs=num_envs, device=device, autoreset_mode="disabled", **env_kwargs)
    except gym.error.Error as e:  # an unknown id, a missing module, ...
        raise ValueError(f"cannot make env {env_id!r}: {e}") from None
    check_protocol(envs)
    envs.validate_actions = False  # actions are sampled from the action space: no per-step validation (a device sync)
    return envs


@torch.no_grad()
def collect(
    envs,
    view: SequenceView,
    policy: nn.Module | None = None,
    expert: Callable[[object], torch.Tensor] | None = None,
    seed: int | None = None,
    reset_options: dict | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    greedy: bool = False,
    generator: torch.Generator | None = None,
    check_every: int = 8,
    logits_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    step: Callable | None = None,
) -> Rollout:
    """Play one episode in every sub-env, with ``policy`` (sampling) or with ``expert`` (demonstrations).

    Args:
        envs: a textgym vector env of tensors (``device`` given), made with ``autoreset_mode="disabled"``.
        view: its :class:`SequenceView`.
        policy: the acting policy; its log-probs and values are recorded.
        expert: instead of a policy, a function ``obs -> actions (B,)``; log-probs and values are 0.
        seed, reset_options: passed to ``envs.reset``.
        temperature, top_k, greedy, generator: sampling controls (see :func:`sample`); the recorded
            log-probs are those of the distribution sampled from, at ``temperature`` (before
            ``top_k``), so that an update at the same temperature scores the policy that acted.
        check_every: steps between checks that every episode has ended (a device sync).
        logits_fn: changes the logits before sampling (e.g. forbids a token); the recorded
            log-probs are then those of the changed distribution. The env's ``allowed_actions``
            (when it declares them) are applied first, and recorded in the rollout for the update.
        step: what steps the cache instead of ``policy.step`` (its ``torch.compile``'d form).
    """
    if (policy is None) == (expert is None):
        raise ValueError("collect needs exactly one of policy and expert")
    check_temperature(temperature)
    B, T, dev = envs.num_envs, envs.max_episode_length, envs.device
    W = view.tokens_per_step
    positions = torch.zeros(B, T, dtype=torch.int64, device=dev)
    actions = torch.zeros(B, T, dtype=torch.int64, device=dev)
    logprobs, values, rewards = (torch.zeros(B, T, device=dev) for _ in range(3))
    mask = torch.zeros(B, T, dtype=torch.bool, device=dev)
    success = torch.zeros(B, dtype=torch.bool, device=dev)
    alive = torch.ones(B, dtype=torch.bool, device=dev)
    rows = torch.arange(B, device=dev)
    allowed = getattr(envs, "allowed_actions", None)

    obs, _ = envs.reset(seed=seed, options=reset_options)
    inputs, lengths = view.sequence(obs)
    if policy is not None:
        step = step or policy.step
        # Prefill the prompts up to the longest one (one sync per rollout); after step t no
        # position is past `filled + t * W`, so attention never reads the empty rest of the cache.
        filled = int(lengths.max())
        prompts = inputs[:, :filled]
        pick = None
        if B > 1 and hasattr(policy, "select_cache"):  # repeated prompts (GRPO's groups): each read once
            distinct, pick = torch.unique(prompts, dim=0, return_inverse=True)
            if len(distinct) < B:
                prompts = distinct
            else:
                pick = None
        cache = policy.new_cache(len(prompts), slack=W)
        pos = torch.arange(filled, device=dev).expand(len(prompts), filled)
        ends = lengths - 1
        if pick is not None:  # the last position of each distinct prompt
            ends = torch.zeros(len(prompts), dtype=ends.dtype, device=dev).scatter_(0, pick, ends)
        if _accepts(policy.step, "last"):  # the heads only where the policy acts next
            logits, value = step(prompts, pos, cache, upto=filled, last=ends)
            logits, value = logits[:, 0], value[:, 0]
        else:
            logits, value = step(prompts, pos, cache, upto=filled)
            at = torch.arange(len(prompts), device=dev)
            logits, value = logits[at, ends], value[at, ends]
        if pick is not None:
            cache, logits, value = policy.select_cache(cache, pick), logits[pick], value[pick]
    offsets = torch.arange(W, device=dev)
    for t in range(T):
        # 1. act from the last position of each sequence
        if policy is not None:
            logits = mask_logits(logits.float(), allowed)  # .float(): a no-op, except under bf16 autocast
            if logits_fn is not None:
                logits = logits_fn(logits)
            if not greedy and temperature != 1.0:
                logits = logits / temperature  # the distribution sampled from, and recorded
            action = sample(logits, 1.0, top_k, greedy, generator)
            logprobs[:, t] = F.log_softmax(logits, dim=-1).gather(1, action[:, None]).squeeze(1)
            values[:, t] = value
        else:
            action = expert(obs)
        positions[:, t], actions[:, t], mask[:, t] = lengths - 1, action, alive
        # 2. step every env (finished ones ignore the action)
        obs, reward, terminated, truncated, info = envs.step(action)
        done = alive & (terminated | truncated)
        rewards[:, t] = reward * alive
        if "is_success" in info:
            success |= done & info["is_success"]
        alive = alive & ~done
        # 3. read the new positions into the cache, unless no action follows: after the last step,
        # or once every episode has ended (checked every `check_every` steps: a device sync)
        inputs, new_lengths = view.sequence(obs)
        over = t == T - 1 or ((t + 1) % check_every == 0 and not bool(alive.any()))
        if policy is not None and not over:
            pos = lengths[:, None] + offsets  # (B, W)
            chunk = inputs.gather(1, pos.clamp(max=inputs.shape[1] - 1) if inputs.dim() == 2 else
                                  pos.clamp(max=inputs.shape[1] - 1)[..., None].expand(-1, -1, inputs.shape[2]))
            filled += W
            logits, value = step(chunk, pos, cache, upto=filled)
            last = (new_lengths - lengths - 1).clamp(0, W - 1)
            logits, value = logits[rows, last], value[rows, last]
        lengths = new_lengths
        if over:
            break
    return Rollout(inputs, positions, actions, logprobs, values, rewards, mask, success, allowed)


def evaluate_logprobs(policy: nn.Module, rollout: Rollout, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Score a rollout's actions under ``policy`` with one forward pass per episode.

    Args:
        temperature: the sampling temperature of the rollout: the log-probs and entropy are those
            of ``softmax(logits / temperature)``, the distribution the actions were drawn from
            (over the rollout's ``allowed`` actions, when the env declared them).

    Returns:
        ``(logprobs, entropy, values)``, each ``(B, T)``.
    """
    idx = rollout.positions
    module = getattr(policy, "_orig_mod", policy)  # a torch.compile'd module's own
    forward = module.forward if isinstance(module, nn.Module) else module
    if _accepts(forward, "prefix"):  # prompts that repeat (GRPO's groups) computed once: up to the shortest one
        logits, values = policy(rollout.inputs, at=idx, prefix=int(idx[:, 0].min()) + 1)
    elif _accepts(forward, "at"):  # the heads where actions were read
        logits, values = policy(rollout.inputs, at=idx)  # (B, T, A), (B, T)
    else:
        logits, values = policy(rollout.inputs)  # (B, L, A), (B, L)
        logits = logits.gather(1, idx[..., None].expand(-1, -1, logits.shape[-1]))  # (B, T, A)
        values = values.gather(1, idx)
    logits, values = mask_logits(logits.float(), rollout.allowed), values.float()  # .float(): no-ops, except under bf16 autocast
    if temperature != 1.0:
        logits = logits / temperature
    logp_all = F.log_softmax(logits, dim=-1)
    logprobs = logp_all.gather(2, rollout.actions[..., None]).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logprobs, entropy, values


def _accepts(fn: Any, name: str) -> bool:
    """Whether ``fn`` takes the argument ``name`` (an optional part of the policy protocol)."""
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def check_temperature(temperature: float) -> None:
    """A ValueError unless ``temperature`` is a number > 0 (0 is greedy: pass ``greedy=True``)."""
    if not POSITIVE.ok(temperature):
        raise ValueError(f"temperature must be a number > 0 (for greedy decoding use greedy=True), got {temperature!r}")


def sample(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, greedy: bool = False,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Actions from logits ``(B, A)``: greedy, or sampled at ``temperature`` from the ``top_k`` best."""
    if greedy:
        return logits.argmax(-1)
    check_temperature(temperature)
    if temperature != 1.0:
        logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator).squeeze(-1)
