"""Code-breaking games written as text envs: Mastermind and Bulls and Cows.

Each is a plain ``gymnasium.Env`` whose observations and actions are strings (the text env
convention of ``textgym/MultiTurn-v0``, GEM and TextArena): ``reset`` gives the opening line, and
``step(guess)`` answers with the feedback line. ``textgym/Mastermind-v0`` and
``textgym/BullsAndCows-v0`` are the same games played token by token.

Both come with their expert (:meth:`CodeGame.expert`): a minimax player in the manner of Knuth
(1977), which chooses the guess whose worst-case feedback leaves the fewest codes still possible.
"""

from __future__ import annotations

import itertools
from functools import cache
from typing import Any

import gymnasium as gym
import numpy as np

from textgym.config import NON_NEGATIVE, POSITIVE_INT
from textgym.envs.core import RENDER_MODES, render_text

INVALID_REPLY = " invalid\n"


def _feedback_table(codes: np.ndarray, n_symbols: int) -> np.ndarray:
    """``table[g, s]``: the feedback of guess ``g`` against secret ``s``, coded ``blacks * (P + 1) + whites``.

    Blacks are right symbols in the right place; whites are right symbols in the wrong place (the
    common symbols, counted with multiplicity, less the blacks).
    """
    P = codes.shape[1]
    counts = np.stack([(codes == v).sum(1) for v in range(n_symbols)], 1).astype(np.int16)  # (N, V)
    table = np.empty((len(codes), len(codes)), dtype=np.int8)
    for lo in range(0, len(codes), 512):  # in chunks: the (chunk, N, V) minimum stays small
        g = slice(lo, lo + 512)
        blacks = (codes[g, None, :] == codes[None, :, :]).sum(-1)
        common = np.minimum(counts[g, None, :], counts[None, :, :]).sum(-1)
        table[g] = blacks * (P + 1) + (common - blacks)
    return table


class MinimaxSolver:
    """Knuth's minimax strategy for a code-breaking game, with its decisions cached by history.

    Each guess minimises, over the guess ``pool``, the size of the largest set of codes still
    possible after its feedback; ties go to a code that is still possible, then to the first in
    order. Knuth's first guess for Mastermind is ``1122``.

    Args:
        codes: every code, ``(N, pegs)`` of symbol indices, in order.
        n_symbols: symbols per peg.
        first_guess: index of the opening guess.
        pool: ``"all"`` (Knuth: any code may be guessed) or ``"candidates"`` (only codes still
            possible; much cheaper when there are many codes).
    """

    def __init__(self, codes: np.ndarray, n_symbols: int, first_guess: int, pool: str = "all") -> None:
        self.codes, self.first_guess, self.pool = codes, first_guess, pool
        self.table = _feedback_table(codes, n_symbols)
        self.index = {tuple(int(v) for v in code): i for i, code in enumerate(codes)}
        self.n_feedback = (codes.shape[1] + 1) ** 2
        self._cache: dict[tuple[tuple[int, int], ...], int] = {}

    def next_guess(self, history: tuple[tuple[int, int], ...]) -> int:
        """The index of the next guess after ``history``, a tuple of ``(guess index, feedback code)``."""
        if history in self._cache:
            return self._cache[history]
        if not history:
            return self.first_guess
        possible = np.ones(len(self.codes), dtype=bool)
        for g, fb in history:
            possible &= self.table[g] == fb
        candidates = np.flatnonzero(possible)
        if len(candidates) <= 2:
            guess = int(candidates[0])
        else:
            pool = np.arange(len(self.codes)) if self.pool == "all" else candidates
            fb = self.table[np.ix_(pool, candidates)]  # (|pool|, |candidates|)
            worst = np.stack([(fb == k).sum(1) for k in range(self.n_feedback)], 1).max(1)
            best = np.flatnonzero(worst == worst.min())
            preferred = best[possible[pool[best]]]
            guess = int(pool[preferred[0] if len(preferred) else best[0]])
        self._cache[history] = guess
        return guess


