"""Scripted players: the optimal or reference behaviour of each env, as a policy ``obs -> action``.

They set the ceiling a learned agent is measured against (binary search plays the guessing game
in 5.80 guesses on average over 1..100), check that an env rewards the right behaviour, and write
demonstrations for supervised fine-tuning.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from textgym.envs.guess_number import GuessNumberEnv
from textgym.envs.guess_number_text import GuessNumberTextEnv
from textgym.envs.token_generation import TokenGenerationEnv


def bisect_guess(lo: int, hi: int) -> int:
    """The middle of the interval of secrets still possible."""
    return (lo + hi) // 2


def guess_number_policy(env: GuessNumberEnv) -> Callable[[np.ndarray], int]:
    """Binary search on :class:`GuessNumberEnv`, reading the interval from ``obs[0]`` and ``obs[1]``."""
    low, span = env.low, env.high - env.low

    def policy(obs: np.ndarray) -> int:
        lo, hi = low + round(float(obs[0]) * span), low + round(float(obs[1]) * span)
        return bisect_guess(lo, hi) - low  # action a guesses low + a

    return policy


def guess_number_text_policy(env: GuessNumberTextEnv) -> Callable[[dict], int]:
    """Binary search in text: read the feedback lines of the transcript, write the next digit or eos."""
    tok = env.tokenizer

    def policy(obs: dict) -> int:
        ids = obs["input_ids"][obs["attention_mask"].astype(bool)]
        lines = tok.decode(ids).split("\n")
        lo, hi = env.low, env.high
        for line in lines[1:-1]:  # finished turns, "<guess>: <feedback>"
            guess, _, word = line.partition(": ")
            if word == "higher":
                lo = max(lo, int(guess) + 1)
            elif word == "lower":
                hi = min(hi, int(guess) - 1)
        target, written = str(bisect_guess(lo, hi)), lines[-1]
        if written == target:
            return tok.eos_id
        return tok.encode(target[len(written)])[0]

    return policy


def token_generation_policy(env: TokenGenerationEnv) -> Callable[[dict], int]:
    """The oracle: write the first reference of the current example, then eos."""

    def policy(obs: dict) -> int:
        reference = env.tokenizer.encode(env.current_example.references[0])
        written = int(obs["attention_mask"].sum()) - env.current_prompt_len
        return reference[written] if written < len(reference) else env.tokenizer.eos_id

    return policy


def scripted_policy(env: Any) -> Callable[[Any], int]:
    """The scripted policy for ``env`` (a textgym env, wrapped or not).

    Raises:
        TypeError: ``env`` is not a textgym env.
    """
    base = env.unwrapped
    for cls, make in ((GuessNumberEnv, guess_number_policy), (GuessNumberTextEnv, guess_number_text_policy),
                      (TokenGenerationEnv, token_generation_policy)):
        if isinstance(base, cls):
            return make(base)
    raise TypeError(f"no scripted policy for {type(base).__name__}: expected a textgym env")
