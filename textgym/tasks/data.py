"""Tasks from data: a Python list, a JSONL file or a Hugging Face dataset split."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

import torch

from textgym.files import parse_json
from textgym.tasks.core import (
    EncodedExamples,
    Example,
    Task,
    encode_examples,
    fit_width,
)
from textgym.tokenizers import Tokenizer, alphabet_of


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
            yield lineno, where, parse_json(line, where)


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

    def answer_alphabet(self) -> str:
        """The characters of the references."""
        return alphabet_of([r for ex in self.examples for r in ex.references])

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
            enc = encode_examples(self.examples, tokenizer, width_p, width_r, self.max_references, torch.device("cpu"), self.name)
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
        prompt_ids = fit_width(full.prompt_ids[idx], prompt_capacity, pad)
        ref_ids = fit_width(full.reference_ids[idx], reference_capacity, pad)
        return EncodedExamples(prompt_ids, full.prompt_len[idx], ref_ids, full.reference_len[idx])

    def __repr__(self) -> str:
        return f"ListTask({len(self.examples)} examples, name={self.name!r})"