@cache
def _solver(game: str) -> MinimaxSolver:
    if game == "mastermind":
        codes = np.array(list(itertools.product(range(6), repeat=4)))
        return MinimaxSolver(codes, 6, first_guess=int(np.flatnonzero((codes == [0, 0, 1, 1]).all(1))[0]), pool="all")
    codes = np.array(list(itertools.permutations(range(10), 4)))
    return MinimaxSolver(codes, 10, first_guess=0, pool="candidates")


class CodeGame(gym.Env):
    """Shared rules of the code-breaking text games (see :class:`Mastermind` and :class:`BullsAndCows`)."""

    metadata = {"render_modes": RENDER_MODES}
    game: str
    symbols: str
    opening: str
    marks: tuple[str, str]
    distinct: bool

    def __init__(self, max_guesses: int = 10, guess_penalty: float = 0.1, render_mode: str | None = None) -> None:
        if not POSITIVE_INT.ok(max_guesses):
            raise ValueError(f"max_guesses must be a positive integer, got {max_guesses!r}")
        if not NON_NEGATIVE.ok(guess_penalty):
            raise ValueError(f"guess_penalty must be a finite number >= 0, got {guess_penalty!r}")
        self.max_guesses, self.guess_penalty, self.render_mode = max_guesses, float(guess_penalty), render_mode
        self.max_turns = max_guesses  # MultiTurn-v0 reads it
        self.pegs = 4
        reply_chars = "".join(sorted(set("0123456789" + "".join(self.marks) + " \n" + INVALID_REPLY + self.opening)))
        self.observation_space = gym.spaces.Text(max_length=max(len(self.opening), len(INVALID_REPLY)), charset=reply_chars)
        self.action_space = gym.spaces.Text(max_length=self.pegs, charset=self.symbols)
        self._secret: tuple[int, ...] | None = None
        self._lines: list[str] = []

    def _draw_secret(self) -> tuple[int, ...]:
        rng = self.np_random
        if self.distinct:
            return tuple(int(i) for i in rng.permutation(len(self.symbols))[: self.pegs])
        return tuple(int(i) for i in rng.integers(0, len(self.symbols), self.pegs))

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        self._secret = self._draw_secret()
        self._history: list[tuple[tuple[int, ...], int]] = []  # (code, feedback code) of the valid guesses
        self._guesses = 0
        self._lines = [self.opening]
        return self.opening, {"guesses": 0, "success": False}

    def _parse(self, message: str) -> tuple[int, ...] | None:
        if len(message) != self.pegs or any(ch not in self.symbols for ch in message):
            return None
        code = tuple(self.symbols.index(ch) for ch in message)
        return None if self.distinct and len(set(code)) < self.pegs else code

    def step(self, message: str) -> tuple[str, float, bool, bool, dict]:
        if self._secret is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        if not isinstance(message, str):
            raise ValueError(f"{type(self).__name__} takes a guess as a string, got {type(message).__name__}")
        self._guesses += 1
        code = self._parse(message)
        if code is None:
            reply, solved = INVALID_REPLY, False
        else:
            blacks = sum(a == b for a, b in zip(code, self._secret))
            common = sum(min(code.count(v), self._secret.count(v)) for v in set(code))
            reply, solved = f" {blacks}{self.marks[0]}{common - blacks}{self.marks[1]}\n", blacks == self.pegs
            self._history.append((code, blacks * (self.pegs + 1) + common - blacks))
        self._lines.append(message + reply)
        terminated = solved or self._guesses >= self.max_guesses
        info: dict[str, Any] = {"guesses": self._guesses, "success": solved}
        if terminated:
            info["is_success"] = solved
            info["secret"] = "".join(self.symbols[i] for i in self._secret)
        return reply, 1.0 if solved else -self.guess_penalty, terminated, False, info

    def expert(self) -> str:
        """The minimax player's next guess, from the valid guesses so far and their feedback."""
        solver = _solver(self.game)
        history = tuple((solver.index[code], fb) for code, fb in self._history)
        return "".join(self.symbols[i] for i in solver.codes[solver.next_guess(history)])

    def render(self) -> str | None:
        """The game so far: the opening line, then each guess and its feedback."""
        return render_text(self.render_mode, "".join(self._lines))


