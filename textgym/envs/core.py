"""What every textgym env shares: action checks, episode keys, and the torch vector env base.

Vector envs subclass :class:`TorchVectorEnv` and implement three methods on masks of sub-envs:
``_start(mask, keys)`` begins new episodes, ``_advance(actions, active)`` applies one action to the
running ones, ``_observe()`` returns the batched observation. The base class does the Gymnasium
parts once: seeding, next-step autoreset, ``reset_mask``, ``max_episode_steps`` and action checks.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.error import ResetNeeded
from gymnasium.vector import AutoresetMode, VectorEnv

from textgym.seeding import as_stream, episode_key


def check_action(action: Any, n: int) -> int:
    """The action as a Python int in ``[0, n)``, or a ValueError that says what was wrong."""
    if isinstance(action, (np.ndarray, torch.Tensor)):
        if action.ndim != 0:
            raise ValueError(f"action must be a single integer in [0, {n}), got an array of shape {tuple(action.shape)}")
        action = action.item()
    if isinstance(action, (float, np.floating)):
        what = "NaN" if math.isnan(action) else f"the float {action!r}"
        raise ValueError(f"action must be an integer in [0, {n}), got {what}")
    if isinstance(action, bool) or not isinstance(action, (int, np.integer)):
        raise ValueError(f"action must be an integer in [0, {n}), got {type(action).__name__} {action!r}")
    if not 0 <= action < n:
        raise ValueError(f"action {int(action)} is outside the action space: expected an integer in [0, {n})")
    return int(action)


def check_step(started: bool, done: bool, action: Any, n: int) -> int:
    """A single env's checks before a step: reset first, not after the end, a valid action."""
    if not started:
        raise ResetNeeded("call reset() before step()")
    if done:
        raise ResetNeeded("the episode has ended; call reset() to start the next one")
    return check_action(action, n)


def check_actions(actions: Any, n: int, num_envs: int, device: torch.device) -> torch.Tensor:
    """The batch of actions as int64 ``(num_envs,)`` on ``device``, or a ValueError."""
    if not isinstance(actions, torch.Tensor):
        actions = torch.as_tensor(np.asarray(actions))
    if actions.dtype.is_floating_point or actions.dtype == torch.bool or actions.dtype.is_complex:
        raise ValueError(f"actions must be integers in [0, {n}), got a tensor of {actions.dtype}")
    if actions.shape != (num_envs,):
        raise ValueError(f"actions must have shape ({num_envs},), one per sub-env, got {tuple(actions.shape)}")
    actions = actions.to(device=device, dtype=torch.int64)
    bad = (actions < 0) | (actions >= n)
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise ValueError(f"action {int(actions[i])} of sub-env {i} is outside the action space: expected [0, {n})")
    return actions


class EpisodeKeys:
    """The episode keys of a single env (see :mod:`textgym.seeding`)."""

    def __init__(self) -> None:
        self.stream: int | None = None
        self.episode = 0

    def next(self, seed: int | None, np_random: np.random.Generator) -> int:
        """Key of the next episode; a seed restarts the stream, as ``reset(seed=...)`` does."""
        if seed is not None:
            self.stream, self.episode = as_stream(seed), 0
        elif self.stream is None:
            self.stream, self.episode = int(np_random.integers(2**32)), 0
        key = episode_key(torch.tensor(self.stream), torch.tensor(self.episode))
        self.episode += 1
        return int(key)


RENDER_MODES = ["ansi", "human"]


def render_text(render_mode: str | None, text: str) -> str | None:
    """What ``render()`` returns for ``text``: the text (``"ansi"``), or None after printing it (``"human"``)."""
    if render_mode == "ansi":
        return text
    if render_mode == "human":
        print(text)
        return None
    if render_mode is None:
        gym.logger.warn("render() called without a render_mode: make the env with render_mode='ansi' or 'human'")
        return None
    raise ValueError(f"render_mode {render_mode!r} is not supported: use one of {RENDER_MODES}")


def token_observation_space(length: int, vocab_size: int) -> gym.spaces.Dict:
    """``{"input_ids": Box(int64), "attention_mask": Box(int8)}`` of ``length`` positions."""
    return gym.spaces.Dict(
        {
            "input_ids": gym.spaces.Box(0, vocab_size - 1, (length,), dtype=np.int64),
            "attention_mask": gym.spaces.Box(0, 1, (length,), dtype=np.int8),
        }
    )


