"""Reasoning Gym's procedural datasets as textgym tasks (``pip install "textgym[reasoning]"``).

``task="reasoning_gym"`` with ``task_kwargs={"dataset": "leg_counting"}`` plays any of Reasoning
Gym's 100+ generators: the prompt is its question, the reference its answer (what the expert
writes), and the ``"task"`` reward is the dataset's own ``score_answer``. ``difficulty`` is the
dataset's curriculum level (``reasoning_gym.factory.create_curriculum``, all attributes at that level);
without it the dataset's default configuration is used and there is no knob.
"""

from __future__ import annotations

import difflib
import string
from typing import Any

from textgym.tasks.core import Example, Task
from textgym.tokenizers import Tokenizer

_SAMPLE = 512  # examples read at construction to bound the prompt and answer lengths


def _reasoning_gym():
    try:
        import reasoning_gym
    except ImportError:
        raise ImportError('the "reasoning_gym" task needs Reasoning Gym: pip install "textgym[reasoning]" '
                          "(or pip install reasoning-gym)") from None
    return reasoning_gym


class ReasoningGymTask(Task):
    """One of Reasoning Gym's datasets: its questions, its answers and its scorer.

    The same key gives the same question (Reasoning Gym builds item ``key`` from ``seed + key``).
    The prompt and answer bounds (for ``max_prompt_len`` and ``max_new_tokens``) are the longest
    of 512 items at the task's difficulty (a curriculum only lowers it), plus a quarter; a longer prompt is an error that names
    ``max_prompt_len``. A character tokenizer built for it knows the printable ASCII characters and
    those of the sample, and maps any other to ``<unk>``.

    Args:
        dataset: a Reasoning Gym dataset name (``reasoning_gym.factory.DATASETS``).
        difficulty: a level of the dataset's curriculum (0 is the easiest), or None for the
            dataset's default configuration (no difficulty knob).
        config: more arguments of the dataset's configuration (they override the level's).
        seed: the dataset's seed.
    """

    name = "reasoning_gym"
    open_alphabet = True

    def __init__(self, dataset: str = "leg_counting", difficulty: int | None = None, config: dict | None = None,
                 seed: int = 0) -> None:
        rg = _reasoning_gym()
        known = rg.factory.DATASETS
        if dataset not in known:
            close = difflib.get_close_matches(str(dataset), known, n=5, cutoff=0.5) or sorted(known)[:8]
            raise ValueError(f"unknown Reasoning Gym dataset {dataset!r}: expected one of its {len(known)} datasets, "
                             f"e.g. {close} (all: reasoning_gym.factory.DATASETS)")
        if config is not None and not isinstance(config, dict):
            raise ValueError(f"config must be a dict of the dataset's settings, got {config!r}")
        self.dataset, self.config, self.seed = dataset, dict(config or {}), int(seed)
        self.name = f"reasoning_gym:{dataset}"
        self.difficulties = None
        if difficulty is not None:
            if dataset not in rg.factory.CURRICULA:
                raise ValueError(f"Reasoning Gym dataset {dataset!r} has no curriculum, so no difficulty: leave "
                                 "difficulty unset, or set its configuration through config")
            curriculum = rg.factory.create_curriculum(dataset)
            levels = max(len(attr.levels) for attr in curriculum.attributes.values())
            self.difficulties = range(0, levels)
            if isinstance(difficulty, bool) or not isinstance(difficulty, int) or difficulty not in self.difficulties:
                raise ValueError(f"difficulty of {dataset!r} must be an integer in 0..{levels - 1}, got {difficulty!r}")
        self._datasets: dict[int | None, Any] = {}
        self._entries: dict[str, dict] = {}  # prompt -> the item, for its scorer
        self.difficulty = difficulty
        sample = [self._item(k) for k in range(_SAMPLE)]
        self._prompt_chars = max(len(x["question"]) for x in sample)
        self._answer_chars = max(len(str(x["answer"])) for x in sample)
        self._alphabet = "".join(sorted(set(string.printable) | {ch for x in sample for ch in x["question"] + str(x["answer"])}))

    def _data(self):
        level = self.difficulty
        if level not in self._datasets:
            rg = _reasoning_gym()
            if level is None:
                self._datasets[level] = rg.create_dataset(self.dataset, seed=self.seed, size=2**31 - 1, **self.config)
            else:
                curriculum = rg.factory.create_curriculum(self.dataset)
                curriculum.set_global_level(level)
                cfg = curriculum.generate_configuration({"seed": self.seed, "size": 2**31 - 1, **self.config})
                self._datasets[level] = rg.factory.DATASETS[self.dataset][0](config=cfg)
        return self._datasets[level]

    def _item(self, key: int) -> dict:
        item = self._data()[int(key) % (2**31 - 1)]
        if len(self._entries) >= 65_536:
            self._entries.clear()
        self._entries[item["question"]] = item
        return item

    def example(self, key: int) -> Example:
        item = self._item(key)
        return Example(item["question"], (str(item["answer"]),))

    def score(self, example: Example, completion: str) -> float:
        """The dataset's ``score_answer`` of ``completion``; 0 when it fails or the item is unknown."""
        item = self._entries.get(example.prompt)
        if item is None:
            return 0.0
        try:
            return float(self._data().score_answer(completion, item) or 0.0)
        except Exception:  # a scorer may raise on text it cannot parse: that answer is wrong, not an error
            return 0.0

    def alphabet(self) -> str:
        return self._alphabet

    def max_prompt_tokens(self, tokenizer: Tokenizer) -> int:
        return self._prompt_chars + self._prompt_chars // 4 + 1

    def max_reference_tokens(self, tokenizer: Tokenizer) -> int:
        return self._answer_chars + self._answer_chars // 4 + 1

    def __repr__(self) -> str:
        return f"ReasoningGymTask(dataset={self.dataset!r}, difficulty={self.difficulty})"
