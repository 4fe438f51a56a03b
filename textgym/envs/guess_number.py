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
    arguments_of,
    check_step,
    pop_arguments,
    render_text,
    where,
)

HIGHER, LOWER = 1.0, -1.0  # the observation's feedback entry: the secret is higher / lower than the guess


def _maximum(a, b):
    return torch.maximum(a, b) if isinstance(a, torch.Tensor) else max(a, b)


def _minimum(a, b):
    return torch.minimum(a, b) if isinstance(a, torch.Tensor) else min(a, b)


def bisect_guess(lo, hi):
    """The middle of the interval of secrets still possible (binary search's next guess); ints or tensors."""
    return (lo + hi) // 2


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


class GuessRules:
    """The guessing game's rules, stated once for both of its forms (numbers and text).

    Every method takes Python ints (a single env) or tensors with one entry per sub-env (a vector
    env) and returns the same kind. Arguments are checked here, with errors that name them.
    """

    def __init__(self, low: int = 1, high: int = 100, max_guesses: int = 10, guess_penalty: float = 0.1,
                 shaping: bool = False, text: bool = False) -> None:
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
        self.low, self.high, self.max_guesses = int(low), int(high), int(max_guesses)
        self.guess_penalty, self.shaping = float(guess_penalty), bool(shaping)
        self.n = self.high - self.low + 1  # how many secrets there are

    def secret(self, key, high=None):
        """The secret of the episode with this key (see :mod:`textgym.seeding`): uniform on ``[low, high]``
        (``high``: a lower top for this episode, an int or one per sub-env)."""
        return self.low + key % (self.n if high is None else high - self.low + 1)

    def judge(self, lo, hi, guess, secret, made):
        """One guess judged: ``(lo, hi, correct, reward)`` after it.

        ``[lo, hi]`` is the interval of secrets still possible; ``made`` says whether a valid guess
        was made (a guess the text game found invalid, or a sub-env between guesses, leaves the
        interval as it is). A right guess shrinks the interval to itself; "higher" moves ``lo``
        above the guess, "lower" moves ``hi`` below it. The reward of a made or invalid guess is
        +1 when right and ``-guess_penalty`` otherwise; with ``shaping`` it is the change in
        :func:`potential` less the penalty when wrong (the two pay the same for a won game).
        """
        correct = made & (guess == secret)
        higher = made & (secret > guess)
        lower = made & (secret < guess)
        before = potential(lo, hi, self.n) if self.shaping else 0.0
        lo = where(correct, guess, where(higher, _maximum(lo, guess + 1), lo))
        hi = where(correct, guess, where(lower, _minimum(hi, guess - 1), hi))
        if self.shaping:
            reward = potential(lo, hi, self.n) - before - where(correct, 0.0, self.guess_penalty)
        else:
            reward = where(correct, 1.0, -self.guess_penalty)
        return lo, hi, correct, reward

    def over(self, correct, guesses):
        """Whether the game has ended: a right guess, or ``max_guesses`` guesses made."""
        return correct | (guesses >= self.max_guesses)


class GuessGame:
    """The game's arguments as attributes of an env that holds its :class:`GuessRules` in ``game``."""

    game: GuessRules
    low = property(lambda self: self.game.low)
    high = property(lambda self: self.game.high)
    max_guesses = property(lambda self: self.game.max_guesses)
    guess_penalty = property(lambda self: self.game.guess_penalty)
    shaping = property(lambda self: self.game.shaping)


def check_possible_mask(possible_mask: Any) -> bool:
    if not isinstance(possible_mask, (bool, np.bool_)):
        raise ValueError(f"possible_mask must be true or false, got {possible_mask!r}")
    return bool(possible_mask)


def observation_size(env) -> int:
    """The interval, the guesses left, the history, and with ``possible_mask`` one entry per number."""
    return 3 + 2 * env.max_guesses + (env.high - env.low + 1) * env.possible_mask


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


