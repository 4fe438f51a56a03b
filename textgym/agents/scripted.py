"""Scripted players: the optimal or reference behaviour of each env, as a policy ``obs -> action``.

They set the ceiling a learned agent is measured against (binary search plays the guessing game
in 5.80 guesses on average over 1..100), check that an env rewards the right behaviour, and write
demonstrations for supervised fine-tuning.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from textgym.envs.guess_number import GuessNumberEnv, GuessNumberVectorEnv
from textgym.envs.guess_number_text import GuessNumberTextEnv, GuessNumberTextVectorEnv
from textgym.envs.token_generation import TokenGenerationEnv, TokenGenerationVectorEnv


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


def vector_expert(envs: Any) -> Callable[[Any], torch.Tensor]:
    """The scripted player for a whole textgym vector env, as tensor operations: ``obs -> actions (B,)``.

    It reads the env's own state (the references of the current examples, the interval of secrets
    still possible), which makes it a teacher for demonstrations rather than a fair player.
    """
    if isinstance(envs, GuessNumberVectorEnv):
        return lambda obs: (envs.lo + envs.hi) // 2 - envs.low

    if isinstance(envs, GuessNumberTextVectorEnv):
        tok = envs.tokenizer
        digit_ids = torch.tensor(tok.encode("0123456789"), device=envs.device)
        pow10 = 10 ** torch.arange(10, device=envs.device)

        def text_expert(obs: Any) -> torch.Tensor:
            target = (envs.lo + envs.hi) // 2
            n_digits = 1 + (target >= pow10[1:, None]).sum(0)  # digits of the target
            left = (n_digits - 1 - envs.digits).clamp(min=0)
            digit = (target // pow10[left]) % 10
            return torch.where(envs.digits < n_digits, digit_ids[digit], tok.eos_id)

        return text_expert

    if isinstance(envs, TokenGenerationVectorEnv):
        eos = envs.tokenizer.eos_id

        def oracle(obs: Any) -> torch.Tensor:
            ref, ref_len = envs.example.reference_ids[:, 0], envs.example.reference_len[:, 0]  # first reference
            t = envs.written_len.clamp(max=ref.shape[1] - 1)
            return torch.where(envs.written_len < ref_len, ref.gather(1, t[:, None]).squeeze(1), eos)

        return oracle
    raise TypeError(f"no scripted player for {type(envs).__name__}: expected a textgym vector env")
