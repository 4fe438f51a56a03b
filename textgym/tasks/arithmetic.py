"""Procedural arithmetic: add two numbers written in digits (:class:`AdditionTask`), or answer a
question about two numbers, in digits or in words, with held-out problems (:class:`ArithmeticTask`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from textgym.seeding import draws
from textgym.tasks.core import (
    PAD_SYMBOL,
    Example,
    SymbolTask,
    Task,
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

    def answer_alphabet(self) -> str:
        return "0123456789"

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


_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
         "seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> str:
    """``n`` (0 to 999) in English words: ``45`` → ``"forty-five"``, ``307`` → ``"three hundred seven"``."""
    if not 0 <= n <= 999:
        raise ValueError(f"number_words: expected 0 to 999, got {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else "-" + _ONES[n % 10])
    rest = n % 100
    return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + number_words(rest))


class ArithmeticTask(Task):
    """A question about two numbers: ``"What is 45 + 7?"`` → ``"52"`` (or, with ``words=True``,
    ``"What is forty-five plus seven?"`` → ``"52"``), with problems held out for evaluation.

    Every problem ``(a, operation, b)`` with ``a`` and ``b`` in their ranges is in exactly one
    split: a fixed permutation of all of them (the same on every machine) puts ``test_fraction``
    of them in ``"test"`` and the rest in ``"train"``; ``"all"`` draws from every problem. Train on
    ``split="train"`` and evaluate on ``split="test"`` to measure what a policy learned rather than
    what it saw. An episode's key picks a problem of its split uniformly.

    Args:
        a, b: ``[low, high]`` of the first and second number (integers in 0..999).
        operations: which of ``"+"``, ``"-"`` and ``"*"`` are asked (e.g. ``"+-"``).
        words: write the numbers and the operation in words.
        split: ``"train"``, ``"test"`` or ``"all"``.
        test_fraction: the share of problems in ``"test"`` (between 0 and 1).
    """

    name = "arithmetic"
    SPLITS = ("train", "test", "all")
    OPERATIONS = {"+": ("plus", lambda a, b: a + b), "-": ("minus", lambda a, b: a - b), "*": ("times", lambda a, b: a * b)}

    def __init__(self, a: Sequence[int] = (10, 99), b: Sequence[int] = (0, 9), operations: str = "+",
                 words: bool = False, split: str = "all", test_fraction: float = 0.2) -> None:
        for name, r in (("a", a), ("b", b)):
            if not (isinstance(r, (list, tuple)) and len(r) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                                                         for v in r) and 0 <= r[0] <= r[1] <= 999):
                raise ValueError(f"ArithmeticTask: {name} must be [low, high] with 0 <= low <= high <= 999, got {r!r}")
        if not isinstance(operations, str) or not operations or set(operations) - set(self.OPERATIONS) \
                or len(set(operations)) != len(operations):
            raise ValueError(f"ArithmeticTask: operations must be some of {''.join(self.OPERATIONS)!r}, each once, "
                             f"got {operations!r}")
        if split not in self.SPLITS:
            raise ValueError(f"ArithmeticTask: split must be one of {list(self.SPLITS)}, got {split!r}")
        if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
            raise ValueError(f"ArithmeticTask: test_fraction must be between 0 and 1, got {test_fraction!r}")
        if not isinstance(words, bool):
            raise ValueError(f"ArithmeticTask: words must be true or false, got {words!r}")
        self.a, self.b, self.operations = (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), operations
        self.words, self.split, self.test_fraction = words, split, float(test_fraction)
        self._na, self._nb = self.a[1] - self.a[0] + 1, self.b[1] - self.b[0] + 1
        n = len(operations) * self._na * self._nb
        order = torch.randperm(n, generator=torch.Generator().manual_seed(20261202))  # fixed: the same split everywhere
        n_test = max(1, min(n - 1, round(n * self.test_fraction))) if n > 1 else 0
        self._pool = {"test": order[:n_test], "train": order[n_test:], "all": torch.arange(n)}[split]
        if len(self._pool) == 0:
            raise ValueError(f"ArithmeticTask: split {split!r} holds no problem (a={a}, b={b}, operations={operations!r})")

    def __len__(self) -> int:
        """How many problems the split holds."""
        return len(self._pool)

    def problems(self, keys: Sequence[int]) -> list[tuple[int, str, int]]:
        """``(a, operation, b)`` of each episode key."""
        picks = draws(torch.tensor(list(keys), dtype=torch.int64), 1)[:, 0] % len(self._pool)
        out = []
        for index in self._pool[picks].tolist():
            index, b = divmod(index, self._nb)
            op, a = divmod(index, self._na)
            out.append((self.a[0] + a, self.operations[op], self.b[0] + b))
        return out

    def question(self, a: int, op: str, b: int) -> str:
        """The prompt of the problem ``a op b``."""
        if self.words:
            return f"What is {number_words(a)} {self.OPERATIONS[op][0]} {number_words(b)}?"
        return f"What is {a} {op} {b}?"

    def examples_for(self, keys: Sequence[int]) -> list[Example]:
        return [Example(self.question(a, op, b), (str(self.OPERATIONS[op][1](a, b)),)) for a, op, b in self.problems(keys)]

    def example(self, key: int) -> Example:
        return self.examples_for([key])[0]

    def alphabet(self) -> str:
        letters = "abcdefghijklmnopqrstuvwxyz-" if self.words else ""
        return "".join(sorted(set("What is ?0123456789-" + self.operations + letters)))

    def answer_alphabet(self) -> str:
        return "-0123456789"  # the answer is a whole number

    def max_prompt_tokens(self, tokenizer) -> int:
        # at most one token per character, for these ASCII questions
        longest = (lambda lo, hi: max(len(number_words(v)) for v in range(lo, hi + 1))) if self.words else \
            (lambda lo, hi: len(str(hi)))
        op = max(len(self.OPERATIONS[o][0]) for o in self.operations) if self.words else 1
        return len("What is  ?") + longest(*self.a) + 1 + op + longest(*self.b)

    def max_reference_tokens(self, tokenizer) -> int:
        results = [f(x, y) for o in self.operations for f in [self.OPERATIONS[o][1]]
                   for x in self.a for y in self.b]
        return max(len(str(v)) for v in results)

    def __repr__(self) -> str:
        return (f"ArithmeticTask(a={list(self.a)}, b={list(self.b)}, operations={self.operations!r}, "
                f"words={self.words}, split={self.split!r})")


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

