"""textgym's Gymnasium environments, and a class of its own name for each configured id
(``textgym.envs.ReverseEnv``: ``TokenGeneration-v0`` with ``task="reverse"``), whose docstring is
the id's manual. The ids are registered by :mod:`textgym.registry`."""

from __future__ import annotations

import inspect

from gymnasium.envs.registration import load_env_creator

from textgym.envs.code_games import TEXT_GAMES, BullsAndCows, Mastermind
from textgym.envs.guess_number import GuessNumberEnv, GuessNumberVectorEnv
from textgym.envs.guess_number_text import GuessNumberTextEnv, GuessNumberTextVectorEnv
from textgym.envs.multi_turn import MultiTurnEnv, MultiTurnVectorEnv
from textgym.envs.token_generation import TokenGenerationEnv, TokenGenerationVectorEnv
from textgym.registry import ENVS, GENERAL, EnvInfo, class_name, register_envs
from textgym.tasks import TASKS, PuzzleTask


def _manual(info: EnvInfo, base: type, vector: bool) -> type:
    """The class of one registered id: ``base`` (the env it configures) under the id's own name,
    with the id's manual first, then ``base``'s, so that ``help(env)`` is the manual of that id."""
    name = class_name(info, vector)
    defaults = ", ".join(f"{k}={v!r}" for k, v in info.kwargs.items())
    make = f'gym.make_vec("{info.id}", num_envs=N)' if vector else f'gym.make("{info.id}")'
    task = TASKS.get(info.kwargs.get("task"))
    rules = (f"{task.__name__}\n{'-' * len(task.__name__)}\n{inspect.cleandoc(task.__doc__)}\n\n"
             f"Its arguments go in ``task_kwargs``: ``gym.make(\"{info.id}\", task_kwargs={{\"difficulty\": {task.difficulties[0]}}})`` (the easiest).\n\n"
             if isinstance(task, type) and issubclass(task, PuzzleTask) else "")  # the puzzle's rules and knob
    doc = (f"{info.id}: {info.description}.\n\n"
           f"``{make}`` is :class:`{base.__module__}.{base.__name__}` with {defaults}. Reward: {info.default_reward}. "
           f"Every argument below can be changed: ``gym.make(\"{info.id}\", name=value)``.\n\n{rules}"
           f"{base.__name__}\n{'-' * len(base.__name__)}\n{inspect.cleandoc(base.__doc__ or '')}")
    cls = type(name, (base,), {"__doc__": doc, "__module__": __name__, "__qualname__": name})
    globals()[name] = cls  # importable as textgym.envs.<Name>, so the env pickles by reference
    return cls


for _info in ENVS:
    if _info.kwargs and _info.id not in GENERAL:
        _manual(_info, load_env_creator(_info.entry_point), False)
        _manual(_info, load_env_creator(_info.vector_entry_point), True)


__all__ = [
    "ENVS",
    "TEXT_GAMES",
    "BullsAndCows",
    "Mastermind",
    "MultiTurnEnv",
    "MultiTurnVectorEnv",
    "EnvInfo",
    "GuessNumberEnv",
    "GuessNumberTextEnv",
    "GuessNumberTextVectorEnv",
    "GuessNumberVectorEnv",
    "TokenGenerationEnv",
    "TokenGenerationVectorEnv",
    "register_envs",
]
