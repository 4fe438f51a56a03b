"""Text ⇄ token ids.

Every textgym env talks to its tokenizer through four things: ``encode``, ``decode``,
``vocab_size`` and the special ids ``pad_id`` and ``eos_id``. Two implementations ship:

* :class:`CharTokenizer`: one token per character of a fixed alphabet, no dependencies. The
  default for every built-in task.
* :class:`HFTokenizer`: wraps any ``transformers`` tokenizer (``PreTrainedTokenizerBase``).

:func:`as_tokenizer` turns either (or a ``transformers`` tokenizer) into something an env accepts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from textgym.files import write_json
from textgym.names import resolve, split_name

PAD = "<pad>"
EOS = "<eos>"
UNK = "<unk>"


@runtime_checkable
class Tokenizer(Protocol):
    """What an env needs from a tokenizer."""

    pad_id: int
    eos_id: int

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Iterable[int]) -> str: ...


TOKENIZER_DIR = "tokenizer"
"""Where a run folder keeps its env's tokenizer (see :func:`save_tokenizer`)."""


class CharTokenizer:
    """One token per character of ``alphabet``, plus the special tokens.

    Ids: ``0`` is ``<pad>``, ``1`` is ``<eos>``, ``2`` is ``<unk>`` when ``unk=True``; the characters
    of ``alphabet`` follow in order. Every string over the alphabet round-trips:
    ``decode(encode(s)) == s``.

    Args:
        alphabet: the characters this tokenizer knows, each once.
        unk: map characters outside the alphabet to ``<unk>`` instead of raising.

    Example:
        >>> tok = CharTokenizer("abc")
        >>> tok.encode("cab")
        [4, 2, 3]
        >>> tok.decode([4, 2, 3, 1, 0])
        'cab'
    """

    def __init__(self, alphabet: str, unk: bool = False) -> None:
        if not isinstance(alphabet, str) or not alphabet:
            raise ValueError(f"alphabet must be a non-empty string, got {alphabet!r}")
        seen: set[str] = set()
        for ch in alphabet:
            if ch in seen:
                raise ValueError(f"alphabet has the character {ch!r} more than once")
            seen.add(ch)
        self.alphabet = alphabet
        self.unk = unk
        self.specials: tuple[str, ...] = (PAD, EOS, UNK) if unk else (PAD, EOS)
        self.pad_id = 0
        self.eos_id = 1
        self.unk_id: int | None = 2 if unk else None
        offset = len(self.specials)
        self._ids = {ch: offset + i for i, ch in enumerate(alphabet)}
        self._tokens = list(self.specials) + list(alphabet)

    @property
    def vocab_size(self) -> int:
        """Number of token ids: the special tokens plus the alphabet."""
        return len(self._tokens)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, one per character (no eos is added).

        Raises:
            ValueError: a character outside the alphabet, when the tokenizer has no ``<unk>``.
        """
        try:
            return [self._ids[ch] for ch in text]
        except KeyError:
            pass  # a character outside the alphabet: find it, or map it to <unk>
        ids = []
        for pos, ch in enumerate(text):
            i = self._ids.get(ch)
            if i is None:
                if self.unk_id is None:
                    raise ValueError(
                        f"character {ch!r} at position {pos} of {text!r} is not in the "
                        f"alphabet {self.alphabet!r}; pass unk=True to map unknown characters to {UNK}"
                    )
                i = self.unk_id
            ids.append(i)
        return ids

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """Text of ``ids``. Special tokens are dropped unless ``skip_special_tokens=False``."""
        n_special = len(self.specials)
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self._tokens):
                raise ValueError(f"token id {i} is outside the vocabulary [0, {len(self._tokens)})")
            if i < n_special and skip_special_tokens:
                continue
            out.append(self._tokens[i])
        return "".join(out)

    def id_to_token(self, i: int) -> str:
        """The token (a character or a special token's name) for id ``i``."""
        return self._tokens[i]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description; :meth:`from_dict` rebuilds the same tokenizer."""
        return {"type": "char", "alphabet": self.alphabet, "unk": self.unk}

    def to_transformers(self) -> Any:
        """The same tokenizer as a ``transformers`` ``PreTrainedTokenizerFast`` (the same ids, one
        token per character), to save beside a model built for it (``save_pretrained``)."""
        from tokenizers import Regex, decoders, models, pre_tokenizers
        from tokenizers import Tokenizer as RawTokenizer
        from transformers import PreTrainedTokenizerFast

        raw = RawTokenizer(models.WordLevel({t: i for i, t in enumerate(self._tokens)}, unk_token=UNK))
        raw.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), "isolated")  # every character
        raw.decoder = decoders.Fuse()  # joined with no spaces
        return PreTrainedTokenizerFast(tokenizer_object=raw, pad_token=PAD, eos_token=EOS,
                                       unk_token=UNK if self.unk else None)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CharTokenizer:
        return cls(d["alphabet"], unk=d.get("unk", False))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CharTokenizer) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"CharTokenizer({self.alphabet!r}, unk={self.unk})"


class HFTokenizer:
    """Adapter that makes a ``transformers`` tokenizer usable by every textgym env.

    ``encode`` adds no special tokens (the env adds eos itself); ``decode`` skips them. The wrapped
    tokenizer needs an eos token; when it has no pad token, eos is used for padding (the attention
    mask in the observation tells padding apart).

    Args:
        tokenizer: a ``transformers.PreTrainedTokenizerBase``, for example a
            ``PreTrainedTokenizerFast`` built from a local ``tokenizers`` model.
    """

    def __init__(self, tokenizer: Any) -> None:
        if tokenizer.eos_token_id is None:
            raise ValueError(
                f"{type(tokenizer).__name__} has no eos token; set one, e.g. "
                "tokenizer.add_special_tokens({'eos_token': '<eos>'})"
            )
        self.tokenizer = tokenizer
        self.eos_id = int(tokenizer.eos_token_id)
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else self.eos_id

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def __repr__(self) -> str:
        return f"HFTokenizer({type(self.tokenizer).__name__}, vocab_size={self.vocab_size})"


def load_hf_tokenizer(path: str | os.PathLike) -> Any:
    """The ``transformers`` tokenizer saved in the directory ``path`` (local files only).

    Raises:
        ValueError: ``path`` is not a directory, or holds no tokenizer.
    """
    from transformers import AutoTokenizer

    if not Path(path).is_dir():
        raise ValueError(f"tokenizer {str(path)!r} is not a directory: pass the directory a transformers tokenizer "
                         "was saved in (tokenizer.save_pretrained), a CharTokenizer or a tokenizer object")
    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"no transformers tokenizer could be loaded from {path}: {e}") from None


CHAR_TOKENIZER_FILE = "char_tokenizer.json"
"""The file :func:`save_tokenizer` writes a :class:`CharTokenizer` to."""


def save_tokenizer(tokenizer: Tokenizer, directory: str | os.PathLike) -> bool:
    """Save ``tokenizer`` in ``directory`` so that :func:`as_tokenizer` reads it back from there:
    a :class:`CharTokenizer` as ``char_tokenizer.json``, a ``transformers`` one with
    ``save_pretrained``. Returns False (and writes nothing) for any other kind of tokenizer."""
    directory = Path(directory)
    if isinstance(tokenizer, CharTokenizer):
        directory.mkdir(parents=True, exist_ok=True)
        write_json(directory / CHAR_TOKENIZER_FILE, tokenizer.to_dict())
        return True
    if isinstance(tokenizer, HFTokenizer):
        tokenizer.tokenizer.save_pretrained(str(directory))
        return True
    return False


def load_char_tokenizer(directory: str | os.PathLike) -> CharTokenizer:
    """The :class:`CharTokenizer` :func:`save_tokenizer` wrote in ``directory``.

    Raises:
        ValueError: the file is not a character tokenizer's description.
    """
    path = Path(directory) / CHAR_TOKENIZER_FILE
    try:
        d = json.loads(path.read_text())
        if not isinstance(d, dict) or d.get("type") != "char":
            raise ValueError("not a character tokenizer")
        return CharTokenizer.from_dict(d)
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a textgym character tokenizer ({e})") from None


def as_tokenizer(obj: Any) -> Tokenizer:
    """Return ``obj`` as a textgym tokenizer.

    Accepts a :class:`CharTokenizer`, an :class:`HFTokenizer`, a ``transformers`` tokenizer (wrapped
    in :class:`HFTokenizer`), the path of a directory a tokenizer was saved in (by
    :func:`save_tokenizer`, e.g. a run's ``tokenizer/``, or a ``transformers`` model directory, read
    with ``AutoTokenizer.from_pretrained``, never downloaded), ``"module:name"`` of a tokenizer or of
    a function returning one (see :mod:`textgym.names`), or any object with ``encode``, ``decode``,
    ``vocab_size``, ``pad_id`` and ``eos_id``.
    """
    if isinstance(obj, str) and not os.path.exists(obj) and split_name(obj) is not None:
        found = resolve(obj, f"tokenizer {obj!r}")
        return as_tokenizer(found() if callable(found) and not isinstance(found, Tokenizer) else found)
    if isinstance(obj, (str, os.PathLike)):
        if (Path(obj) / CHAR_TOKENIZER_FILE).is_file():
            return load_char_tokenizer(obj)
        return HFTokenizer(load_hf_tokenizer(obj))
    if isinstance(obj, Tokenizer):
        return check_special_ids(obj)
    if hasattr(obj, "eos_token_id") and hasattr(obj, "encode"):
        return HFTokenizer(obj)
    raise TypeError(
        f"cannot use {type(obj).__name__} as a tokenizer: expected a CharTokenizer, a transformers "
        "tokenizer, or an object with encode, decode, vocab_size, pad_id and eos_id"
    )


def check_special_ids(tokenizer: Tokenizer) -> Tokenizer:
    """``tokenizer``, after checking that its pad and eos ids lie inside its vocabulary.

    Raises:
        ValueError: an id that is not an integer in ``[0, vocab_size)``.
    """
    n = tokenizer.vocab_size
    for name in ("pad_id", "eos_id"):
        i = getattr(tokenizer, name)
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n:
            raise ValueError(f"the tokenizer's {name} {i!r} is outside its vocabulary of {n} ids [0, {n})")
    return tokenizer


def alphabet_of(texts: Sequence[str]) -> str:
    """The characters used in ``texts``, sorted: a ready alphabet for :class:`CharTokenizer`."""
    return "".join(sorted(set("".join(texts))))
