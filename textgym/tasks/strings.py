"""Procedural string tasks over an alphabet: copy, reverse and sort a random string."""

from __future__ import annotations

import torch

from textgym.seeding import draws
from textgym.tasks.core import (
    PAD_SYMBOL,
    SymbolTask,
    check_range,
)
from textgym.tokenizers import CharTokenizer


class StringTask(SymbolTask):
    """A random string over ``alphabet`` of length in ``[min_length, max_length]``, then ``=``."""

    def __init__(self, alphabet: str = "abcdef", min_length: int = 2, max_length: int = 6) -> None:
        check_range(f"{type(self).__name__} length", min_length, max_length, 1)
        CharTokenizer(alphabet)  # validates: non-empty, no repeated character
        if "=" in alphabet:
            raise ValueError("alphabet must not contain '=', which ends every prompt")
        self.letters = alphabet
        self.min_length, self.max_length = min_length, max_length
        self.symbols = alphabet + "="
        self._max_prompt_chars = max_length + 1
        self._max_reference_chars = max_length

    def _random_string(self, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Symbol indices ``(n, max_length)`` (-1 past each length) and the lengths ``(n,)``."""
        r = draws(keys, self.max_length + 1)
        span = self.max_length - self.min_length + 1
        length = self.min_length + r[:, 0] % span
        chars = r[:, 1:] % len(self.letters)
        pos = torch.arange(self.max_length, device=keys.device)
        return torch.where(pos < length[:, None], chars, PAD_SYMBOL), length

    def answer_alphabet(self) -> str:
        return self.letters

    def generate(self, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, length = self._random_string(keys)
        prompt = torch.cat([s, torch.full_like(s[:, :1], PAD_SYMBOL)], dim=1)
        prompt.scatter_(1, length[:, None], len(self.letters))  # "=" right after the string
        return prompt, self.transform(s, length)

    def transform(self, s: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        """The reference from the string ``s`` (symbol indices, -1 padded) and its length."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(alphabet={self.letters!r}, min_length={self.min_length}, "
            f"max_length={self.max_length})"
        )


class CopyTask(StringTask):
    """Copy the string: ``"abc="`` → ``"abc"``.

    Args:
        alphabet: the characters strings are drawn from.
        min_length: shortest string.
        max_length: longest string.
    """

    name = "copy"

    def transform(self, s: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        return s.clone()


class ReverseTask(StringTask):
    """Reverse the string: ``"abc="`` → ``"cba"``. Arguments as :class:`CopyTask`."""

    name = "reverse"

    def transform(self, s: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(s.shape[1], device=s.device)
        src = (length[:, None] - 1 - pos).clamp(min=0)
        return torch.where(pos < length[:, None], s.gather(1, src), PAD_SYMBOL)


class SortTask(StringTask):
    """Sort the characters in the order of ``alphabet``: ``"cab="`` → ``"abc"``. Arguments as :class:`CopyTask`."""

    name = "sort"

    def transform(self, s: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        big = len(self.letters)  # padding sorts last, then is put back to -1
        ordered = torch.where(s == PAD_SYMBOL, big, s).sort(dim=1).values
        return torch.where(ordered == big, PAD_SYMBOL, ordered)


