"""What textgym has, by name: the registered envs (ids, entry points, descriptions, and their
registration with Gymnasium) and the trainers (``textgym train NAME``).

Nothing here imports torch, the envs or the trainers: entries are ``"module:Name"`` strings, as
Gymnasium registers envs. ``import textgym`` registers the ids at once, ``gym.make`` imports an
env's module when it first makes one, and the CLI imports a trainer when it runs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym


@dataclass(frozen=True)
class EnvInfo:
    """One registered env: its id, entry points, default kwargs and a one-line description."""

    id: str
    entry_point: str
    vector_entry_point: str
    description: str
    default_reward: str
    kwargs: dict[str, Any] = field(default_factory=dict)


_TURNS = "textgym.envs.multi_turn:MultiTurnEnv"
_TURNS_VEC = "textgym.envs.multi_turn:MultiTurnVectorEnv"
_TOKEN = "textgym.envs.token_generation:TokenGenerationEnv"
_TOKEN_VEC = "textgym.envs.token_generation:TokenGenerationVectorEnv"

ENVS: tuple[EnvInfo, ...] = (
    EnvInfo("textgym/GuessNumber-v0", "textgym.envs.guess_number:GuessNumberEnv",
            "textgym.envs.guess_number:GuessNumberVectorEnv",
            "guess a secret in 1..100 from higher/lower feedback", "+1 right, -0.1 per wrong guess"),
    EnvInfo("textgym/GuessNumberText-v0", "textgym.envs.guess_number_text:GuessNumberTextEnv",
            "textgym.envs.guess_number_text:GuessNumberTextVectorEnv",
            "the guessing game in text: write digits, read feedback", "+1 right, -0.1 per wrong guess"),
    EnvInfo("textgym/TokenGeneration-v0", _TOKEN, _TOKEN_VEC,
            "any task (name, list, JSONL, HF dataset), tokenizer and reward", "exact_match",
            {"task": "copy", "reward": "exact_match"}),
    EnvInfo("textgym/Copy-v0", _TOKEN, _TOKEN_VEC, "copy a string over 'abcdef' of length 2-6: 'abc=' -> 'abc'",
            "token_accuracy", {"task": "copy", "reward": "token_accuracy"}),
    EnvInfo("textgym/Reverse-v0", _TOKEN, _TOKEN_VEC, "reverse a string over 'abcdef' of length 2-6: 'abc=' -> 'cba'",
            "token_accuracy", {"task": "reverse", "reward": "token_accuracy"}),
    EnvInfo("textgym/Sort-v0", _TOKEN, _TOKEN_VEC, "sort the characters of a string: 'cab=' -> 'abc'",
            "token_accuracy", {"task": "sort", "reward": "token_accuracy"}),
    EnvInfo("textgym/Addition-v0", _TOKEN, _TOKEN_VEC, "add two numbers of 1-3 digits: '12+7=' -> '19'",
            "token_accuracy", {"task": "addition", "reward": "token_accuracy"}),
    *(EnvInfo(f"textgym/{name}-v0", _TOKEN, _TOKEN_VEC, description, f"task ({pays})", {"task": task, "reward": "task"})
      for name, task, description, pays in (  # the puzzles: the task's own judge pays
        ("Countdown", "countdown", "reach the target from 3 numbers with + - * /: '3,5,7:22=' -> '3*5+7'; "
         "difficulty = how many numbers (2-6)", "1 if the expression is right"),
        ("Hanoi", "hanoi", "move a tower of 3 discs: '3AC=' -> 'ACABCBACBABCAC'; difficulty = discs (1-7)",
         "optimal moves / moves if legal"),
        ("Sudoku", "sudoku", "fill a 4x4 Sudoku's empty cells: '12.4/34../2143/4.21=' -> '3123'; "
         "difficulty = empty cells (1-10, default 6)", "1 if solved"),
        ("Maze", "maze", "a shortest path from S to G on a 4x4 grid: 'S.#/.#./..G=' -> 'DDRR'; "
         "difficulty = grid side (3-8)", "shortest / moves if it arrives"),
        ("LightsOut", "lights_out", "switch off a 3x3 Lights Out board: '110/100/000=' -> 'a'; "
         "difficulty = most presses a board is made of (1-9, default 9: no cap); size = grid side (2-5)",
         "fewest presses / presses if solved"),
    )),
    EnvInfo("textgym/Review-v0", _TOKEN, _TOKEN_VEC,
            "RLHF teaching task: review an item, 'tea:' -> 'tea is very good'; a hidden rule prefers positive words",
            "review_rule", {"task": "review", "reward": "review_rule", "max_new_tokens": 48}),
    EnvInfo("textgym/MultiTurn-v0", _TURNS, _TURNS_VEC,
            "any text env (strings in, strings out) played token by token; text_env=ID (default mastermind)",
            "the text env's, per turn", {"text_env": "mastermind"}),
    EnvInfo("textgym/Mastermind-v0", _TURNS, _TURNS_VEC,
            "find 4 pegs over 6 colours from black/white feedback: '1122' -> ' 1b2w'", "+1 found, -0.1 per wrong guess",
            {"text_env": "mastermind"}),
    EnvInfo("textgym/BullsAndCows-v0", _TURNS, _TURNS_VEC,
            "find 4 different digits from bulls/cows feedback: '0123' -> ' 1b2c'", "+1 found, -0.1 per wrong guess",
            {"text_env": "bulls_and_cows"}),
)

GENERAL = ("textgym/TokenGeneration-v0", "textgym/MultiTurn-v0")
"""The ids whose class is the general env itself (any task, any text env)."""


def class_name(info: EnvInfo, vector: bool) -> str:
    """The name of the class of a configured id in :mod:`textgym.envs` (``Reverse-v0``: ``ReverseEnv``,
    ``ReverseVectorEnv``)."""
    return info.id.split("/")[-1].split("-v")[0] + ("VectorEnv" if vector else "Env")


def register_envs() -> None:
    """Register every textgym env with Gymnasium; safe to call again.

    An id that configures a general env (``Reverse-v0`` is ``TokenGeneration-v0`` with
    ``task="reverse"``) has a class of its own name in :mod:`textgym.envs` whose docstring is the
    id's manual. textgym's envs check their own call order (``step`` before ``reset`` is
    ``ResetNeeded``) and are tested with ``check_env``, so ``gym.make`` returns the env itself, with
    no ``OrderEnforcing`` or ``PassiveEnvChecker`` wrapper: ``help(env)`` is its manual
    (``gym.make(id, disable_env_checker=False)`` adds the checker back).
    """
    for info in ENVS:
        if info.id in gym.registry:
            continue
        entry, vector = info.entry_point, info.vector_entry_point
        if info.kwargs and info.id not in GENERAL:
            entry, vector = f"textgym.envs:{class_name(info, False)}", f"textgym.envs:{class_name(info, True)}"
        gym.register(id=info.id, entry_point=entry, vector_entry_point=vector, kwargs=dict(info.kwargs),
                     order_enforce=False, disable_env_checker=True)


ENV_PROTOCOL = ("max_episode_length", "tokens_per_step", "sequence_spec", "sequence", "episode_metrics", "has_expert",
                "expert", "device", "num_envs", "single_action_space")
"""What a trainer reads from a vector env (see ``textgym.envs.core.TorchVectorEnv``'s docstring)."""

ENV_INSTANCE_FIELDS = ("device", "num_envs", "single_action_space")
"""The members of :data:`ENV_PROTOCOL` that a vector env sets per instance (the rest its class has)."""


@dataclass(frozen=True)
class TrainerInfo:
    """One trainer: what ``textgym train NAME`` runs.

    Attributes:
        name: the name on the command line.
        train: ``"module:function"``, called as ``train(cfg, policy=, out=, progress=, save_every=,
            resume=, **extra)`` and returning a ``TrainResult`` (see :func:`textgym.agents.ppo.train`).
        config: ``"module:Class"``, the trainer's config dataclass (a ``TrainConfig``).
        needs_expert: it imitates the env's ``expert()``, so an env without one is refused at the start.
        takes_data: it can train on recorded episodes instead (``--data FILE.jsonl``, ``--min-reward``).
        summary: one line for ``textgym train --help``.
    """

    name: str
    train: str
    config: str
    needs_expert: bool = False
    takes_data: bool = False
    summary: str = ""


TRAINERS: dict[str, TrainerInfo] = {}
"""The trainers by name, in the order they were registered."""


def register_trainer(name: str, train: str, config: str, needs_expert: bool = False, takes_data: bool = False,
                     summary: str = "") -> TrainerInfo:
    """Make ``textgym train NAME`` run a trainer: one line beside the trainer's own module.

    ``train`` and ``config`` are ``"module:name"`` entry points, imported when the trainer runs. A
    user's module that calls this is named on the command line as ``textgym train my_module:NAME``.

    Raises:
        ValueError: ``name`` is not a plain word, or it is taken by another trainer.
    """
    if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"a trainer's name must be a word of letters, digits, '_' and '-', got {name!r}")
    for what, spec in (("train", train), ("config", config)):
        if not isinstance(spec, str) or spec.count(":") != 1:
            raise ValueError(f"trainer {name!r}: {what} must be a 'module:name' entry point, got {spec!r}")
    info = TrainerInfo(name, train, config, bool(needs_expert), bool(takes_data), summary)
    if name in TRAINERS and TRAINERS[name] != info:
        raise ValueError(f"trainer {name!r} is registered already (as {TRAINERS[name].train}); choose another name")
    TRAINERS[name] = info
    return info


register_trainer("ppo", "textgym.agents.ppo:train", "textgym.agents.ppo:PPOConfig",
                 summary="PPO with GAE and a value head (Schulman et al., 2017)")
register_trainer("reinforce", "textgym.agents.reinforce:train", "textgym.agents.reinforce:ReinforceConfig",
                 summary="REINFORCE with a baseline: RLOO, a moving average or a value head")
register_trainer("grpo", "textgym.agents.grpo:train", "textgym.agents.grpo:GRPOConfig",
                 summary="GRPO: group-relative advantages over samples of the same prompt (Shao et al., 2024)")
register_trainer("sft", "textgym.agents.sft:train", "textgym.agents.sft:SFTConfig", needs_expert=True, takes_data=True,
                 summary="supervised fine-tuning on the env's expert, or on recorded episodes (--data)")
