"""textgym: Gymnasium environments for text generation, and the agents that learn in them.

Importing textgym registers its envs (``textgym/GuessNumber-v0``, ``textgym/Reverse-v0``, ...)::

    import gymnasium as gym
    import textgym

    env = gym.make("textgym/Reverse-v0")
    envs = gym.make_vec("textgym/Reverse-v0", num_envs=1024)  # a torch-native vector env
"""

from textgym import rewards
from textgym.envs import ENVS, register_envs
from textgym.tasks import Example, ListTask, Task, make_task
from textgym.tokenizers import CharTokenizer, HFTokenizer, as_tokenizer

register_envs()

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "play":  # imported on first use: it needs the agents
        from textgym.agents.evaluate import play

        return play
    raise AttributeError(f"module 'textgym' has no attribute {name!r}")

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
