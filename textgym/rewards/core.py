"""The Reward protocol, the built-in rewards, and :func:`make`.

A reward scores a *batch* of finished episodes and returns a float tensor of shape ``(B,)``. It
receives an :class:`EpisodeBatch`, which holds the token ids (on the env's device) and gives the
texts on demand, so rewards on ids (:class:`TokenAccuracy`) never decode and text rewards never
see padding.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from textgym.names import resolve, split_name
from textgym.rewards import metrics
from textgym.tasks.core import Example, Task, encode_examples
from textgym.tokenizers import Tokenizer


class EpisodeBatch:
    """Finished episodes, as token ids and (lazily) as text.

    Args:
        prompt_ids: ``(B, P)`` int64, right-padded.
        prompt_len: ``(B,)``.
        completion_ids: ``(B, T)`` int64: the tokens the agent wrote, without the final eos.
        completion_len: ``(B,)``.
        reference_ids: ``(B, R, L)`` int64, right-padded.
        reference_len: ``(B, R)``: full length of each reference, ``-1`` where absent.
        tokenizer: decodes the completions.
        examples: the episodes' examples (prompt and reference texts), a list or a function that
            returns it; when omitted they are decoded from the ids.
    """

    def __init__(
        self,
        prompt_ids: torch.Tensor,
        prompt_len: torch.Tensor,
        completion_ids: torch.Tensor,
        completion_len: torch.Tensor,
        reference_ids: torch.Tensor,
        reference_len: torch.Tensor,
        tokenizer: Tokenizer,
        examples: Sequence[Example] | Callable[[], Sequence[Example]] | None = None,
    ) -> None:
        self.prompt_ids, self.prompt_len = prompt_ids, prompt_len
        self.completion_ids, self.completion_len = completion_ids, completion_len
        self.reference_ids, self.reference_len = reference_ids, reference_len
        self.tokenizer = tokenizer
        self._examples = examples
        self._completions: list[str] | None = None

    @classmethod
    def from_texts(
        cls,
        prompts: Sequence[str],
        completions: Sequence[str],
        references: Sequence[Sequence[str]],
        tokenizer: Tokenizer,
    ) -> EpisodeBatch:
        """A batch from plain texts, for scoring outside an env (evaluation scripts, tests)."""
        if not len(prompts) == len(completions) == len(references):
            raise ValueError(
                f"prompts, completions and references must have one entry per episode, got "
                f"{len(prompts)}, {len(completions)} and {len(references)}"
            )
        examples = [Example(p, (r,) if isinstance(r, str) else tuple(r)) for p, r in zip(prompts, references)]
        comp = [tokenizer.encode(c) for c in completions]
        width_p = max([len(tokenizer.encode(ex.prompt)) for ex in examples] + [1])
        width_r = max([len(tokenizer.encode(r)) for ex in examples for r in ex.references] + [1])
        max_refs = max([len(ex.references) for ex in examples] + [1])
        enc = encode_examples(examples, tokenizer, width_p, width_r, max_refs, torch.device("cpu"), "texts")
        width_c = max([len(c) for c in comp] + [1])
        completion_ids = torch.full((len(comp), width_c), tokenizer.pad_id, dtype=torch.int64)
        for i, c in enumerate(comp):
            completion_ids[i, : len(c)] = torch.tensor(c, dtype=torch.int64)
        completion_len = torch.tensor([len(c) for c in comp], dtype=torch.int64)
        batch = cls(enc.prompt_ids, enc.prompt_len, completion_ids, completion_len,
                    enc.reference_ids, enc.reference_len, tokenizer, examples)
        batch._completions = list(completions)
        return batch

    def __len__(self) -> int:
        return self.completion_ids.shape[0]

    @property
    def device(self) -> torch.device:
        return self.completion_ids.device

    @property
    def examples(self) -> list[Example]:
        """The episodes' examples (prompt and reference texts)."""
        if callable(self._examples):
            self._examples = list(self._examples())
        if self._examples is None:
            self._examples = [self._decode_example(i) for i in range(len(self))]
        return list(self._examples)

    def _decode_example(self, i: int) -> Example:
        dec = self.tokenizer.decode
        prompt = dec(self.prompt_ids[i, : self.prompt_len[i]].tolist())
        refs = tuple(
            dec(self.reference_ids[i, r, :n].tolist()) for r, n in enumerate(self.reference_len[i].tolist()) if n >= 0
        )
        return Example(prompt, refs)

    @property
    def prompts(self) -> list[str]:
        return [ex.prompt for ex in self.examples]

    @property
    def references(self) -> list[list[str]]:
        return [list(ex.references) for ex in self.examples]

    @property
    def completions(self) -> list[str]:
        """The decoded completions (special tokens dropped)."""
        if self._completions is None:
            ids, lens = self.completion_ids.tolist(), self.completion_len.tolist()
            self._completions = [self.tokenizer.decode(row[:n]) for row, n in zip(ids, lens)]
        return self._completions


