"""Tasks: sources of ``(prompt, references)`` examples.

A task maps an integer *key* (see :mod:`textgym.seeding`) to an :class:`Example`; the env draws
one key per episode from its seed, so the same seed gives the same examples.

Built in:

* procedural character tasks, generated from the key: :class:`CopyTask`, :class:`ReverseTask`,
  :class:`SortTask`, :class:`AdditionTask` (``"12+7="`` → ``"19"``);
* :class:`ReviewTask`: short reviews under a template grammar (``"tea:"`` → ``"tea is very good"``),
  the built-in RLHF teaching task;
* :class:`ListTask`: examples from a Python list, a JSONL file (:meth:`ListTask.from_jsonl`) or a
  Hugging Face ``datasets`` split (:meth:`ListTask.from_hf_dataset`).

A task of your own subclasses :class:`Task` and implements :meth:`Task.example`. Envs call
:meth:`Task.encode` to turn a batch of keys into padded token-id tensors; the built-in tasks do
that as tensor operations (no Python loop over the batch), the default loops over
:meth:`Task.example`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from textgym.names import resolve, split_name
from textgym.seeding import draws
from textgym.tokenizers import CharTokenizer, Tokenizer, alphabet_of


@dataclass(frozen=True)
class Example:
    """One example: the prompt the agent reads and the completions that count as right."""

    prompt: str
    references: tuple[str, ...]


@dataclass
class EncodedExamples:
    """A batch of examples as right-padded token ids.

    Attributes:
        prompt_ids: ``(n, P)`` int64, padded with the tokenizer's pad id.
        prompt_len: ``(n,)`` number of prompt tokens.
        reference_ids: ``(n, R, L)`` int64: up to ``R`` references per example, each cut to ``L``
            tokens (a completion longer than ``L`` cannot be produced by the env anyway).
        reference_len: ``(n, R)`` the *full* token length of each reference; ``-1`` where an
            example has fewer than ``R`` references.
    """

    prompt_ids: torch.Tensor
    prompt_len: torch.Tensor
    reference_ids: torch.Tensor
    reference_len: torch.Tensor


class Task:
    """Base class of tasks. Subclasses implement :meth:`example`.

    Attributes:
        name: short name, shown by ``textgym list`` and in errors.
        max_references: the most references any example has.
    """

    name: str = "task"
    max_references: int = 1

    def example(self, key: int) -> Example:
        """The example for ``key`` (an int in ``[0, 2**32)``); the same key gives the same example."""
        raise NotImplementedError

    def examples_for(self, keys: Sequence[int]) -> list[Example]:
        """The examples for many keys (a task may make them in one batch)."""
        return [self.example(int(k)) for k in keys]

    def alphabet(self) -> str | None:
        """Every character the task's prompts and references use, or ``None`` if open-ended.

        Envs build their default :class:`~textgym.tokenizers.CharTokenizer` from it.
        """
        return None

    def max_prompt_tokens(self, tokenizer: Tokenizer) -> int | None:
        """An upper bound on the prompt length in tokens, or ``None`` if unknown."""
        return None

    def max_reference_tokens(self, tokenizer: Tokenizer) -> int | None:
        """An upper bound on the reference length in tokens, or ``None`` if unknown."""
        return None

    def text_metrics(self, prompts: Sequence[str], completions: Sequence[str]) -> dict[str, float]:
        """Task-specific means over finished episodes, reported by evaluations (none by default)."""
        return {}

    def encode(
        self, keys: torch.Tensor, tokenizer: Tokenizer, prompt_capacity: int, reference_capacity: int
    ) -> EncodedExamples:
        """Encode the examples of ``keys`` (int64 ``(n,)``) into tensors on ``keys.device``.

        Raises:
            ValueError: a prompt longer than ``prompt_capacity`` tokens.
        """
        examples = [self.example(int(k)) for k in keys.tolist()]
        return _encode_examples(
            examples, tokenizer, prompt_capacity, reference_capacity, self.max_references, keys.device, self.name
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _encode_examples(
    examples: Sequence[Example],
    tokenizer: Tokenizer,
    prompt_capacity: int,
    reference_capacity: int,
    max_references: int,
    device: torch.device,
    task_name: str,
) -> EncodedExamples:
    n, pad = len(examples), tokenizer.pad_id
    prompt_ids = torch.full((n, prompt_capacity), pad, dtype=torch.int64)
    prompt_len = torch.zeros(n, dtype=torch.int64)
    ref_ids = torch.full((n, max_references, reference_capacity), pad, dtype=torch.int64)
    ref_len = torch.full((n, max_references), -1, dtype=torch.int64)
    for i, ex in enumerate(examples):
        ids = tokenizer.encode(ex.prompt)
        if len(ids) > prompt_capacity:
            raise ValueError(
                f"task {task_name!r}: prompt {ex.prompt!r} is {len(ids)} tokens long, longer than "
                f"max_prompt_len={prompt_capacity}; raise max_prompt_len or shorten the prompt"
            )
        prompt_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.int64)
        prompt_len[i] = len(ids)
        if len(ex.references) > max_references:
            raise ValueError(
                f"task {task_name!r}: an example has {len(ex.references)} references, more than "
                f"max_references={max_references}"
            )
        for r, ref in enumerate(ex.references):
            rids = tokenizer.encode(ref)
            ref_len[i, r] = len(rids)
            rids = rids[:reference_capacity]
            ref_ids[i, r, : len(rids)] = torch.tensor(rids, dtype=torch.int64)
    return EncodedExamples(prompt_ids.to(device), prompt_len.to(device), ref_ids.to(device), ref_len.to(device))


# --------------------------------------------------------------------------------------------
# Procedural character tasks
# --------------------------------------------------------------------------------------------

_PAD_SYMBOL = -1


class _SymbolTask(Task):
    """A task generated as tensors of indices into ``self.symbols`` (``-1`` pads).

    Subclasses implement :meth:`generate`; :meth:`example` and :meth:`encode` follow from it, so
    the text form and the tensor form cannot disagree.
    """

    symbols: str

    def generate(self, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Symbol indices ``(prompt (n, P), reference (n, L))`` for the keys, padded with -1."""
        raise NotImplementedError

    def alphabet(self) -> str:
        return self.symbols

    def example(self, key: int) -> Example:
        return self.examples_for([key])[0]

    def examples_for(self, keys: Sequence[int]) -> list[Example]:
        prompts, refs = self.generate(torch.tensor(list(keys), dtype=torch.int64))  # one batch
        return [Example(self._text(p), (self._text(r),)) for p, r in zip(prompts.tolist(), refs.tolist())]

    def _text(self, idx: list[int]) -> str:
        return "".join(self.symbols[i] for i in idx if i != _PAD_SYMBOL)

    def encode(
        self, keys: torch.Tensor, tokenizer: Tokenizer, prompt_capacity: int, reference_capacity: int
    ) -> EncodedExamples:
        if not (isinstance(tokenizer, CharTokenizer) and set(self.symbols) <= set(tokenizer.alphabet)):
            return super().encode(keys, tokenizer, prompt_capacity, reference_capacity)
        # One token per symbol: a lookup table turns symbol indices into token ids (pad -> pad_id).
        lookup = torch.tensor(tokenizer.encode(self.symbols) + [tokenizer.pad_id], device=keys.device)
        prompt, ref = self.generate(keys)
        prompt_len = (prompt != _PAD_SYMBOL).sum(-1)
        ref_len = (ref != _PAD_SYMBOL).sum(-1)
        if prompt.shape[1] > prompt_capacity:
            too_long = prompt_len > prompt_capacity
            if bool(too_long.any()):
                raise ValueError(
                    f"task {self.name!r}: a prompt is {int(prompt_len.max())} tokens long, longer "
                    f"than max_prompt_len={prompt_capacity}"
                )
            prompt = prompt[:, :prompt_capacity]
        prompt_ids = torch.full((len(keys), prompt_capacity), tokenizer.pad_id, device=keys.device)
        prompt_ids[:, : prompt.shape[1]] = lookup[prompt]
        ref = ref[:, :reference_capacity]
        ref_ids = torch.full((len(keys), 1, reference_capacity), tokenizer.pad_id, device=keys.device)
        ref_ids[:, 0, : ref.shape[1]] = lookup[ref]
        return EncodedExamples(prompt_ids, prompt_len, ref_ids, ref_len.unsqueeze(1))

    def max_prompt_tokens(self, tokenizer: Tokenizer) -> int:
        # Every symbol is one character, and a tokenizer never needs more tokens than characters
        # for the ASCII symbols used here (a char tokenizer needs exactly one per character).
        return self._max_prompt_chars

    def max_reference_tokens(self, tokenizer: Tokenizer) -> int:
        return self._max_reference_chars

    _max_prompt_chars: int
    _max_reference_chars: int