class Mastermind(CodeGame):
    """Mastermind as a text game: find a secret code of 4 pegs over 6 colours.

    ## Description

    The secret is 4 pegs, each one of 6 colours written `1`..`6` (repeats allowed). Each guess is
    answered with its black pegs (right colour, right place) and white pegs (right colour, wrong
    place): guessing `1122` against the secret `1213` reads `1122 1b2w`. Optimal play needs 4.340
    guesses on average (Koyama and Lai, 1993); Knuth's minimax strategy (1977), which the expert
    plays, never needs more than 5 and averages 4.476.

    ## Action Space

    `Text(max_length=4, charset="123456")`: the guess. Anything else (a wrong length or another
    character) is answered `" invalid"` and costs a guess.

    ## Observation Space

    `Text`: the opening line `"pegs 1-6\\n"`, then after each guess its feedback
    `" {blacks}b{whites}w\\n"`.

    ## Rewards

    +1 for the guess that finds the code, `-guess_penalty` (default 0.1) for every other guess, so
    a code found in `k` guesses returns `1 - guess_penalty * (k - 1)`.

    ## Episode End

    * Termination: the code is found, or `max_guesses` guesses were made.
    * Truncation: none.

    `info` holds `guesses` and `success`; at the end `is_success` and the `secret`.

    ## Arguments

    * `max_guesses`: guesses allowed (default 10).
    * `guess_penalty`: the cost of a wrong guess (default 0.1).
    * `render_mode`: `"ansi"` (the game as text), `"human"` or `"rgb_array"` (the text as an image, for video wrappers).

    ## Version History

    * v0: initial version.
    """

    game, symbols, opening, marks, distinct = "mastermind", "123456", "pegs 1-6\n", ("b", "w"), False


class BullsAndCows(CodeGame):
    """Bulls and Cows as a text game: find a secret of 4 different digits.

    ## Description

    The secret is 4 different digits `0`..`9`. Each guess, itself 4 different digits, is answered
    with its bulls (right digit, right place) and cows (right digit, wrong place): guessing `0123`
    against `0312` reads `0123 1b3c`. Optimal play needs 5.213 guesses on average and never more
    than 7 (Koyama and Lai, 1993). The expert plays minimax over the codes still possible.

    ## Action Space

    `Text(max_length=4, charset="0123456789")`: the guess. A wrong length, a repeated digit or
    another character is answered `" invalid"` and costs a guess.

    ## Observation Space

    `Text`: the opening line `"4 digits\\n"`, then after each guess its feedback
    `" {bulls}b{cows}c\\n"`.

    ## Rewards

    +1 for the guess that finds the secret, `-guess_penalty` (default 0.1) for every other guess.

    ## Episode End

    * Termination: the secret is found, or `max_guesses` guesses were made.
    * Truncation: none.

    `info` holds `guesses` and `success`; at the end `is_success` and the `secret`.

    ## Arguments

    * `max_guesses`: guesses allowed (default 10).
    * `guess_penalty`: the cost of a wrong guess (default 0.1).
    * `render_mode`: `"ansi"` (the game as text), `"human"` or `"rgb_array"` (the text as an image, for video wrappers).

    ## Version History

    * v0: initial version.
    """

    game, symbols, opening, marks, distinct = "bulls_and_cows", "0123456789", "4 digits\n", ("b", "c"), True


TEXT_GAMES: dict[str, type[gym.Env]] = {"mastermind": Mastermind, "bulls_and_cows": BullsAndCows}
"""The built-in text games, by the short name ``textgym/MultiTurn-v0`` accepts as ``text_env``."""