class Reward:
    """Base class of rewards: subclasses implement :meth:`score`; calling the reward validates it.

    Attributes:
        name: shown in errors, ``textgym list`` and logs.
        on_device: ``True`` when :meth:`score` uses only the token-id tensors (no text), so a
            vector env may score every episode at once without leaving the device.
    """

    name: str = "reward"
    on_device: bool = False

    def score(self, batch: EpisodeBatch) -> torch.Tensor | Sequence[float]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """What the reward changes as it scores (a running normalisation, say), as plain data and
        tensors: a training state saves it, so a resumed run scores as the uninterrupted one.
        A reward that keeps nothing returns ``{}`` (the default)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s ``state``."""
        if state:
            raise ValueError(f"reward {self.name!r} keeps no state, but a saved state for it holds {sorted(state)}")

    def __call__(self, batch: EpisodeBatch) -> torch.Tensor:
        """Score ``batch``: a float32 tensor ``(B,)`` on the batch's device.

        Raises:
            ValueError: the reward returned the wrong number of scores, a non-number, NaN or inf.
        """
        return _validated(self.name, self.score(batch), len(batch), batch.device)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def _validated(name: str, scores: Any, n: int, device: torch.device) -> torch.Tensor:
    if isinstance(scores, torch.Tensor):
        out = scores
    elif isinstance(scores, (dict, str, bytes)) or not hasattr(scores, "__iter__"):
        raise ValueError(f"reward {name!r} must return {n} numbers, got a {type(scores).__name__}: {_preview(scores)}")
    else:
        try:
            values = list(scores)
            if any(isinstance(v, (str, bytes)) for v in values):
                raise TypeError
            out = torch.tensor([float(v) for v in values], dtype=torch.float32)
        except (TypeError, ValueError):
            raise ValueError(
                f"reward {name!r} must return {n} numbers, got {_preview(scores)}"
            ) from None
    if not (out.dtype.is_floating_point or out.dtype in (torch.int32, torch.int64, torch.bool)):
        raise ValueError(f"reward {name!r} must return numbers, got a tensor of {out.dtype}")
    out = out.to(device=device, dtype=torch.float32)
    if out.shape != (n,):
        raise ValueError(f"reward {name!r} must return one score per episode ({n}), got shape {tuple(out.shape)}")
    if not bool(torch.isfinite(out).all()):
        bad = int((~torch.isfinite(out)).nonzero()[0])
        raise ValueError(f"reward {name!r} returned {out[bad].item()} for episode {bad}: scores must be finite")
    return out


def _preview(x: Any) -> str:
    s = repr(x)
    return s if len(s) < 80 else s[:77] + "..."


class TextReward(Reward):
    """A text metric ``(prediction, references) -> float`` applied to each episode's completion.

    Args:
        metric: e.g. :func:`textgym.rewards.metrics.f1_score`.
        name: the reward's name.
        **kwargs: extra arguments for ``metric`` (e.g. ``normalize=True`` for exact match).
    """

    def __init__(self, metric: Callable[..., float], name: str | None = None, **kwargs: Any) -> None:
        self.metric, self.kwargs = metric, kwargs
        self.name = name or metric.__name__

    def score(self, batch: EpisodeBatch) -> list[float]:
        return [self.metric(c, refs, **self.kwargs) for c, refs in zip(batch.completions, batch.references)]


