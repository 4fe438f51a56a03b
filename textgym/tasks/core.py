"""What every task is: :class:`Example`, :class:`Task` and its encoding into token-id tensors, and
:class:`SymbolTask`, the base of the tasks generated as tensors from their keys."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from textgym.tokenizers import CharTokenizer, Tokenizer


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

    def answer_alphabet(self) -> str | None:
        """Every character a right answer may use, or ``None`` if the task does not say.

        A token env made with ``action_mask=True`` lets a policy write only these and eos.
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

    def score(self, example: Example, completion: str) -> float:
        """The task's own judge of ``completion`` for ``example``, the ``"task"`` reward: a task
        whose right answers are not a list (a puzzle with many solutions) implements it. It must
        return a float for any text, never raise. The base class has no judge."""
        raise NotImplementedError(f"task {self.name!r} has no judge of its own")

    def encode(
        self, keys: torch.Tensor, tokenizer: Tokenizer, prompt_capacity: int, reference_capacity: int
    ) -> EncodedExamples:
        """Encode the examples of ``keys`` (int64 ``(n,)``) into tensors on ``keys.device``.

        Raises:
            ValueError: a prompt longer than ``prompt_capacity`` tokens.
        """
        examples = self.examples_for(keys.tolist())
        return encode_examples(
            examples, tokenizer, prompt_capacity, reference_capacity, self.max_references, keys.device, self.name
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def encode_examples(
    examples: Sequence[Example],
    tokenizer: Tokenizer,
    prompt_capacity: int,
    reference_capacity: int,
    max_references: int,
    device: torch.device,
    task_name: str,
) -> EncodedExamples:
    # Rows as padded lists first, then one tensor each: a tensor per example costs more than its tokens.
    pad = tokenizer.pad_id
    prompt_rows, prompt_lens, ref_rows, ref_lens = [], [], [], []
    no_reference = [pad] * reference_capacity
    for ex in examples:
        ids = list(tokenizer.encode(ex.prompt))
        if len(ids) > prompt_capacity:
            raise ValueError(
                f"task {task_name!r}: prompt {ex.prompt!r} is {len(ids)} tokens long, longer than "
                f"max_prompt_len={prompt_capacity}; raise max_prompt_len or shorten the prompt"
            )
        prompt_rows.append(ids + [pad] * (prompt_capacity - len(ids)))
        prompt_lens.append(len(ids))
        if len(ex.references) > max_references:
            raise ValueError(
                f"task {task_name!r}: an example has {len(ex.references)} references, more than "
                f"max_references={max_references}"
            )
        refs, lens = [], []
        for ref in ex.references:
            rids = list(tokenizer.encode(ref))
            lens.append(len(rids))
            rids = rids[:reference_capacity]
            refs.append(rids + [pad] * (reference_capacity - len(rids)))
        missing = max_references - len(refs)
        ref_rows.append(refs + [no_reference] * missing)
        ref_lens.append(lens + [-1] * missing)
    n = len(examples)
    prompt_ids = torch.tensor(prompt_rows, dtype=torch.int64).reshape(n, prompt_capacity)
    ref_ids = torch.tensor(ref_rows, dtype=torch.int64).reshape(n, max_references, reference_capacity)
    prompt_len = torch.tensor(prompt_lens, dtype=torch.int64)
    ref_len = torch.tensor(ref_lens, dtype=torch.int64).reshape(n, max_references)
    return EncodedExamples(prompt_ids.to(device), prompt_len.to(device), ref_ids.to(device), ref_len.to(device))


# --------------------------------------------------------------------------------------------
# Procedural character tasks
# --------------------------------------------------------------------------------------------

PAD_SYMBOL = -1


class SymbolTask(Task):
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
        prompts, refs = self._generated(torch.tensor(list(keys), dtype=torch.int64))  # one batch
        return [Example(self._text(p), (self._text(r),)) for p, r in zip(prompts.tolist(), refs.tolist())]

    def _generated(self, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`generate` of the keys, as :meth:`examples_for` and :meth:`encode` ask for it."""
        return self.generate(keys)

    def _text(self, idx: list[int]) -> str:
        return "".join(self.symbols[i] for i in idx if i != PAD_SYMBOL)

    def encode(
        self, keys: torch.Tensor, tokenizer: Tokenizer, prompt_capacity: int, reference_capacity: int
    ) -> EncodedExamples:
        if not (isinstance(tokenizer, CharTokenizer) and set(self.symbols) <= set(tokenizer.alphabet)):
            return super().encode(keys, tokenizer, prompt_capacity, reference_capacity)
        # One token per symbol: a lookup table turns symbol indices into token ids (pad -> pad_id).
        lookup = torch.tensor(tokenizer.encode(self.symbols) + [tokenizer.pad_id], device=keys.device)
        prompt, ref = self._generated(keys)
        prompt_len = (prompt != PAD_SYMBOL).sum(-1)
        ref_len = (ref != PAD_SYMBOL).sum(-1)
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


def check_range(name: str, lo: int, hi: int, least: int) -> None:
    if not (isinstance(lo, int) and isinstance(hi, int)) or not least <= lo <= hi:
        raise ValueError(
            f"{name}: expected integers with {least} <= min <= max, got min={lo!r}, max={hi!r}"
        )


def fit_width(ids: torch.Tensor, width: int, pad: int) -> torch.Tensor:
    """Cut or right-pad the last dimension of ``ids`` to ``width``."""
    if ids.shape[-1] >= width:
        return ids[..., :width]
    extra = ids.new_full((*ids.shape[:-1], width - ids.shape[-1]), pad)
    return torch.cat([ids, extra], dim=-1)