class GuessNumberEnv(GuessGame, gym.Env):
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

    @arguments_of(GuessRules, skip=("text",))
    def __init__(self, *, possible_mask: bool = False, render_mode: str | None = None, **rules: Any) -> None:
        self.game = GuessRules(**rules)
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
        self._secret = self.game.secret(key)
        self._lo, self._hi = self.low, self.high
        self._history: list[tuple[int, float]] = []
        self._done = False
        return self._obs(), {"guesses": 0, "success": False}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        guess = self.low + check_step(self._secret is not None, self._done, action, self.action_space.n)
        self._lo, self._hi, correct, reward = self.game.judge(self._lo, self._hi, guess, self._secret, True)
        self._history.append((guess, 0.0 if correct else HIGHER if self._secret > guess else LOWER))
        guesses = len(self._history)
        self._done = self.game.over(correct, guesses)
        info: dict[str, Any] = {"guesses": guesses, "success": correct}
        if self._done:
            info["secret"], info["is_success"] = self._secret, correct
        if self.render_mode == "human":
            self.render()
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


class GuessNumberVectorEnv(GuessGame, TorchVectorEnv):
    """A batch of :class:`GuessNumberEnv` games as torch tensors on ``device``.

    Same rules, arguments and spaces as :class:`GuessNumberEnv`, plus ``num_envs``, ``device`` and
    ``max_episode_steps``. ``info`` holds ``guesses`` and ``success``, and ``secret`` where
    ``info["_secret"]`` is true (games that just ended).

    A policy reads the game as a sequence of feature vectors (:meth:`sequence`), its expert plays
    binary search, and :meth:`episode_metrics` reports ``mean_guesses``.
    """

    has_expert = True

    @arguments_of(GuessRules, TorchVectorEnv, skip=("text",))
    def __init__(self, num_envs: int = 1, *, possible_mask: bool = False, **kwargs: Any) -> None:
        super().__init__(num_envs, **pop_arguments(kwargs, TorchVectorEnv))
        self.game = GuessRules(**kwargs)
        self.possible_mask = check_possible_mask(possible_mask)
        M, dev = self.max_guesses, self.device
        self._set_spaces(gym.spaces.Box(-1.0, 1.0, (observation_size(self),), dtype=np.float32),
                         gym.spaces.Discrete(self.high - self.low + 1))
        z = torch.zeros(num_envs, dtype=torch.int64, device=dev)
        self.secret, self.lo, self.hi, self.guesses = z.clone(), z.clone(), z.clone(), z.clone()
        self.history = torch.zeros(num_envs, M, 2, device=dev)  # (B, M, [guess, feedback]) scaled as in the obs
        self._slots = torch.arange(M, device=dev)
        self._numbers = torch.arange(self.high - self.low + 1, device=dev) / (self.high - self.low)  # scaled as in the obs

    def _start(self, mask, keys):
        self.secret = torch.where(mask, self.game.secret(keys), self.secret)
        self.lo = torch.where(mask, self.low, self.lo)
        self.hi = torch.where(mask, self.high, self.hi)
        self.guesses = torch.where(mask, 0, self.guesses)
        empty = torch.tensor([-1.0, 0.0], device=self.device)
        self.history = torch.where(mask[:, None, None], empty, self.history)

    def _advance(self, actions, active):
        guess = self.low + actions
        self.lo, self.hi, correct, reward = self.game.judge(self.lo, self.hi, guess, self.secret, active)
        reward = torch.where(active, reward, 0.0)
        feedback = torch.where(correct, 0.0, torch.where(self.secret > guess, HIGHER, LOWER))
        entry = torch.stack([(guess - self.low) / (self.high - self.low), feedback], dim=-1)  # (B, 2)
        write = active[:, None] & (self._slots == self.guesses[:, None])  # (B, M)
        self.history = torch.where(write[..., None], entry[:, None, :], self.history)
        self.guesses = self.guesses + active.long()
        terminated = active & self.game.over(correct, self.guesses)
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