class TokenAccuracy(Reward):
    """Per-position token accuracy against the best reference, on token ids.

    ``matches / max(len(completion), len(reference))``: the fraction of positions where the
    completion has the reference's token, so a completion that is too short or too long loses the
    positions it misses or adds. 1.0 exactly when the completion's ids equal the reference's.
    An empty completion for an empty reference scores 1.0. Range: [0, 1]. Runs on the device.
    """

    name = "token_accuracy"
    on_device = True

    def score(self, batch: EpisodeBatch) -> torch.Tensor:
        comp, ref = batch.completion_ids, batch.reference_ids  # (B, T), (B, R, L)
        width = min(comp.shape[1], ref.shape[2])
        pos = torch.arange(width, device=comp.device)
        comp_len = batch.completion_len[:, None]  # (B, 1)
        ref_len = batch.reference_len  # (B, R)
        same = comp[:, None, :width] == ref[:, :, :width]  # (B, R, W)
        inside = (pos < comp_len[..., None]) & (pos < ref_len[..., None])
        matches = (same & inside).sum(-1)  # (B, R)
        denom = torch.maximum(comp_len, ref_len)
        acc = torch.where(denom > 0, matches / denom.clamp(min=1), 1.0)
        acc = torch.where(ref_len >= 0, acc, -1.0)  # absent references never win the max
        return acc.max(dim=1).values


class FunctionReward(Reward):
    """A user's plain function ``(prompts, completions, references) -> list[float]`` as a reward.

    ``references`` is a list (one per episode) of lists of strings.
    """

    def __init__(self, fn: Callable[[list[str], list[str], list[list[str]]], Any], name: str | None = None) -> None:
        self.fn = fn
        self.name = name or getattr(fn, "__name__", type(fn).__name__)

    def score(self, batch: EpisodeBatch) -> Any:
        return self.fn(batch.prompts, batch.completions, batch.references)


class TaskScore(Reward):
    """The task's own judge (:meth:`textgym.tasks.Task.score`): the reward of the puzzles, whose
    right answers are many (any shortest path, any expression that reaches the target).

    A token env binds it to its task (``reward="task"``); outside an env, pass the task:
    ``TaskScore(task)``. Range: the task's (the puzzles: [0, 1]).
    """

    name = "task"

    def __init__(self, task: Any = None, tokenizer: Any = None) -> None:
        self.task, self._tokenizer, self._table = None, None, None
        if task is not None:
            self.bind(task, tokenizer)

    def bind(self, task: Any, tokenizer: Any = None) -> None:
        """Score with ``task``'s judge. A task that judges token ids (a puzzle written on tensors:
        Hanoi, Lights Out) and writes each symbol as one token of ``tokenizer`` is scored on the
        device, a batch at once (:attr:`on_device`); any other reads the decoded text.

        Raises:
            ValueError: ``task`` has no judge of its own.
        """
        if type(task).score is Task.score:
            raise ValueError(f"reward 'task' scores with the task's own judge, and task {task.name!r} has none: "
                             "use it with a task that defines score() (the puzzles: countdown, hanoi, sudoku, maze, "
                             "lights_out; reasoning_gym), or choose another reward")
        self.task = task
        reads = getattr(task, "token_symbols", None)
        # token id -> the task's symbol, for the env's tokenizer (moved to the episodes' device when first used)
        self._tokenizer, self._table = tokenizer, None if tokenizer is None or reads is None else reads(tokenizer, "cpu")
        self.on_device = self._table is not None

    def bound(self) -> Any:
        """The task it judges with.

        Raises:
            ValueError: it is bound to none yet.
        """
        if self.task is None:
            raise ValueError(f"reward {self.name!r} is not bound to a task: use it as a token env's reward, or "
                             f"{type(self).__name__}(task)")
        return self.task

    def score(self, batch: EpisodeBatch) -> torch.Tensor | list[float]:
        task = self.bound()
        if self.on_device and batch.tokenizer is self._tokenizer:
            self._table = self._table.to(batch.device)
            return task.judge_tokens(self._table, batch.prompt_ids, batch.prompt_len, batch.completion_ids,
                                     batch.completion_len)
        return [task.score(ex, c) for ex, c in zip(batch.examples, batch.completions)]