def pad_to(ids: list[int], length: int, pad_id: int) -> dict[str, np.ndarray]:
    """A token observation from a list of ids: fresh arrays, right-padded to ``length``."""
    input_ids = np.full(length, pad_id, dtype=np.int64)
    input_ids[: len(ids)] = ids
    mask = np.zeros(length, dtype=np.int8)
    mask[: len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": mask}


class TorchVectorEnv(VectorEnv):
    """Base of textgym's vector envs: a batch of episodes held as torch tensors on ``device``.

    Observations, rewards, ``terminated`` and ``truncated`` are torch tensors on ``device``;
    actions may be a tensor, a numpy array or a list of ints.

    Autoreset (``autoreset_mode``, also in ``metadata["autoreset_mode"]``):

    * ``"next_step"`` (default, Gymnasium's): the step after a sub-env's episode ends starts its
      next episode, ignores that sub-env's action, and returns reward 0 with
      ``terminated = truncated = False``.
    * ``"disabled"``: a finished sub-env stays finished: its actions are ignored, it returns reward
      0 and ``terminated = truncated = False``, and its observation stays the last one, until
      ``reset``. Trainers use it to play exactly one episode per sub-env.

    ``reset(options={"reset_mask": mask})`` restarts only the sub-envs where ``mask`` is true.

    Seeding follows Gymnasium: ``reset(seed=s)`` seeds sub-env ``i`` with ``s + i``, and sub-env
    ``i`` then plays exactly the episodes of the single env reset with ``seed=s + i``. With
    ``options={"group_size": k}`` as well, sub-envs ``i`` come in groups of ``k`` that share the
    stream ``s + i // k``, so each group plays the same examples (for leave-one-out baselines).

    Attributes:
        tokens_per_step: the most observation positions one step adds (1 for the token envs,
            more where the env writes feedback), so a policy with a KV cache knows what to read.
    """

    tokens_per_step: int = 1

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": ["ansi"]}

    def __init__(
        self,
        num_envs: int,
        device: str | torch.device = "cpu",
        max_episode_steps: int | None = None,
        autoreset_mode: str | AutoresetMode = AutoresetMode.NEXT_STEP,
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        if max_episode_steps is not None and (not isinstance(max_episode_steps, int) or max_episode_steps < 1):
            raise ValueError(f"max_episode_steps must be a positive integer or None, got {max_episode_steps!r}")
        modes = {AutoresetMode.NEXT_STEP.value: AutoresetMode.NEXT_STEP, "next_step": AutoresetMode.NEXT_STEP,
                 AutoresetMode.DISABLED.value: AutoresetMode.DISABLED, "disabled": AutoresetMode.DISABLED}
        mode = autoreset_mode if isinstance(autoreset_mode, AutoresetMode) else modes.get(autoreset_mode)
        if mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.DISABLED):
            raise ValueError(f"autoreset_mode must be 'next_step' or 'disabled', got {autoreset_mode!r}")
        self.metadata = {**type(self).metadata, "autoreset_mode": mode}
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.max_episode_steps = max_episode_steps
        self.check = True  # validate actions in step(); a trainer that samples from the space may turn it off
        self._streams = torch.zeros(num_envs, dtype=torch.int64, device=self.device)
        self._episodes = torch.zeros(num_envs, dtype=torch.int64, device=self.device)
        self._steps = torch.zeros(num_envs, dtype=torch.int64, device=self.device)
        self._needs_reset = torch.zeros(num_envs, dtype=torch.bool, device=self.device)
        self._started = False

    def _set_spaces(self, single_observation_space: gym.Space, single_action_space: gym.spaces.Discrete) -> None:
        self.single_observation_space = single_observation_space
        self.single_action_space = single_action_space
        self.observation_space = gym.vector.utils.batch_space(single_observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(single_action_space, self.num_envs)

    # -- to implement -------------------------------------------------------------------------
    def _start(self, mask: torch.Tensor, keys: torch.Tensor) -> None:
        """Begin new episodes in the sub-envs where ``mask`` is true, from their ``keys`` (B,)."""
        raise NotImplementedError

    def _advance(self, actions: torch.Tensor, active: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        """Apply ``actions`` where ``active``; return ``(reward, terminated, truncated, info)``, zero elsewhere."""
        raise NotImplementedError

    def _observe(self) -> Any:
        raise NotImplementedError

    # -- Gymnasium API --------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        """Start new episodes in every sub-env, or in those of ``options["reset_mask"]``."""
        mask = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        if options and "reset_mask" in options:
            mask = options["reset_mask"]
            mask = mask if isinstance(mask, torch.Tensor) else torch.as_tensor(np.asarray(mask))
            if mask.dtype != torch.bool or mask.shape != (self.num_envs,):
                raise ValueError(f"options['reset_mask'] must be a bool array of shape ({self.num_envs},), got {mask.dtype} {tuple(mask.shape)}")
            mask = mask.to(self.device)
            if not self._started and not bool(mask.all()):
                raise ResetNeeded("the first reset must reset every sub-env; call reset() without reset_mask first")
        group = int((options or {}).get("group_size", 1))
        if group < 1 or self.num_envs % group:
            raise ValueError(f"options['group_size'] must divide num_envs={self.num_envs}, got {group}")
        if seed is not None:
            streams = (as_stream(seed) + torch.arange(self.num_envs, device=self.device) // group) & 0xFFFFFFFF
            self._streams = torch.where(mask, streams, self._streams)
            self._episodes = torch.where(mask, 0, self._episodes)
        elif not self._started:
            base = int(np.random.default_rng().integers(2**32))
            self._streams = (base + torch.arange(self.num_envs, device=self.device) // group) & 0xFFFFFFFF
        self._started = True
        self._begin(mask)
        return self._observe(), {}

    def _begin(self, mask: torch.Tensor) -> None:
        keys = episode_key(self._streams, self._episodes)
        self._episodes = self._episodes + mask.long()
        self._steps = torch.where(mask, 0, self._steps)
        self._needs_reset = self._needs_reset & ~mask
        self._start(mask, keys)

    def step(self, actions: Any) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        """One action per sub-env; sub-envs whose episode ended at the last step start anew."""
        if not self._started:
            raise ResetNeeded("call reset() before step()")
        n = int(self.single_action_space.n)
        if self.check:
            actions = check_actions(actions, n, self.num_envs, self.device)
        else:
            actions = torch.as_tensor(actions, device=self.device, dtype=torch.int64)
        finished = self._needs_reset
        active = ~finished
        reward, terminated, truncated, info = self._advance(actions, active)
        self._steps = self._steps + active.long()
        if self.max_episode_steps is not None:
            truncated = truncated | (active & (self._steps >= self.max_episode_steps))
        if self.metadata["autoreset_mode"] == AutoresetMode.DISABLED:
            self._needs_reset = finished | terminated | truncated
        else:
            if bool(finished.any()):
                self._begin(finished)
            self._needs_reset = terminated | truncated
        return self._observe(), reward, terminated, truncated, info
