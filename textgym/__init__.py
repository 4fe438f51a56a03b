"""textgym: Gymnasium environments for text generation, and the agents that learn in them.

Importing textgym registers its envs (``textgym/GuessNumber-v0``, ``textgym/Reverse-v0``, ...)::

    import gymnasium as gym
    import textgym

    env = gym.make("textgym/Reverse-v0")
    envs = gym.make_vec("textgym/Reverse-v0", num_envs=1024)  # a torch-native vector env

The registration imports neither torch nor the envs: ``gym.make`` imports an env when it first
makes one, and the names below are imported on first use.
"""

from importlib import import_module

from textgym.registry import ENVS, register_envs

register_envs()

__version__ = "0.1.0"

_LAZY = {
    "rewards": ("textgym.rewards", None),
    "Example": ("textgym.tasks", "Example"),
    "ListTask": ("textgym.tasks", "ListTask"),
    "Task": ("textgym.tasks", "Task"),
    "make_task": ("textgym.tasks", "make_task"),
    "CharTokenizer": ("textgym.tokenizers", "CharTokenizer"),
    "HFTokenizer": ("textgym.tokenizers", "HFTokenizer"),
    "as_tokenizer": ("textgym.tokenizers", "as_tokenizer"),
    "play": ("textgym.agents.evaluate", "play"),
}
"""What ``textgym.<name>`` gives, imported on first use (they need torch)."""


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = import_module(module) if attr is None else getattr(import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'textgym' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "ENVS",
    "CharTokenizer",
    "Example",
    "HFTokenizer",
    "ListTask",
    "Task",
    "as_tokenizer",
    "make_task",
    "play",
    "register_envs",
    "rewards",
]
