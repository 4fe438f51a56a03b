"""Recipes: the settings with which an algorithm learns an env, measured, shipped as data.

``textgym/recipes.json`` holds, for each env and algorithm that has one, the config fields (budget,
learning rate, model size, ...) and env arguments (shaping, ...) that reached the result it
records, as RL Zoo's hyperparameter files do for Stable-Baselines3. ``textgym train ALGO --env ID``
starts from the recipe, and ``--set``, ``--env-kwargs`` and the other flags override it;
``textgym recipes`` lists them all. ``benchmarks/learning.py`` trains every recipe.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any


@dataclass(frozen=True)
class Recipe:
    """One env's settings for one algorithm.

    Attributes:
        env_id: the env.
        algo: ``"ppo"``, ``"reinforce"``, ``"grpo"`` or ``"sft"``.
        config: trainer config fields (``total_steps``, ``learning_rate``, ...).
        env_kwargs: the env's arguments.
        result: what it reached, and how it was measured.
    """

    env_id: str
    algo: str
    config: dict[str, Any] = field(default_factory=dict)
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    result: str = ""


@cache
def all_recipes() -> tuple[Recipe, ...]:
    """Every shipped recipe, in the file's order."""
    data = json.loads(resources.files("textgym").joinpath("recipes.json").read_text())
    return tuple(Recipe(env_id, algo, **spec) for env_id, algos in data.items() for algo, spec in algos.items())


def find_recipe(env_id: str, algo: str, required: bool = False) -> Recipe | None:
    """The recipe of ``algo`` on ``env_id``, or None.

    Raises:
        ValueError: with ``required``, there is none; the message lists what exists.
    """
    for recipe in all_recipes():
        if (recipe.env_id, recipe.algo) == (env_id, algo):
            return recipe
    if required:
        here = sorted(r.algo for r in all_recipes() if r.env_id == env_id)
        listed = ", ".join(f"{r.algo} on {r.env_id}" for r in all_recipes())
        raise ValueError(f"no {algo} recipe for {env_id}: "
                         + (f"it has recipes for {here}" if here else f"the recipes are: {listed}"))
    return None