def _check_range(name: str, lo: int, hi: int, least: int) -> None:
    if not (isinstance(lo, int) and isinstance(hi, int)) or not least <= lo <= hi:
        raise ValueError(
            f"{name}: expected integers with {least} <= min <= max, got min={lo!r}, max={hi!r}"
        )


class _StringTask(_SymbolTask):
    """A random string over ``alphabet`` of length in ``[min_length, max_length]``, then ``=``."""

    def __init__(self, alphabet: str = "abcdef", min_length: int = 2, max_length: int = 6) -> None:
        _check_range(f"{type(self).__name__} length", min_length, max_length, 1)
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
        return torch.where(pos < length[:, None], chars, _PAD_SYMBOL), length

    def generate(self, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, length = self._random_string(keys)
        prompt = torch.cat([s, torch.full_like(s[:, :1], _PAD_SYMBOL)], dim=1)
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


class CopyTask(_StringTask):
    """Copy the string: ``"abc="`` → ``"abc"``.

    Args:
        alphabet: the characters strings are drawn from.
        min_length: shortest string.
        max_length: longest string.
    """

    name = "copy"

    def transform(self, s: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        return s.clone()


class ReverseTask(_StringTask):
    """Reverse the string: ``"abc="`` → ``"cba"``. Arguments as :class:`CopyTask`."""

    name = "reverse"

    def transform(self, s: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(s.shape[1], device=s.device)
        src = (length[:, None] - 1 - pos).clamp(min=0)
        return torch.where(pos < length[:, None], s.gather(1, src), _PAD_SYMBOL)


class SortTask(_StringTask):
    """Sort the characters in the order of ``alphabet``: ``"cab="`` → ``"abc"``. Arguments as :class:`CopyTask`."""

    name = "sort"

    def transform(self, s: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        big = len(self.letters)  # padding sorts last, then is put back to -1
        ordered = torch.where(s == _PAD_SYMBOL, big, s).sort(dim=1).values
        return torch.where(ordered == big, _PAD_SYMBOL, ordered)


class AdditionTask(_SymbolTask):
    """Add two non-negative integers: ``"12+7="`` → ``"19"``.

    Each operand has between ``min_digits`` and ``max_digits`` digits (no leading zeros), the digit
    count drawn uniformly first, then the number.

    Args:
        min_digits: fewest digits of an operand.
        max_digits: most digits of an operand (at most 9).
    """

    name = "addition"

    def __init__(self, min_digits: int = 1, max_digits: int = 3) -> None:
        _check_range("AdditionTask digits", min_digits, max_digits, 1)
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
        prompt = torch.full((len(keys), width), _PAD_SYMBOL, device=keys.device)
        prompt = _write_digits(prompt, pos, a[:, None], 0, na, pow10)
        prompt = torch.where(pos == na, 10, prompt)  # "+"
        prompt = _write_digits(prompt, pos, b[:, None], na + 1, nb, pow10)
        prompt = torch.where(pos == na + nb + 1, 11, prompt)  # "="
        total = (a + b)[:, None]
        nt = 1 + (total >= pow10[1:11]).sum(-1, keepdim=True)  # digits of the sum
        rpos = pos[:, : self._max_reference_chars]
        ref = torch.full((len(keys), self._max_reference_chars), _PAD_SYMBOL, device=keys.device)
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

REVIEW_ITEMS = ("tea", "soup", "cake", "film", "book", "song", "room", "game")
"""What the prompts ask to review."""
POSITIVE_WORDS = ("good", "great", "nice")
NEUTRAL_WORDS = ("okay", "fine", "plain")
NEGATIVE_WORDS = ("bad", "poor", "dull")
ADJECTIVES = POSITIVE_WORDS + NEUTRAL_WORDS + NEGATIVE_WORDS
INTENSIFIER = "very"


def parse_review(prompt: str, completion: str) -> list[tuple[bool, str]] | None:
    """The phrases ``(intensified, adjective)`` of a grammatical review, or ``None``.

    The grammar: ``ITEM " is " PHRASE [" and " PHRASE]`` with ``PHRASE = ["very "] ADJECTIVE``,
    where ``ITEM`` is the item the prompt (``"ITEM:"``) names, words are separated by single
    spaces, and the two adjectives differ.

    Example:
        >>> parse_review("tea:", "tea is very good and fine")
        [(True, 'good'), (False, 'fine')]
        >>> parse_review("tea:", "soup is good") is None  # the wrong item
        True
    """
    words = completion.split(" ")
    if not prompt.endswith(":") or words[:2] != [prompt[:-1], "is"]:
        return None
    phrases: list[tuple[bool, str]] = []
    rest = words[2:]
    while True:
        very = rest[:1] == [INTENSIFIER]
        rest = rest[1:] if very else rest
        if not rest or rest[0] not in ADJECTIVES:
            return None
        phrases.append((very, rest[0]))
        rest = rest[1:]
        if not rest:
            break
        if rest[0] != "and" or len(phrases) == 2:
            return None
        rest = rest[1:]
    if len(phrases) == 2 and phrases[0][1] == phrases[1][1]:
        return None
    return phrases


def review_text(item: str, phrases: Sequence[tuple[bool, str]]) -> str:
    """``"ITEM is [very ]ADJ[ and [very ]ADJ]"``: the inverse of :func:`parse_review`."""
    return f"{item} is " + " and ".join(f"{INTENSIFIER} {adj}" if very else adj for very, adj in phrases)


class ReviewTask(Task):
    """Review the item the prompt names: ``"tea:"`` → ``"tea is very good and fine"``.

    The reference is a random grammatical review (see :func:`parse_review`): one or two phrases
    with equal odds, each adjective drawn uniformly from :data:`ADJECTIVES` (three positive, three
    neutral, three negative; two phrases never repeat one) and intensified by ``"very"`` with odds
    one half. The references carry no preference: their mean score under the hidden rule of
    :class:`textgym.rewards.review.ReviewRule` is zero, which makes them the SFT data of the RLHF
    pipeline.
    """

    name = "review"

    def example(self, key: int) -> Example:
        return self.examples_for([key])[0]

    def examples_for(self, keys: Sequence[int]) -> list[Example]:
        out = []
        for r in draws(torch.tensor(list(keys), dtype=torch.int64), 6).tolist():  # one batch of draws
            item = REVIEW_ITEMS[r[0] % len(REVIEW_ITEMS)]
            first = r[2] % len(ADJECTIVES)
            second = (first + 1 + r[4] % (len(ADJECTIVES) - 1)) % len(ADJECTIVES)  # never the same
            phrases = [(bool(r[3] % 2), ADJECTIVES[first]), (bool(r[5] % 2), ADJECTIVES[second])][: 1 + r[1] % 2]
            out.append(Example(f"{item}:", (review_text(item, phrases),)))
        return out

    def alphabet(self) -> str:
        return alphabet_of([*REVIEW_ITEMS, *ADJECTIVES, INTENSIFIER, "is and :"])

    def max_prompt_tokens(self, tokenizer: Tokenizer) -> int:
        return max(len(tokenizer.encode(f"{item}:")) for item in REVIEW_ITEMS)

    def max_reference_tokens(self, tokenizer: Tokenizer) -> int:
        longest = max(ADJECTIVES, key=len)
        return max(len(tokenizer.encode(review_text(item, [(True, longest)] * 2))) for item in REVIEW_ITEMS)

    def text_metrics(self, prompts: Sequence[str], completions: Sequence[str]) -> dict[str, float]:
        """``grammatical``: the fraction of grammatical reviews; ``positive_words``: their mean count."""
        parsed = [parse_review(p, c) for p, c in zip(prompts, completions)]
        n = max(1, len(parsed))
        return {
            "grammatical": sum(p is not None for p in parsed) / n,
            "positive_words": sum(sum(w in POSITIVE_WORDS for w in c.split(" ")) for c in completions) / n,
        }

    def __repr__(self) -> str:
        return "ReviewTask()"


# --------------------------------------------------------------------------------------------
# Tasks from data
# --------------------------------------------------------------------------------------------


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, str, Any]]:
    """``(line number, "FILE, line N", parsed object)`` for each non-blank line of a JSONL file.

    Raises:
        ValueError: a line that is not valid JSON, naming the file and line.
    """
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            where = f"{path}, line {lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"{where}: not UTF-8 (byte {raw[e.start]:#x} at column {e.start + 1}); "
                                 "save the file as UTF-8") from None
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: not valid JSON ({e.msg})") from None
            except RecursionError:
                raise ValueError(f"{where}: JSON nested too deeply to read") from None
            yield lineno, where, item


def _as_example(item: Any, where: str) -> Example:
    """An :class:`Example` from an Example, a ``(prompt, references)`` pair or a dict."""
    if isinstance(item, Example):
        return item
    if isinstance(item, dict):
        if "prompt" not in item or ("references" not in item and "reference" not in item):
            raise ValueError(
                f"{where}: expected an object with keys 'prompt' and 'references', got keys {sorted(item)}"
            )
        prompt, refs = item["prompt"], item.get("references", item.get("reference"))
    elif isinstance(item, (tuple, list)) and len(item) == 2:
        prompt, refs = item
    else:
        raise ValueError(f"{where}: expected a dict, an Example or a (prompt, references) pair, got {item!r}")
    if isinstance(refs, str):
        refs = [refs]
    if not isinstance(prompt, str):
        raise ValueError(f"{where}: 'prompt' must be a string, got {type(prompt).__name__}")
    if not isinstance(refs, (list, tuple)) or not refs or not all(isinstance(r, str) for r in refs):
        raise ValueError(f"{where}: 'references' must be a non-empty list of strings, got {refs!r}")
    return Example(prompt, tuple(refs))


class ListTask(Task):
    """Examples from a list; each episode draws one uniformly at random (with replacement).

    Args:
        examples: :class:`Example` objects, ``(prompt, references)`` pairs, or dicts with keys
            ``"prompt"`` and ``"references"`` (a list of strings, or one string).
        name: shown in ``textgym list`` and in errors.

    Example:
        >>> task = ListTask([("2+2=", ["4"]), {"prompt": "hi", "references": ["hello", "hey"]}])
        >>> task.example(1)
        Example(prompt='hi', references=('hello', 'hey'))
    """

    name = "list"
    MAX_PADDED_TOKENS = 50_000_000
    """The most tokens the padded table of prompts (or of references) may hold."""

    def __init__(self, examples: Iterable[Any], name: str = "list") -> None:
        self.examples = [_as_example(ex, f"example {i}") for i, ex in enumerate(examples)]
        if not self.examples:
            raise ValueError("ListTask needs at least one example, got none")
        self.name = name
        self.max_references = max(len(ex.references) for ex in self.examples)
        self._encoded: tuple[Tokenizer, EncodedExamples] | None = None

    @classmethod
    def from_jsonl(cls, path: str | os.PathLike) -> ListTask:
        """Read one ``{"prompt": ..., "references": [...]}`` object per line (blank lines skipped).

        Raises:
            ValueError: a line that is not valid JSON or lacks a field, naming the file and line.
        """
        examples = [_as_example(item, where) for _, where, item in iter_jsonl(path)]
        if not examples:
            raise ValueError(f"{path}: no examples (the file is empty)")
        return cls(examples, name=os.path.basename(str(path)))

    @classmethod
    def from_hf_dataset(
        cls,
        dataset: Any,
        prompt_column: str = "prompt",
        references_column: str = "references",
        split: str = "train",
        **load_kwargs: Any,
    ) -> ListTask:
        """Examples from a Hugging Face ``datasets`` split.

        Args:
            dataset: a ``datasets.Dataset``, or a name/path for ``datasets.load_dataset`` (which may
                read local files such as ``"json"`` with ``data_files=...``).
            prompt_column: column holding the prompt text.
            references_column: column holding a reference string or a list of them.
            split: the split to load when ``dataset`` is a name.
            **load_kwargs: passed to ``datasets.load_dataset``.
        """
        if isinstance(dataset, str):
            try:
                import datasets
            except ImportError:
                raise ImportError(
                    "ListTask.from_hf_dataset needs the 'datasets' package: pip install 'textgym[hf]'"
                ) from None
            dataset = datasets.load_dataset(dataset, split=split, **load_kwargs)
        columns = list(dataset.column_names)
        for col in (prompt_column, references_column):
            if col not in columns:
                raise ValueError(f"dataset has no column {col!r}; its columns are {columns}")
        prompts, refs = dataset[prompt_column], dataset[references_column]
        return cls(list(zip(prompts, refs)), name=getattr(dataset, "builder_name", None) or "hf_dataset")

    def example(self, key: int) -> Example:
        return self.examples[key % len(self.examples)]

    def alphabet(self) -> str:
        return alphabet_of([ex.prompt for ex in self.examples] + [r for ex in self.examples for r in ex.references])

    def _encode_all(self, tokenizer: Tokenizer) -> EncodedExamples:
        # Every example is encoded once per tokenizer; batches are then gathered rows.
        if self._encoded is None or self._encoded[0] is not tokenizer:
            prompts = [tokenizer.encode(ex.prompt) for ex in self.examples]
            refs = [tokenizer.encode(r) for ex in self.examples for r in ex.references]
            width_p = max(len(p) for p in prompts)
            width_r = max(1, max(len(r) for r in refs))
            # Every example is padded to the longest: one outlier must not cost gigabytes.
            for what, width, count, lengths in (("prompt", width_p, len(prompts), prompts),
                                                ("reference", width_r, len(refs), refs)):
                if width * count > self.MAX_PADDED_TOKENS:
                    longest = max(range(len(lengths)), key=lambda i: len(lengths[i]))
                    raise ValueError(
                        f"{self.name}: a {what} is {width} tokens long (the {longest + 1}th), and padding all "
                        f"{count} {what}s to it would hold {width * count:,} tokens, more than "
                        f"{self.MAX_PADDED_TOKENS:,}: drop or shorten the long ones"
                    )
            enc = _encode_examples(self.examples, tokenizer, width_p, width_r, self.max_references, torch.device("cpu"), self.name)
            self._encoded = (tokenizer, enc)
        return self._encoded[1]

    def max_prompt_tokens(self, tokenizer: Tokenizer) -> int:
        return self._encode_all(tokenizer).prompt_ids.shape[1]

    def max_reference_tokens(self, tokenizer: Tokenizer) -> int:
        return int(self._encode_all(tokenizer).reference_len.max())

    def encode(
        self, keys: torch.Tensor, tokenizer: Tokenizer, prompt_capacity: int, reference_capacity: int
    ) -> EncodedExamples:
        full = self._encode_all(tokenizer)
        if full.prompt_ids.shape[1] > prompt_capacity:
            longest = int(full.prompt_len.argmax())
            raise ValueError(
                f"task {self.name!r}: prompt {self.examples[longest].prompt!r} is "
                f"{int(full.prompt_len[longest])} tokens long, longer than max_prompt_len={prompt_capacity}"
            )
        if full.prompt_ids.device != keys.device:  # keep one copy on the device the env uses
            full = EncodedExamples(*(t.to(keys.device) for t in vars(full).values()))
            self._encoded = (tokenizer, full)
        idx = keys % len(self.examples)
        pad = tokenizer.pad_id
        prompt_ids = _fit(full.prompt_ids[idx], prompt_capacity, pad)
        ref_ids = _fit(full.reference_ids[idx], reference_capacity, pad)
        return EncodedExamples(prompt_ids, full.prompt_len[idx], ref_ids, full.reference_len[idx])

    def __repr__(self) -> str:
        return f"ListTask({len(self.examples)} examples, name={self.name!r})"


def _fit(ids: torch.Tensor, width: int, pad: int) -> torch.Tensor:
    """Cut or right-pad the last dimension of ``ids`` to ``width``."""
    if ids.shape[-1] >= width:
        return ids[..., :width]
    extra = ids.new_full((*ids.shape[:-1], width - ids.shape[-1]), pad)
    return torch.cat([ids, extra], dim=-1)


TASKS: dict[str, type[Task]] = {
    "copy": CopyTask,
    "reverse": ReverseTask,
    "sort": SortTask,
    "addition": AdditionTask,
    "review": ReviewTask,
}


def register_task(name: str, task: type[Task]) -> None:
    """Make ``task=NAME`` (in a token env's arguments, or :func:`make_task`) build ``task(**task_kwargs)``:
    the one line a new task needs beside its class.

    Raises:
        ValueError: ``name`` is taken by another task, or ``task`` is not a :class:`Task` class.
    """
    if not (isinstance(task, type) and issubclass(task, Task)):
        raise ValueError(f"register_task({name!r}, ...) needs a Task subclass, got {task!r}")
    if not isinstance(name, str) or not name or ":" in name or name.endswith(".jsonl"):
        raise ValueError(f"a task's name must be a plain word (no ':' and no .jsonl), got {name!r}")
    if TASKS.get(name, task) is not task:
        raise ValueError(f"task {name!r} is registered already (as {TASKS[name].__name__}); choose another name")
    TASKS[name] = task


def _named_task(spec: str, kwargs: dict) -> Task:
    """The task ``"module:name"`` names: a :class:`Task` or a list of examples (as is), or a class
    or function called with ``kwargs`` that returns one."""
    found = resolve(spec, f"task {spec!r}")
    if callable(found) and not isinstance(found, Task):
        try:
            found = found(**kwargs)
        except TypeError as e:
            raise TypeError(f"task {spec!r}: {e}") from None
    elif kwargs:
        raise TypeError(f"task {spec!r} names a {type(found).__name__}, which takes no task_kwargs (got {sorted(kwargs)})")
    if isinstance(found, Task):
        return found
    if isinstance(found, (list, tuple)):
        return ListTask(found)
    raise TypeError(f"task {spec!r} gives a {type(found).__name__}: expected a Task or a list of examples")


def make_task(spec: Any, **kwargs: Any) -> Task:
    """Build a task from a name, a ``.jsonl`` path, a list of examples, or a :class:`Task`.

    Args:
        spec: ``"copy"``, ``"reverse"``, ``"sort"``, ``"addition"``, ``"review"``; a path to a JSONL file; a list
            of examples (see :class:`ListTask`); a :class:`Task` (returned as is); or ``"module:name"``
            of your own Task, Task class, list of examples, or function returning one (called with
            ``kwargs``; the current folder is searched too, see :mod:`textgym.names`).
        **kwargs: the procedural task's arguments (``alphabet``, ``min_length``, ...).

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    if isinstance(spec, Task):
        if kwargs:
            raise ValueError(f"task_kwargs {sorted(kwargs)} given with a Task object; set them on the object")
        return spec
    if isinstance(spec, (str, os.PathLike)):
        s = str(spec)
        if s in TASKS:
            return TASKS[s](**kwargs)
        if s.endswith(".jsonl") or os.path.isfile(s):
            return ListTask.from_jsonl(s)
        if split_name(s) is not None:
            return _named_task(s, kwargs)
        raise ValueError(f"unknown task {s!r}: expected one of {sorted(TASKS)}, a path to a .jsonl file or "
                         "MODULE:NAME of your own (a Task, a Task class, a list of examples or a function returning one)")
    if isinstance(spec, (list, tuple)):
        return ListTask(spec)
    raise TypeError(f"cannot make a task from {type(spec).__name__}: expected a name, a .jsonl path, a list or a Task")
