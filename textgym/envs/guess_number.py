"""Guess the secret number: the plain form (actions are numbers, feedback is a number)."""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from textgym.envs.core import (
    RENDER_MODES,
    EpisodeKeys,
    SequenceSpec,
    TorchVectorEnv,
    check_step,
    render_text,
)

HIGHER, LOWER = 1.0, -1.0  # feedback: the secret is higher / lower than the guess


def set_game(env, low: int, high: int, max_guesses: int, guess_penalty: float, shaping: bool, text: bool = False) -> None:
    """Validate the game's arguments and store them on ``env`` (all four game classes do this)."""
    for name, v in (("low", low), ("high", high), ("max_guesses", max_guesses)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{name} must be an integer, got {v!r}")
    if low >= high:
        raise ValueError(f"low must be smaller than high, got low={low}, high={high}")
    if max_guesses < 1:
        raise ValueError(f"max_guesses must be at least 1, got {max_guesses}")
    if isinstance(guess_penalty, bool) or not isinstance(guess_penalty, (int, float, np.number)) \
            or not math.isfinite(guess_penalty) or guess_penalty < 0:
        raise ValueError(f"guess_penalty must be a finite number >= 0, got {guess_penalty!r}")
    if not isinstance(shaping, (bool, np.bool_)):
        raise ValueError(f"shaping must be true or false, got {shaping!r}")
    if text and low < 0:
        raise ValueError(f"low must be >= 0 in the text game (guesses are written as digits), got {low}")
    env.low, env.high, env.max_guesses = int(low), int(high), int(max_guesses)
    env.guess_penalty, env.shaping = float(guess_penalty), bool(shaping)


def check_possible_mask(possible_mask: Any) -> bool:
    if not isinstance(possible_mask, (bool, np.bool_)):
        raise ValueError(f"possible_mask must be true or false, got {possible_mask!r}")
    return bool(possible_mask)


def observation_size(env) -> int:
    """The interval, the guesses left, the history, and with ``possible_mask`` one entry per number."""
    return 3 + 2 * env.max_guesses + (env.high - env.low + 1) * env.possible_mask


def bisect_guess(lo, hi):
    """The middle of the interval of secrets still possible (binary search's next guess); ints or tensors."""
    return (lo + hi) // 2


def guess_reward(correct: bool, guess_penalty: float) -> float:
    return 1.0 if correct else -guess_penalty


def potential(lo, hi, n: int):
    """``-log2(hi - lo + 1) / log2(n)``: -1 when all ``n`` secrets are possible, 0 when one is.

    Works on ints and on tensors. With ``shaping=True`` each guess is paid the change in this
    potential: potential-based shaping, which keeps the optimal policy (Ng, Harada and Russell,
    "Policy invariance under reward transformations", 1999).
    """
    size = hi - lo + 1
    if isinstance(size, torch.Tensor):
        return -torch.log2(size.float()) / math.log2(n)
    return -math.log2(size) / math.log2(n)


def shaped_reward(correct, before: float, after: float, guess_penalty: float):
    """A guess's reward with shaping: the narrowing it bought, less the penalty when it was wrong.

    The won game's +1 is spread over its guesses (they add up to exactly 1), so a game won in ``k``
    guesses returns ``1 - guess_penalty * (k - 1)`` with or without shaping.
    """
    return after - before - guess_penalty * (1 - correct)


_DOC = """
    ## Rewards

    +1 for the right guess, `-guess_penalty` (default 0.1) for every wrong one. The return of a
    game won in `k` guesses is `1 - guess_penalty * (k - 1)`, so fewer guesses is strictly better,
    and any win beats any loss (`-guess_penalty * max_guesses`).

    With `shaping=True`, the +1 is paid as information instead: every guess earns the change in
    `-log2(secrets still possible) / log2(high - low + 1)`, so a guess that halves the interval
    earns about 0.15 on 1..100 and a guess outside it earns nothing, less `guess_penalty` when
    wrong. A won game returns exactly the same as without shaping; a lost game keeps the credit
    for narrowing. This potential-based shaping keeps the optimal policy (binary search) and gives
    a learner a signal on every guess.

    ## Episode End

    * Termination: the guess is right, or `max_guesses` guesses were made.
    * Truncation: none (the game always ends by its own rules).

    `info` holds `guesses` (made so far) and `success`; at the end also `secret` and
    `is_success` (the key Stable-Baselines3 reads).

    ## Arguments

    * `low`, `high`: the secret is drawn uniformly from `[low, high]` (default 1..100).
    * `max_guesses`: guesses allowed (default 10; binary search never needs more than
      `ceil(log2(high - low + 2))`, which is 7 for 1..100, and averages 5.80 guesses there).
    * `guess_penalty`: the cost of a wrong guess (default 0.1).
    * `shaping`: pay the win as information on every guess (default False; see Rewards).
    * `possible_mask`: append to the observation one entry per number, 1 where the secret may
      still be (default False). A flat form that standard agents' MLPs (Stable-Baselines3,
      CleanRL, torchrl) learn binary search from: a linear layer with weights `-|a - b|` from
      number `b` to action `a` puts its argmax at the middle of the interval, where reading the
      middle from `lo` and `hi` alone needs very large weights to tell neighbouring numbers apart.
    * `render_mode`: `"ansi"`, `"human"` or `"rgb_array"` (the text as an image, for video wrappers).
"""


class GuessNumberEnv(gym.Env):
    """Guess a secret integer in `[low, high]`; after each guess you hear "higher", "lower" or "correct".

    ## Description

    The classic game, and the smallest sequential decision problem with a known optimal policy:
    binary search. The observation carries the whole history of guesses and feedback, plus the
    interval of secrets still possible, so a policy can play optimally.

    ## Action Space

    `Discrete(high - low + 1)`: action `a` guesses the number `low + a`.

    ## Observation Space

    `Box(-1, 1, (3 + 2 * max_guesses,), float32)`, where `n = high - low`:

    | index | meaning |
    |---|---|
    | 0 | smallest secret still possible, `(lo - low) / n` |
    | 1 | largest secret still possible, `(hi - low) / n` |
    | 2 | fraction of the guesses left, `(max_guesses - guesses) / max_guesses` |
    | 3 + 2k | guess number k, `(guess - low) / n`; -1 if not made yet |
    | 4 + 2k | its feedback: +1 the secret is higher, -1 lower, 0 not made yet |
    | 3 + 2 * max_guesses + b | with `possible_mask=True`: 1 if number `low + b` may still be the secret, else 0 |
    {doc}
    ## Version History

    * v0: initial version.
    """

    metadata = {"render_modes": RENDER_MODES, "render_fps": 4}

    def __init__(
        self,
        low: int = 1,
        high: int = 100,
        max_guesses: int = 10,
        guess_penalty: float = 0.1,
        shaping: bool = False,
        possible_mask: bool = False,
        render_mode: str | None = None,
    ) -> None:
        set_game(self, low, high, max_guesses, guess_penalty, shaping)
        self.possible_mask = check_possible_mask(possible_mask)
        self.render_mode = render_mode
        self.action_space = gym.spaces.Discrete(self.high - self.low + 1)
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (observation_size(self),), dtype=np.float32)
        self._keys = EpisodeKeys()
        self._secret: int | None = None
        self._done = True

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        key = self._keys.next(seed, self.np_random)
        self._secret = self.low + key % (self.high - self.low + 1)
        self._lo, self._hi = self.low, self.high
        self._history: list[tuple[int, float]] = []
        self._done = False
        return self._obs(), {"guesses": 0, "success": False}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        guess = self.low + check_step(self._secret is not None, self._done, action, self.action_space.n)
        correct = guess == self._secret
        before = potential(self._lo, self._hi, self.high - self.low + 1)
        if not correct:
            feedback = HIGHER if self._secret > guess else LOWER
            if feedback == HIGHER:
                self._lo = max(self._lo, guess + 1)
            else:
                self._hi = min(self._hi, guess - 1)
            self._history.append((guess, feedback))
        else:
            self._history.append((guess, 0.0))
            self._lo = self._hi = guess
        guesses = len(self._history)
        self._done = correct or guesses >= self.max_guesses
        info: dict[str, Any] = {"guesses": guesses, "success": correct}
        if self._done:
            info["secret"], info["is_success"] = self._secret, correct
        if self.render_mode == "human":
            self.render()
        if self.shaping:
            after = potential(self._lo, self._hi, self.high - self.low + 1)
            reward = shaped_reward(correct, before, after, self.guess_penalty)
        else:
            reward = guess_reward(correct, self.guess_penalty)
        return self._obs(), reward, self._done, False, info

    def _obs(self) -> np.ndarray:
        n = self.high - self.low
        obs = np.zeros(observation_size(self), dtype=np.float32)
        obs[0], obs[1] = (self._lo - self.low) / n, (self._hi - self.low) / n
        obs[2] = (self.max_guesses - len(self._history)) / self.max_guesses
        obs[3::2] = -1.0
        for k, (guess, feedback) in enumerate(self._history):
            obs[3 + 2 * k], obs[4 + 2 * k] = (guess - self.low) / n, feedback
        if self.possible_mask:
            obs[3 + 2 * self.max_guesses :] = self.action_masks()
        return obs

    def action_masks(self) -> np.ndarray:
        """The guesses that can still be right (the interval of possible secrets), as a bool mask over
        the actions: what sb3-contrib's ``MaskablePPO`` reads."""
        numbers = np.arange(self.low, self.high + 1)
        if self._secret is None:
            return np.ones(len(numbers), dtype=bool)
        return (numbers >= self._lo) & (numbers <= self._hi)

    def expert(self, obs: np.ndarray) -> int:
        """Binary search: the action guessing the middle of the interval that ``obs[0]``, ``obs[1]`` give."""
        span = self.high - self.low
        lo, hi = self.low + round(float(obs[0]) * span), self.low + round(float(obs[1]) * span)
        return bisect_guess(lo, hi) - self.low  # action a guesses low + a

    def _render_text(self) -> str:
        words = {HIGHER: "higher", LOWER: "lower", 0.0: "correct"}
        lines = [f"guess a number from {self.low} to {self.high}"]
        lines += [f"{g}: {words[f]}" for g, f in self._history]
        if self._done:
            lines.append(f"the secret was {self._secret}")
        return "\n".join(lines)

    def render(self) -> str | None:
        """The game so far as text: each guess and its feedback."""
        return render_text(self.render_mode, self._render_text() if self._secret is not None else "")