class FormatReward(TaskScore):
    """1.0 when an answer can be read from the completion in the chat env's answer format, else 0.0
    (:meth:`textgym.tasks.ChatTask.format_ok`): a reward for answering in the format asked, to weigh
    with the judge, ``reward=[["task", 1.0], ["format", 0.1]]``. A token env with ``chat=...`` binds
    it to its task (``reward="format"``); outside an env, pass the task: ``FormatReward(chat_task)``.
    """

    name = "format"

    def bind(self, task: Any, tokenizer: Any = None) -> None:
        """Read answers in ``task``'s format (from the decoded text, whatever the tokenizer).

        Raises:
            ValueError: ``task`` reads no answers (it is not a chat task).
        """
        if not callable(getattr(task, "format_ok", None)):
            raise ValueError(f"reward 'format' checks the answer format of a chat env, and task {task.name!r} has none: "
                             "make the env with chat=True (or chat={'answer': 'last_number' | 'tag' | 'text'}), "
                             "or choose another reward")
        self.task = task

    def score(self, batch: EpisodeBatch) -> list[float]:
        task = self.bound()
        return [float(task.format_ok(c)) for c in batch.completions]


class WeightedSum(Reward):
    """``Σ weight_i · reward_i``, each part validated on its own (errors name the part).

    Args:
        parts: ``(reward, weight)`` pairs; a reward may be anything :func:`make` accepts.
    """

    def __init__(self, parts: Sequence[tuple[Any, float]]) -> None:
        if not parts:
            raise ValueError("a weighted sum of rewards needs at least one (reward, weight) pair")
        self.parts: list[tuple[Reward, float]] = []
        for item in parts:
            if not (isinstance(item, (tuple, list)) and len(item) == 2):
                raise ValueError(f"expected (reward, weight) pairs, got {item!r}")
            spec, weight = item
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
                raise ValueError(f"weight of reward {spec!r} must be a finite number, got {weight!r}")
            self.parts.append((make(spec), float(weight)))
        self.name = " + ".join(f"{w:g}*{r.name}" for r, w in self.parts)

    @property
    def on_device(self) -> bool:  # a part may turn on the device when an env binds it to its task
        return all(r.on_device for r, _ in self.parts)

    def score(self, batch: EpisodeBatch) -> torch.Tensor:
        return sum(w * r(batch) for r, w in self.parts)

    def state_dict(self) -> dict[str, Any]:
        return {str(i): r.state_dict() for i, (r, _) in enumerate(self.parts) if r.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for i, (r, _) in enumerate(self.parts):
            r.load_state_dict(state.get(str(i), {}))


REWARDS: dict[str, Callable[..., Reward] | str] = {
    "exact_match": lambda **kw: TextReward(metrics.exact_match_score, "exact_match", **kw),
    "f1": lambda: TextReward(metrics.f1_score, "f1"),
    "bleu": lambda **kw: TextReward(metrics.bleu_score, "bleu", **kw),
    "chrf": lambda: TextReward(metrics.chrf_score, "chrf"),
    "rouge_l": lambda: TextReward(metrics.rouge_l_score, "rouge_l"),
    "token_accuracy": TokenAccuracy,
    "task": TaskScore,
    "format": FormatReward,
    # by entry point, imported on first use: the reward model needs the transformer, the review rule
    # the review task, the classifier transformers (and each of them imports this module)
    "reward_model": "textgym.rewards.model:LearnedReward",
    "review_rule": "textgym.review:ReviewRule",
    "hf_classifier": "textgym.rewards.classifier:HFClassifierReward",
}
"""The named rewards: a factory called with the ``reward_kwargs``, or its ``"module:Name"`` entry point."""


def _named_reward(spec: str, kwargs: dict) -> Reward:
    """The reward ``"module:name"`` names: a :class:`Reward` (as is), a :class:`Reward` subclass
    (built with ``kwargs``), or a function ``(prompts, completions, references) -> scores``."""
    found = resolve(spec, f"reward {spec!r}")
    if isinstance(found, type) and issubclass(found, Reward):
        try:
            return found(**kwargs)
        except TypeError as e:
            raise TypeError(f"reward {spec!r}: {e}") from None
    if kwargs:
        raise TypeError(f"reward {spec!r} names {type(found).__name__} {getattr(found, '__name__', '')!r}, which takes "
                        f"no reward_kwargs (got {sorted(kwargs)}): only a Reward subclass is built with them")
    if isinstance(found, Reward):
        return found
    if callable(found):
        return FunctionReward(found, name=spec.partition(":")[2])
    raise TypeError(f"reward {spec!r} names a {type(found).__name__}: expected a function (prompts, completions, "
                    "references) -> scores, a Reward or a Reward subclass")


def make(spec: Any, **kwargs: Any) -> Reward:
    """Build a reward.

    Args:
        spec: one of

            * a name: ``"exact_match"`` (kwarg ``normalize``), ``"f1"``, ``"bleu"``, ``"chrf"``,
              ``"rouge_l"``, ``"token_accuracy"``, ``"task"`` (the task's own judge, :class:`TaskScore`), ``"format"`` (a chat
              env's answer can be read, :class:`FormatReward`), ``"reward_model"`` (kwargs ``path``, ``normalize``,
              ``device``: a model trained with ``textgym train-rm``), ``"review_rule"`` (the hidden
              rule of the review task, :mod:`textgym.review`), ``"hf_classifier"`` (kwargs
              ``path``, ``label``, ``output``...: a Hugging Face sequence classifier, see
              :class:`textgym.rewards.classifier.HFClassifierReward`);
            * ``"module:name"``: your own function ``(prompts, completions, references) -> scores``, a
              :class:`Reward`, or a :class:`Reward` subclass (built with ``kwargs``), imported from
              ``module`` (the current folder is searched too, see :mod:`textgym.names`);
            * a list of ``(spec, weight)`` pairs: their weighted sum;
            * a :class:`Reward` (returned as is);
            * a plain function ``(prompts, completions, references) -> list[float]``.
        **kwargs: arguments of the named reward.

    Returns:
        A :class:`Reward`.

    Raises:
        ValueError: an unknown name (the message lists the known ones).

    Example:
        >>> reward = make([("f1", 0.7), ("exact_match", 0.3)])
        >>> reward.name
        '0.7*f1 + 0.3*exact_match'
    """
    if isinstance(spec, Reward):
        return spec
    if isinstance(spec, str):
        if spec not in REWARDS and split_name(spec) is not None:
            return _named_reward(spec, kwargs)
        if spec not in REWARDS:
            raise ValueError(f"unknown reward {spec!r}: expected one of {sorted(REWARDS)}, or MODULE:NAME of your "
                             "own (a function (prompts, completions, references) -> scores, or a Reward class)")
        factory = REWARDS[spec]
        if isinstance(factory, str):
            factory = resolve(factory, f"reward {spec!r}")
        try:
            return factory(**kwargs)
        except TypeError as e:
            raise TypeError(f"reward {spec!r}: {e}") from None
    if isinstance(spec, (list, tuple)):
        return WeightedSum(spec)
    if callable(spec):
        return FunctionReward(spec)
    raise TypeError(
        f"cannot make a reward from {type(spec).__name__}: expected a name {sorted(REWARDS)}, "
        "a list of (reward, weight) pairs, a Reward or a function (prompts, completions, references)"
    )
