"""A user's own code, named as ``"module:name"``: one rule for text envs, env ids, tasks, rewards
and tokenizers.

Everywhere textgym takes a name it also takes ``"module:name"``: ``module`` is imported and
``name`` (a dotted path inside it) is looked up. ``module`` is found as Python finds it, and then
in the current folder, so ``textgym train ... --env-kwargs '{"reward": "my_rewards:vowels"}'`` works
in the folder that holds ``my_rewards.py`` as ``python -m textgym`` does. The current folder is
searched last: it never hides an installed package.

**Names in a run folder are data.** A run's ``config.json`` records the names it was trained with.
Loading a run (``textgym eval``, ``--resume``, :func:`textgym.agents.evaluate.load_run`) imports
none of them unless the user trusts the run (``--trust-code``, ``trust_code=True``), as
``transformers`` asks for ``trust_remote_code``: :func:`code_names` lists what a config would import.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from types import ModuleType
from typing import Any

_NAME = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*):(.+)$")
"""``module:rest`` with ``module`` a dotted Python module name."""


def split_name(spec: Any) -> tuple[str, str] | None:
    """``(module, rest)`` for a string ``"module:rest"``, else None."""
    if not isinstance(spec, str):
        return None
    match = _NAME.match(spec)
    return (match.group(1), match.group(2)) if match else None


def import_user_module(module: str, what: str) -> ModuleType:
    """Import ``module`` for ``what`` (e.g. ``"reward 'my_rewards:vowels'"``); where Python does not
    find it, the current folder is searched too (appended to ``sys.path``, so it never shadows an
    installed module).

    Raises:
        ImportError: the module is nowhere; the message names it, ``what`` asked for it, and the
            folder searched.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        top = module.split(".")[0]
        if e.name not in (module, top):
            raise  # the module was found, and something it imports is missing: that error is the user's
        cwd = os.getcwd()
        if cwd not in [os.path.abspath(p or ".") for p in sys.path]:
            sys.path.append(cwd)
            importlib.invalidate_caches()
            try:
                return importlib.import_module(module)
            except ModuleNotFoundError as again:
                if again.name not in (module, top):
                    raise
        raise ImportError(f"{what}: cannot import module {module!r}: it is not installed and there is no "
                          f"{top}.py or {top}/ in the current folder {cwd}") from None


def resolve(spec: str, what: str) -> Any:
    """The object ``"module:name"`` names (``name`` may be dotted: ``"pkg.mod:Class.method"``).

    Raises:
        ValueError: ``spec`` is not of the form ``module:name``.
        ImportError: the module cannot be imported (see :func:`import_user_module`).
        ValueError: the module has no such name.
    """
    parts = split_name(spec)
    if parts is None or not all(p.isidentifier() for p in parts[1].split(".")):
        raise ValueError(f"{what}: expected MODULE:NAME, got {spec!r}")
    module, name = parts
    found: Any = import_user_module(module, what)
    for attr in name.split("."):
        if not hasattr(found, attr):
            raise ValueError(f"{what}: module {module!r} ({getattr(found, '__file__', None) or module}) has no "
                                 f"{name!r}")
        found = getattr(found, attr)
    return found


def import_env_module(env_id: str) -> None:
    """For an env id ``"module:Id-v0"``, import ``module`` (which registers the id) as Gymnasium
    would, with the current folder searched too; a plain id imports nothing."""
    parts = split_name(env_id)
    if parts is not None:
        import_user_module(parts[0], f"env {env_id!r}")


def vector_env_class(env_id: str) -> Any:
    """The vector entry point of the registered env ``env_id`` (``"module:Id"`` imports ``module``
    first), loaded as Gymnasium loads it; None for an id with none."""
    import gymnasium as gym
    from gymnasium.envs.registration import load_env_creator

    import_env_module(env_id)
    parts = split_name(env_id)
    spec = gym.registry.get(parts[1] if parts else env_id)
    entry = getattr(spec, "vector_entry_point", None)
    return load_env_creator(entry) if isinstance(entry, str) else entry


def is_textgym_name(module: str) -> bool:
    return module == "textgym" or module.startswith("textgym.")


NAMED_FIELDS = ("text_env", "task", "reward", "tokenizer")
"""The env arguments that textgym resolves as names (and so may import a module)."""


def code_names(env_id: Any, env_kwargs: Any) -> list[str]:
    """Every name in an env id and its arguments that making the env would import from a module
    other than textgym's own, as ``"field 'module:name'"``: what loading a run config would run.
    Only the fields textgym resolves as names are read (``MODULE:ID`` env ids, and ``text_env``,
    ``task``, ``reward`` (also each part of a weighted sum) and ``tokenizer``), so a prompt that
    holds a colon is not mistaken for code."""
    candidates: list[tuple[str, Any]] = [("env_id", env_id)]
    if isinstance(env_kwargs, dict):
        for key in NAMED_FIELDS:
            value = env_kwargs.get(key)
            if key == "reward" and isinstance(value, (list, tuple)):
                candidates += [(f"env_kwargs.reward[{i}]", part[0] if isinstance(part, (list, tuple)) and part else part)
                               for i, part in enumerate(value)]
            else:
                candidates.append((f"env_kwargs.{key}", value))
    found = []
    for where, value in candidates:
        parts = split_name(value)
        if parts is not None and not is_textgym_name(parts[0]):
            found.append(f"{where} {value!r}")
    return found
