"""Tasks: sources of ``(prompt, references)`` examples.

A task maps an integer *key* (see :mod:`textgym.seeding`) to an :class:`Example`; the env draws
one key per episode from its seed, so the same seed gives the same examples.

Built in:

* procedural character tasks, generated from the key: :class:`CopyTask`, :class:`ReverseTask`,
  :class:`SortTask`, :class:`AdditionTask` (``"12+7="`` → ``"19"``);
* :class:`ArithmeticTask`: a question about two numbers, in digits or words, with a held-out split
  (``"What is 45 + 7?"`` → ``"52"``), for pretrained language models;
* :class:`ChatTask`: any task asked through a chat model's template, its answer read back from the
  free text the model writes (:mod:`textgym.tasks.chat`; a token env's ``chat=`` argument);
* reasoning puzzles with optimal solvers and a ``difficulty`` knob, judged by their rules
  (:mod:`textgym.tasks.puzzles`): :class:`CountdownTask`, :class:`HanoiTask`, :class:`SudokuTask`,
  :class:`MazeTask`, :class:`LightsOutTask` (:class:`TensorPuzzle`: a puzzle judged on tensors);
* :class:`ReasoningGymTask`: any of Reasoning Gym's datasets, scored by its own scorer (an optional extra);
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

import os
from typing import Any

from textgym.names import resolve, split_name
from textgym.tasks.arithmetic import AdditionTask, ArithmeticTask
from textgym.tasks.chat import ANSWER_FORMATS, ChatTask, extract_answer
from textgym.tasks.core import EncodedExamples, Example, SymbolTask, Task, encode_examples
from textgym.tasks.data import ListTask, iter_jsonl
from textgym.tasks.puzzles import (
    CountdownTask,
    HanoiTask,
    LightsOutTask,
    MazeTask,
    PuzzleTask,
    SudokuTask,
    TensorPuzzle,
)
from textgym.tasks.reasoning_gym import ReasoningGymTask
from textgym.tasks.strings import CopyTask, ReverseTask, SortTask, StringTask

TASKS: dict[str, type[Task] | str] = {
    "copy": CopyTask,
    "reverse": ReverseTask,
    "sort": SortTask,
    "addition": AdditionTask,
    "arithmetic": ArithmeticTask,
    "countdown": CountdownTask,
    "hanoi": HanoiTask,
    "sudoku": SudokuTask,
    "maze": MazeTask,
    "lights_out": LightsOutTask,
    "reasoning_gym": ReasoningGymTask,
    "review": "textgym.review:ReviewTask",  # by entry point: Review-v0's module imports the rewards, which import this
}
"""The named tasks: a :class:`Task` class, or its ``"module:Name"`` entry point (imported on first use)."""


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
        spec: ``"copy"``, ``"reverse"``, ``"sort"``, ``"addition"``, ``"arithmetic"``, ``"review"``, ``"countdown"``,
            ``"hanoi"``, ``"sudoku"``, ``"maze"``, ``"lights_out"``, ``"reasoning_gym"``; a path to a JSONL file; a list
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
            task = TASKS[s]
            return (resolve(task, f"task {s!r}") if isinstance(task, str) else task)(**kwargs)
        if s.endswith(".jsonl") or os.path.isfile(s):
            return ListTask.from_jsonl(s)
        if split_name(s) is not None:
            return _named_task(s, kwargs)
        raise ValueError(f"unknown task {s!r}: expected one of {sorted(TASKS)}, a path to a .jsonl file or "
                         "MODULE:NAME of your own (a Task, a Task class, a list of examples or a function returning one)")
    if isinstance(spec, (list, tuple)):
        return ListTask(spec)
    raise TypeError(f"cannot make a task from {type(spec).__name__}: expected a name, a .jsonl path, a list or a Task")


__all__ = ["ANSWER_FORMATS", "AdditionTask", "ArithmeticTask", "ChatTask", "CopyTask", "CountdownTask", "EncodedExamples", "Example", "HanoiTask", "LightsOutTask",
           "ListTask", "MazeTask", "PuzzleTask", "ReasoningGymTask", "ReverseTask", "SortTask", "StringTask", "SudokuTask", "SymbolTask", "TASKS", "TensorPuzzle", "Task", "encode_examples", "extract_answer", "iter_jsonl", "make_task", "register_task"]
