"""Procedural arithmetic: add two numbers written in digits."""

from __future__ import annotations

import torch

from textgym.seeding import draws
from textgym.tasks.core import (
    PAD_SYMBOL,
    SymbolTask,
    check_range,
)


class AdditionTask(SymbolTask):
    """Add two non-negative integers: ``"12+7="`` → ``"19"``.

    Each operand has between ``min_digits`` and ``max_digits`` digits (no leading zeros), the digit
    count drawn uniformly first, then the number.

    Args:
        min_digits: fewest digits of an operand.
        max_digits: most digits of an operand (at most 9).
    """

    name = "addition"

    def __init__(self, min_digits: int = 1, max_digits: int = 3) -> None:
        check_range("AdditionTask digits", min_digits, max_digits, 1)
        if max_digits > 9:
            raise ValueError(f"AdditionTask: max_digits must be at most 9, got {max_digits}")
        self.min_digits, self.max_digits = min_digits, max_digits
        self.symbols = "0123456789+="
        self._max_prompt_chars = 2 * max_digits + 2
        self._max_reference_chars = max_digits + 1

    def generate(self, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r = draws(keys, 4)
        span = self.max_digits - self.min_digits + 1
        pow10 = 10 ** torch.arange(11, device=keys.device)
        nd = self.min_digits + r[:, :2] % span  # (n, 2) digit counts
        lo = torch.where(nd == 1, 0, pow10[nd - 1])
        a_b = lo + r[:, 2:] % (pow10[nd] - lo)  # (n, 2) the operands
        a, b = a_b[:, 0], a_b[:, 1]
        width = self._max_prompt_chars
        pos = torch.arange(width, device=keys.device)[None, :]
        na, nb = nd[:, :1], nd[:, 1:]
        prompt = torch.full((len(keys), width), PAD_SYMBOL, device=keys.device)
        prompt = _write_digits(prompt, pos, a[:, None], 0, na, pow10)
        prompt = torch.where(pos == na, 10, prompt)  # "+"
        prompt = _write_digits(prompt, pos, b[:, None], na + 1, nb, pow10)
        prompt = torch.where(pos == na + nb + 1, 11, prompt)  # "="
        total = (a + b)[:, None]
        nt = 1 + (total >= pow10[1:11]).sum(-1, keepdim=True)  # digits of the sum
        rpos = pos[:, : self._max_reference_chars]
        ref = torch.full((len(keys), self._max_reference_chars), PAD_SYMBOL, device=keys.device)
        ref = _write_digits(ref, rpos, total, 0, nt, pow10)
        return prompt, ref

    def __repr__(self) -> str:
        return f"AdditionTask(min_digits={self.min_digits}, max_digits={self.max_digits})"


def _write_digits(
    buf: torch.Tensor, pos: torch.Tensor, x: torch.Tensor, start: torch.Tensor | int, nd: torch.Tensor, pow10: torch.Tensor
) -> torch.Tensor:
    """Write the ``nd`` decimal digits of ``x`` into ``buf`` from column ``start`` (all per row)."""
    rel = pos - start
    inside = (rel >= 0) & (rel < nd)
    digit = (x // pow10[(nd - 1 - rel).clamp(min=0, max=10)]) % 10
    return torch.where(inside, digit, buf)


# --------------------------------------------------------------------------------------------
# Reviews: the RLHF teaching task
# --------------------------------------------------------------------------------------------

