"""Guess the secret number in text: the agent writes digits, the env writes its feedback as text."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from textgym.envs.core import (
    RENDER_MODES,
    EpisodeKeys,
    TorchVectorEnv,
    arguments_of,
    check_step,
    pad_to,
    pop_arguments,
    render_text,
    token_observation_space,
    where,
)
from textgym.envs.guess_number import GuessGame, GuessRules, bisect_guess
from textgym.tokenizers import CharTokenizer

# The feedback's codes (indices into FEEDBACK); SAYS_NOTHING: the guess is not finished yet.
SAYS_NOTHING, SAYS_HIGHER, SAYS_LOWER, SAYS_CORRECT, SAYS_INVALID = range(5)
FEEDBACK = ("", ": higher\n", ": lower\n", ": correct\n", ": invalid\n")


def feedback_code(valid, correct, higher):
    """The feedback to a finished guess (ints or tensors): SAYS_INVALID, SAYS_CORRECT, SAYS_HIGHER or SAYS_LOWER."""
    return where(valid, where(correct, SAYS_CORRECT, where(higher, SAYS_HIGHER, SAYS_LOWER)), SAYS_INVALID)


def rules_line(low: int, high: int) -> str:
    return f"guess {low}-{high}\n"


def game_tokenizer(low: int, high: int) -> CharTokenizer:
    """The character tokenizer of the game: digits plus every character of the rules and feedback."""
    chars = set("0123456789" + rules_line(low, high) + "".join(FEEDBACK))
    return CharTokenizer("".join(sorted(chars)))


class GameText:
    """The text form of a game: token ids of the rules and feedback, and the transcript bound."""

    def __init__(self, low: int, high: int, max_guesses: int, action_mask: bool = False) -> None:
        if not isinstance(action_mask, (bool, np.bool_)):
            raise ValueError(f"action_mask must be true or false, got {action_mask!r}")
        self.tokenizer = tok = game_tokenizer(low, high)
        self.rules = tok.encode(rules_line(low, high))
        self.feedback = [tok.encode(f) for f in FEEDBACK]
        self.max_digits = len(str(high))
        self.digit_of = {tok.encode(str(d))[0]: d for d in range(10)}
        # Longest turn: max_digits digits, then eos or a wrong token, then the longest feedback.
        self.max_len = len(self.rules) + max_guesses * (self.max_digits + 1 + max(map(len, self.feedback)))
        # The tokens a guess is written with (the digits and eos): with `action_mask`, the only ones a policy may write.
        self.action_mask = bool(action_mask)
        self.guess_tokens = np.zeros(tok.vocab_size, dtype=bool)
        self.guess_tokens[[*self.digit_of, tok.eos_id]] = True


class GuessNumberTextEnv(GuessGame, gym.Env):
    """The number-guessing game played in text: read the transcript, write your guess as digits.

    ## Description

    The bridge between games and language. The transcript starts with the rules line, e.g.
    `"guess 1-100\\n"`. The agent writes its guess one character at a time (`"5"`, `"0"`) and ends
    it with the eos token; the env then writes the feedback `": higher\\n"`, `": lower\\n"`,
    `": correct\\n"` or `": invalid\\n"`. A won game reads (eos not shown):

        guess 1-100
        50: higher
        75: lower
        62: correct

    A guess is invalid, and costs a guess, when it is out of `[low, high]`, has no digit, has more
    digits than `high`, or contains any token other than a digit before the eos (the guess ends at
    that token).

    ## Action Space

    `Discrete(vocab_size)`: the next token of the game's `CharTokenizer` (digits, eos, and the
    characters of the rules and feedback). `env.unwrapped.tokenizer` maps text to ids.

    ## Observation Space

    `Dict(input_ids=Box(0, vocab_size - 1, (max_len,), int64), attention_mask=Box(0, 1, (max_len,), int8))`:
    the transcript's token ids so far (the agent's eos tokens included), right-padded; `max_len`
    fits the longest possible game.

    ## Rewards

    +1 when a guess is right, `-guess_penalty` (default 0.1) when a guess is wrong or invalid, 0
    for the tokens in between. A game won in `k` guesses returns `1 - guess_penalty * (k - 1)`.
    `shaping=True` pays the +1 as information on every guess, exactly as in GuessNumber-v0.

    ## Episode End

    * Termination: a right guess, or `max_guesses` guesses made (invalid ones count).
    * Truncation: none.

    `info` holds `guesses`, `invalid` (how many were invalid) and `success`; at the end `secret`
    and `is_success`.

    ## Arguments

    * `low`, `high`: the secret is drawn uniformly from `[low, high]` (default 1..100; `low >= 0`).
    * `max_guesses`: guesses allowed (default 10).
    * `guess_penalty`: the cost of a wrong or invalid guess (default 0.1).
    * `shaping`: pay the win as information on every guess (default False; see GuessNumber-v0).
    * `action_mask`: declare the digits and eos as the only tokens to write (default False):
      `env.action_masks()` returns them for sb3-contrib's MaskablePPO, and textgym's trainers,
      evaluation and `play` sample only those (the vector env's `allowed_actions`). The rules stay
      the same: a number out of range or with too many digits is still invalid.
    * `render_mode`: `"ansi"` (the transcript), `"human"` (printed) or `"rgb_array"` (the text as an image, for video wrappers).

    ## Version History

    * v0: initial version.
    """

    metadata = {"render_modes": RENDER_MODES, "render_fps": 4}

    @arguments_of(GuessRules, skip=("text",))
    def __init__(self, *, render_mode: str | None = None, action_mask: bool = False, **rules: Any) -> None:
        self.game = GuessRules(**rules, text=True)
        self.render_mode = render_mode
        self.text = GameText(self.low, self.high, self.max_guesses, action_mask)
        self.tokenizer = self.text.tokenizer
        self.action_space = gym.spaces.Discrete(self.tokenizer.vocab_size)
        self.observation_space = token_observation_space(self.text.max_len, self.tokenizer.vocab_size)
        self._keys = EpisodeKeys()
        self._secret: int | None = None
        self._done = True

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        key = self._keys.next(seed, self.np_random)
        self._secret = self.game.secret(key)
        self._transcript = list(self.text.rules)
        self._digits: list[int] = []
        self._guesses = self._invalid = 0
        self._lo, self._hi = self.low, self.high
        self._done = False
        return self._obs(), self._info(False)

    def _info(self, success: bool) -> dict:
        return {"guesses": self._guesses, "invalid": self._invalid, "success": success}

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        token = check_step(self._secret is not None, self._done, action, self.action_space.n)
        self._transcript.append(token)
        digit = self.text.digit_of.get(token)
        reward, success = 0.0, False
        if digit is not None and len(self._digits) < self.text.max_digits:
            self._digits.append(digit)
        else:  # the guess ends: an eos, a digit too many, or any other token
            guess = int("".join(map(str, self._digits))) if self._digits else -1
            valid = token == self.tokenizer.eos_id and self.low <= guess <= self.high
            self._lo, self._hi, success, reward = self.game.judge(self._lo, self._hi, guess, self._secret, valid)
            self._transcript += self.text.feedback[feedback_code(valid, success, self._secret > guess)]
            self._digits = []
            self._guesses += 1
            self._invalid += not valid
        self._done = self.game.over(success, self._guesses)
        info = self._info(success)
        if self._done:
            info["secret"], info["is_success"] = self._secret, success
        if self.render_mode == "human":
            self.render()
        return self._obs(), reward, self._done, False, info

    def _obs(self) -> dict[str, np.ndarray]:
        return pad_to(self._transcript, self.text.max_len, self.tokenizer.pad_id)

    def action_masks(self) -> np.ndarray:
        """``(vocab_size,)`` bool: the tokens the agent may write, for sb3-contrib's MaskablePPO: the
        digits and eos with ``action_mask=True``, every token otherwise."""
        return self.text.guess_tokens.copy() if self.text.action_mask else np.ones(self.action_space.n, dtype=bool)

    def expert(self, obs: dict) -> int:
        """Binary search in text: the next digit of the middle of the interval still possible, or eos."""
        target = str(bisect_guess(self._lo, self._hi))
        written = "".join(map(str, self._digits))
        if written == target:
            return self.tokenizer.eos_id
        return self.tokenizer.encode(target[len(written)])[0]

    def render(self) -> str | None:
        """The transcript so far (eos tokens not shown)."""
        return render_text(self.render_mode, self.tokenizer.decode(self._transcript) if self._secret is not None else "")


class GuessNumberTextVectorEnv(GuessGame, TorchVectorEnv):
    """A batch of :class:`GuessNumberTextEnv` games as torch tensors on ``device``.

    Same rules, arguments and spaces as :class:`GuessNumberTextEnv`, plus ``num_envs``, ``device``
    and ``max_episode_steps``. Parsing digits and writing feedback are tensor operations on the
    whole batch. ``info`` holds ``guesses``, ``invalid``, ``success``, and ``secret`` where
    ``info["_secret"]`` is true. Its expert plays binary search in digits; :meth:`episode_metrics`
    reports ``mean_guesses`` and ``invalid_guesses``.

    Its difficulty knob (for a curriculum) is the range: level ``k`` draws the secret from
    ``low..low + 2**(k + 2) - 1`` (``guess 1-8``, ``guess 1-16``, ...), the top level from
    ``low..high``; ``tops`` lists each level's highest secret.
    """

    has_expert = True

    @arguments_of(GuessRules, TorchVectorEnv, skip=("text",))
    def __init__(self, num_envs: int = 1, *, action_mask: bool = False, **kwargs: Any) -> None:
        super().__init__(num_envs, **pop_arguments(kwargs, TorchVectorEnv))
        self.game = GuessRules(**kwargs, text=True)
        self.text = text = GameText(self.low, self.high, self.max_guesses, action_mask)
        self.tokenizer = tok = text.tokenizer
        self._set_spaces(token_observation_space(text.max_len, tok.vocab_size), gym.spaces.Discrete(tok.vocab_size))
        B, dev = num_envs, self.device
        width = max(map(len, text.feedback))
        self.tokens_per_step = 1 + width  # the agent's token, then the feedback
        self._fb_ids = torch.full((len(FEEDBACK), width), tok.pad_id, dtype=torch.int64, device=dev)
        for code, ids in enumerate(text.feedback):
            self._fb_ids[code, : len(ids)] = torch.tensor(ids, dtype=torch.int64)
        self._fb_len = torch.tensor([len(ids) for ids in text.feedback], device=dev)
        self._digit_ids = torch.tensor(tok.encode("0123456789"), device=dev)  # the expert writes these
        if text.action_mask:
            self.allowed_actions = torch.as_tensor(text.guess_tokens, device=dev)
        self._pow10 = 10 ** torch.arange(10, device=dev)
        self._digit_value = torch.full((tok.vocab_size,), -1, dtype=torch.int64, device=dev)
        for token, d in text.digit_of.items():
            self._digit_value[token] = d
        # The transcript buffer has `width` spare columns so feedback is written without clipping.
        self.transcript = torch.full((B, text.max_len + width), tok.pad_id, dtype=torch.int64, device=dev)
        # The difficulty knob: level k plays on low..tops[k - 1], the top level on low..high.
        self.tops = [self.low - 1 + 2**k for k in range(3, 64) if 2**k < self.game.n] + [self.high]
        self.difficulties = range(1, len(self.tops) + 1)
        self._difficulty = len(self.tops)
        rules = [tok.encode(rules_line(self.low, top)) for top in self.tops]
        self._rules = torch.full((len(rules), len(rules[-1])), tok.pad_id, dtype=torch.int64, device=dev)
        for k, ids in enumerate(rules):
            self._rules[k, : len(ids)] = torch.tensor(ids, dtype=torch.int64)
        self._rules_len = torch.tensor([len(ids) for ids in rules], device=dev)
        self._tops = torch.tensor(self.tops, device=dev)
        z = torch.zeros(B, dtype=torch.int64, device=dev)
        self.length, self.secret, self.value, self.digits, self.guesses, self.invalid = (z.clone() for _ in range(6))
        self.lo, self.hi = z + self.low, z + self.high  # the secrets still possible
        self.top = z + self.high  # each game's highest secret (its level's)
        self._cols = torch.arange(self.transcript.shape[1], device=dev)

    def _apply_difficulty(self, level: int) -> None:
        """Nothing to do now: :meth:`_start` reads :attr:`difficulty`. Games that start from now on are
        played on ``low..tops[level - 1]`` (their rules line says so),
        with the top level's digit limit; with ``shaping``, the information is valued against the top
        level's range, so a won game at a lower level is paid less."""

    def _start(self, mask, keys):
        level = self.levels - 1  # each game's level (one for all, unless a curriculum draws them)
        R, top = self._rules_len[level], self._tops[level]
        self.transcript = torch.where(mask[:, None], self.tokenizer.pad_id, self.transcript)
        width = self._rules.shape[1]
        self.transcript[:, :width] = torch.where(mask[:, None], self._rules[level], self.transcript[:, :width])
        self.length = torch.where(mask, R, self.length)
        self.secret = torch.where(mask, self.game.secret(keys, top), self.secret)
        for name in ("value", "digits", "guesses", "invalid"):
            setattr(self, name, torch.where(mask, 0, getattr(self, name)))
        self.lo = torch.where(mask, self.low, self.lo)
        self.hi = torch.where(mask, top, self.hi)
        self.top = torch.where(mask, top, self.top)

    def _write(self, tokens: torch.Tensor, count: torch.Tensor) -> None:
        """Append the first ``count`` of ``tokens`` (B, W) to each transcript."""
        offset = torch.arange(tokens.shape[1], device=self.device)
        pos = self.length[:, None] + offset  # (B, W)
        keep = offset < count[:, None]
        old = self.transcript.gather(1, pos)
        self.transcript.scatter_(1, pos, torch.where(keep, tokens, old))
        self.length = self.length + count

    def _advance(self, actions, active):
        self._write(actions[:, None], active.long())
        d = self._digit_value[actions]
        is_digit = active & (d >= 0) & (self.digits < self.text.max_digits)
        self.value = torch.where(is_digit, self.value * 10 + d, self.value)
        self.digits = self.digits + is_digit.long()
        ends = active & ~is_digit  # anything but an accepted digit ends the guess
        is_eos = actions == self.tokenizer.eos_id
        valid = ends & is_eos & (self.digits > 0) & (self.value >= self.low) & (self.value <= self.top)
        self.lo, self.hi, correct, reward = self.game.judge(self.lo, self.hi, self.value, self.secret, valid)
        reward = torch.where(ends, reward, 0.0)
        feedback = torch.where(ends, feedback_code(valid, correct, self.secret > self.value), SAYS_NOTHING)
        self._write(self._fb_ids[feedback], self._fb_len[feedback])
        self.guesses = self.guesses + ends.long()
        self.invalid = self.invalid + (feedback == SAYS_INVALID).long()
        self.value = torch.where(ends, 0, self.value)
        self.digits = torch.where(ends, 0, self.digits)
        terminated = ends & self.game.over(correct, self.guesses)
        info = {"guesses": self.guesses.clone(), "invalid": self.invalid.clone(), "success": correct,
                "secret": self.secret.clone(), "_secret": terminated}
        return reward, terminated, torch.zeros_like(terminated), info

    def _observe(self):
        L = self.text.max_len
        inside = self._cols[:L] < self.length[:, None]
        return {"input_ids": self.transcript[:, :L].clone(), "attention_mask": inside.to(torch.int8)}

    # -- the env -> trainer protocol -------------------------------------------------------------
    def _longest_episode(self) -> int:
        return self.max_guesses * (self.text.max_digits + 1)

    def expert(self, obs) -> torch.Tensor:
        """Binary search in digits, read from the env's own interval and the digits written so far."""
        target = bisect_guess(self.lo, self.hi)
        n_digits = 1 + (target >= self._pow10[1:, None]).sum(0)  # digits of the target
        left = (n_digits - 1 - self.digits).clamp(min=0)
        digit = (target // self._pow10[left]) % 10
        return torch.where(self.digits < n_digits, self._digit_ids[digit], self.tokenizer.eos_id)

    def episode_metrics(self) -> dict[str, float]:
        """``mean_guesses`` (lost games included) and ``invalid_guesses`` per game."""
        return {"mean_guesses": float(self.guesses.float().mean()), "invalid_guesses": float(self.invalid.float().mean())}

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        return "\n---\n".join(self.tokenizer.decode(row[:n]) for row, n in zip(self.transcript.tolist(), self.length.tolist()))