GuessNumberEnv.__doc__ = GuessNumberEnv.__doc__.replace("{doc}", _DOC)


class GuessNumberVectorEnv(TorchVectorEnv):
    """A batch of :class:`GuessNumberEnv` games as torch tensors on ``device``.

    Same rules, arguments and spaces as :class:`GuessNumberEnv`, plus ``num_envs``, ``device`` and
    ``max_episode_steps``. ``info`` holds ``guesses`` and ``success``, and ``secret`` where
    ``info["_secret"]`` is true (games that just ended).

    A policy reads the game as a sequence of feature vectors (:meth:`sequence`), its expert plays
    binary search, and :meth:`episode_metrics` reports ``mean_guesses``.
    """

    has_expert = True

    def __init__(
        self,
        num_envs: int = 1,
        low: int = 1,
        high: int = 100,
        max_guesses: int = 10,
        guess_penalty: float = 0.1,
        shaping: bool = False,
        possible_mask: bool = False,
        device: str | torch.device | None = None,
        max_episode_steps: int | None = None,
        autoreset_mode: str = "next_step",
        render_mode: str | None = None,
    ) -> None:
        super().__init__(num_envs, device, max_episode_steps, autoreset_mode)
        set_game(self, low, high, max_guesses, guess_penalty, shaping)
        self.possible_mask = check_possible_mask(possible_mask)
        self.render_mode = render_mode
        M, dev = self.max_guesses, self.device
        self._set_spaces(gym.spaces.Box(-1.0, 1.0, (observation_size(self),), dtype=np.float32),
                         gym.spaces.Discrete(self.high - self.low + 1))
        z = torch.zeros(num_envs, dtype=torch.int64, device=dev)
        self.secret, self.lo, self.hi, self.guesses = z.clone(), z.clone(), z.clone(), z.clone()
        self.history = torch.zeros(num_envs, M, 2, device=dev)  # (B, M, [guess, feedback]) scaled as in the obs
        self._slots = torch.arange(M, device=dev)
        self._numbers = torch.arange(self.high - self.low + 1, device=dev) / (self.high - self.low)  # scaled as in the obs

    def _start(self, mask, keys):
        self.secret = torch.where(mask, self.low + keys % (self.high - self.low + 1), self.secret)
        self.lo = torch.where(mask, self.low, self.lo)
        self.hi = torch.where(mask, self.high, self.hi)
        self.guesses = torch.where(mask, 0, self.guesses)
        empty = torch.tensor([-1.0, 0.0], device=self.device)
        self.history = torch.where(mask[:, None, None], empty, self.history)

    def _advance(self, actions, active):
        guess = self.low + actions
        correct = active & (guess == self.secret)
        n = self.high - self.low + 1
        before = potential(self.lo, self.hi, n)
        higher = self.secret > guess
        wrong = active & ~correct
        self.lo = torch.where(wrong & higher, torch.maximum(self.lo, guess + 1), self.lo)
        self.hi = torch.where(wrong & ~higher, torch.minimum(self.hi, guess - 1), self.hi)
        self.lo = torch.where(correct, guess, self.lo)
        self.hi = torch.where(correct, guess, self.hi)
        feedback = torch.where(correct, 0.0, torch.where(higher, HIGHER, LOWER))
        entry = torch.stack([(guess - self.low) / (self.high - self.low), feedback], dim=-1)  # (B, 2)
        write = active[:, None] & (self._slots == self.guesses[:, None])  # (B, M)
        self.history = torch.where(write[..., None], entry[:, None, :], self.history)
        self.guesses = self.guesses + active.long()
        terminated = correct | (active & (self.guesses >= self.max_guesses))
        if self.shaping:
            reward = torch.where(active, shaped_reward(correct.float(), before, potential(self.lo, self.hi, n), self.guess_penalty), 0.0)
        else:
            reward = torch.where(correct, 1.0, torch.where(active, -self.guess_penalty, 0.0))
        info = {"guesses": self.guesses.clone(), "success": correct, "secret": self.secret.clone(), "_secret": terminated}
        return reward, terminated, torch.zeros_like(terminated), info

    def _observe(self):
        n = self.high - self.low
        head = torch.stack([(self.lo - self.low) / n, (self.hi - self.low) / n,
                            (self.max_guesses - self.guesses) / self.max_guesses], dim=-1)
        parts = [head, self.history.flatten(1)]
        if self.possible_mask:
            numbers = torch.arange(self.low, self.high + 1, device=self.device)
            parts.append((numbers >= self.lo[:, None]) & (numbers <= self.hi[:, None]))
        return torch.cat([p.float() for p in parts], dim=1)

    # -- the env -> trainer protocol -------------------------------------------------------------
    def _longest_episode(self) -> int:
        return self.max_guesses

    @property
    def sequence_spec(self) -> SequenceSpec:
        return SequenceSpec(max_len=self.max_guesses + 1, vocab_size=0, n_features=4 + (self.high - self.low + 1))

    def sequence(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The game as a growing sequence of feature vectors, ``(B, M + 1, 4 + n)``, and its lengths.

        Position 0 is the start and position ``k`` the ``k``-th guess, each a feature vector
        ``[guess, feedback, lo, hi, possible_1 .. possible_n]``: the guess and feedback as in the
        observation, the interval still possible after it, and that interval as a 0/1 mask over the
        ``n`` numbers. The mask is what makes the game easy to learn: a linear head with weights
        ``-|a - b|`` from number ``b`` to action ``a`` already puts its argmax at the middle of the
        interval (binary search), where reading the midpoint from ``lo``/``hi`` alone needs very
        large weights to tell neighbouring numbers apart.
        """
        step = 1.0 / (self.high - self.low)
        end = 3 + 2 * self.max_guesses  # the history; a possible_mask after it is not read
        guess, feedback = obs[:, 3:end:2], obs[:, 4:end:2]  # (B, M)
        made = guess >= 0
        lo = torch.where(made & (feedback > 0), guess + step, 0.0).cummax(1).values
        hi = torch.where(made & (feedback < 0), guess - step, 1.0).cummin(1).values
        won = made & (feedback == 0)
        lo, hi = torch.where(won, guess, lo), torch.where(won, guess, hi)
        lo = torch.cat([torch.zeros_like(lo[:, :1]), lo], 1)  # (B, M + 1) with the start
        hi = torch.cat([torch.ones_like(hi[:, :1]), hi], 1)
        guess = torch.cat([torch.full_like(guess[:, :1], -1.0), guess * made], 1)
        feedback = torch.cat([torch.zeros_like(feedback[:, :1]), feedback * made], 1)
        tol = step / 2
        possible = (self._numbers >= lo[..., None] - tol) & (self._numbers <= hi[..., None] + tol)  # (B, M + 1, n)
        head = torch.stack([guess, feedback, lo, hi], dim=-1)
        return torch.cat([head, possible.float()], dim=-1), 1 + made.sum(1)

    def action_masks(self):
        """``(B, n)`` bool: the guesses that can still be right in each game (see :meth:`GuessNumberEnv.action_masks`)."""
        numbers = torch.arange(self.low, self.high + 1, device=self.device)
        return self._out((numbers >= self.lo[:, None]) & (numbers <= self.hi[:, None]))

    def expert(self, obs) -> torch.Tensor:
        """Binary search, read from the env's own interval."""
        return bisect_guess(self.lo, self.hi) - self.low

    def episode_metrics(self) -> dict[str, float]:
        """``mean_guesses``: guesses per game, lost games included."""
        return {"mean_guesses": float(self.guesses.float().mean())}
