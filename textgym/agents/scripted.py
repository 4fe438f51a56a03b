"""Scripted players: the optimal or reference behaviour of each env, as a policy ``obs -> action``.

They set the ceiling a learned agent is measured against (binary search plays the guessing game
in 5.80 guesses on average over 1..100), check that an env rewards the right behaviour, and write
demonstrations for supervised fine-tuning. Each env states its own player (its ``expert``
method); this module only finds it, so a new env brings its expert without touching the agents.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def scripted_policy(env: Any) -> Callable[[Any], int]:
    """The scripted policy ``obs -> action`` of a single textgym env (wrapped or not): its ``expert``.

    Raises:
        TypeError: the env has no expert.
    """
    base = env.unwrapped
    if not callable(getattr(base, "expert", None)):
        raise TypeError(f"no scripted policy for {type(base).__name__}: the env has no expert(obs) method")
    return base.expert


def vector_expert(envs: Any) -> Callable[[Any], torch.Tensor]:
    """The scripted player of a whole textgym vector env, as tensor operations: ``obs -> actions (B,)``.

    It may read the env's own state (the references of the current examples, the interval of
    secrets still possible), which makes it a teacher for demonstrations rather than a fair player.

    Raises:
        TypeError: the env declares no expert (``has_expert`` is false).
    """
    if not getattr(envs, "has_expert", False):
        raise TypeError(f"{type(envs).__name__} has no expert to imitate: SFT needs an env with has_expert = True")
    return envs.expert
