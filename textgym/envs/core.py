"""What every textgym env shares: action checks, episode keys, and the torch vector env base.

Vector envs subclass :class:`TorchVectorEnv` and implement three methods on masks of sub-envs:
``_start(mask, keys)`` begins new episodes, ``_advance(actions, active)`` applies one action to the
running ones, ``_observe()`` returns the batched observation. The base class does the Gymnasium
parts once: seeding, autoreset, ``reset_mask``, ``max_episode_steps``, action checks, the info
convention (``info[k]`` with its mask ``info["_k"]``, and ``is_success`` at episode ends) and
numpy or torch arrays at the boundary.

A vector env also tells a trainer what it needs, so that ``textgym.agents`` never names an env
class: see "The env -> trainer protocol" in :class:`TorchVectorEnv`'s docstring.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.error import ResetNeeded
from gymnasium.vector import AutoresetMode, VectorEnv

from textgym.envs.curriculum import Curriculum
from textgym.seeding import as_stream, episode_key, hash32


def arguments_of(*sources: Callable, skip: tuple[str, ...] = ()) -> Callable:
    """Decorator for an env's ``__init__(self, ..., **kwargs)`` that hands ``**kwargs`` on to ``sources``.

    The game's arguments are written once, where they are checked (the signature of the game's
    rules class or builder; for a vector env also :class:`TorchVectorEnv`'s), and both forms of
    the game (the single env and its vector env) take them. The decorated ``__init__`` shows them
    in its signature (``help(env)``, ``inspect.signature``) as keyword-only arguments in place of
    ``**kwargs``, and refuses an argument that none names, as Python does. ``skip``: arguments of
    the sources that the env sets itself. :func:`pop_arguments` splits ``**kwargs`` between them.
    """
    kinds = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)

    def decorate(init: Callable) -> Callable:
        own = inspect.signature(init)
        taken = set(own.parameters) | set(skip)
        extra = []
        for source in sources:
            for p in inspect.signature(source).parameters.values():
                if p.name not in taken and p.kind not in kinds:
                    extra.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY))
                    taken.add(p.name)
        ordered = [p for p in own.parameters.values() if p.kind not in kinds and p.kind != inspect.Parameter.KEYWORD_ONLY]
        keyword = [p for p in own.parameters.values() if p.kind == inspect.Parameter.KEYWORD_ONLY]
        signature = own.replace(parameters=ordered + extra + keyword)

        @functools.wraps(init)
        def checked(*args: Any, **kwargs: Any) -> None:
            try:
                signature.bind(*args, **kwargs)
            except TypeError as e:
                raise TypeError(f"{init.__qualname__.removesuffix('.__init__')}(): {e}") from None
            init(*args, **kwargs)

        checked.__signature__ = signature
        return checked

    return decorate


def pop_arguments(kwargs: dict[str, Any], taker: Callable) -> dict[str, Any]:
    """The entries of ``kwargs`` that ``taker`` names as parameters, taken out of ``kwargs``: how an
    ``__init__`` decorated with :func:`arguments_of` splits its ``**kwargs`` between its sources."""
    names = inspect.signature(taker).parameters
    return {k: kwargs.pop(k) for k in list(kwargs) if k in names}


def check_action(action: Any, n: int) -> int:
    """The action as a Python int in ``[0, n)``, or a ValueError that says what was wrong."""
    if isinstance(action, (np.ndarray, torch.Tensor)):
        if action.ndim != 0:
            raise ValueError(f"action must be a single integer in [0, {n}), got an array of shape {tuple(action.shape)}")
        action = action.item()
    if isinstance(action, (float, np.floating)):
        what = "NaN" if math.isnan(action) else f"the float {action!r}"
        raise ValueError(f"action must be an integer in [0, {n}), got {what}")
    if isinstance(action, bool) or not isinstance(action, (int, np.integer)):
        raise ValueError(f"action must be an integer in [0, {n}), got {type(action).__name__} {action!r}")
    if not 0 <= action < n:
        raise ValueError(f"action {int(action)} is outside the action space: expected an integer in [0, {n})")
    return int(action)


def check_step(started: bool, done: bool, action: Any, n: int) -> int:
    """A single env's checks before a step: reset first, not after the end, a valid action."""
    if not started:
        raise ResetNeeded("call reset() before step()")
    if done:
        raise ResetNeeded("the episode has ended; call reset() to start the next one")
    return check_action(action, n)


def where(cond, a, b):
    """``a`` where ``cond`` holds, else ``b``: ``torch.where`` on tensors, a plain choice on Python values.

    A game's rules are written once with it and serve both of its forms: a single env calls them on
    Python values, a vector env on tensors of its sub-envs (as Gymnasium's functional envs state a
    game once over arrays).
    """
    if isinstance(cond, torch.Tensor):
        return torch.where(cond, a, b)
    return a if cond else b


MAX_NUM_ENVS = 2**24
"""The most sub-envs one vector env may have (16,777,216): more is a typo, not a batch."""
_LEVEL_SALT = 0x2545F491
"""Mixed into an episode's key before it draws the episode's level (a curriculum's ``window``)."""


def check_actions(actions: Any, n: int, num_envs: int, device: torch.device) -> torch.Tensor:
    """The batch of actions as int64 ``(num_envs,)`` on ``device``, or a ValueError."""
    if not isinstance(actions, torch.Tensor):
        array = np.asarray(actions)
        if array.dtype.kind not in "biuf":
            raise ValueError(f"actions must be integers in [0, {n}), one per sub-env, got an array of {array.dtype}")
        actions = torch.as_tensor(array)
    if actions.dtype.is_floating_point or actions.dtype == torch.bool or actions.dtype.is_complex:
        raise ValueError(f"actions must be integers in [0, {n}), got a tensor of {actions.dtype}")
    if actions.shape != (num_envs,):
        raise ValueError(f"actions must have shape ({num_envs},), one per sub-env, got {tuple(actions.shape)}")
    actions = actions.to(device=device, dtype=torch.int64)
    bad = (actions < 0) | (actions >= n)
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise ValueError(f"action {int(actions[i])} of sub-env {i} is outside the action space: expected [0, {n})")
    return actions


class EpisodeKeys:
    """The episode keys of a single env (see :mod:`textgym.seeding`).

    Keys are made in blocks, as one tensor expression each: the first block after a seed holds one
    key, and each next block twice as many (up to 256), so ``reset(seed=...)`` every episode costs
    one key and a long run of ``reset()`` costs a few tensor calls per 256 episodes. An env that
    prepares its episodes from the keys (a token task's examples) does it per block as well.
    """

    MAX_BLOCK = 256

    def __init__(self) -> None:
        self.stream: int | None = None
        self.episode = 0
        self.block: torch.Tensor = torch.zeros(0, dtype=torch.int64)  # the keys of the current block
        self.block_start = 0
        self.block_id = 0  # changes whenever a new block is made
        self.index = 0  # the last key's place in its block

    def next(self, seed: int | None, np_random: np.random.Generator) -> int:
        """Key of the next episode; a seed restarts the stream, as ``reset(seed=...)`` does."""
        if seed is not None:
            self.stream, self.episode, self.block = as_stream(seed), 0, self.block[:0]
        elif self.stream is None:
            self.stream, self.episode, self.block = int(np_random.integers(2**32)), 0, self.block[:0]
        if not self.block_start <= self.episode < self.block_start + len(self.block):
            follows = self.episode == self.block_start + len(self.block)  # the next block of the same run
            size = min(self.MAX_BLOCK, max(1, 2 * len(self.block))) if follows else 1
            self.block_start, self.block_id = self.episode, self.block_id + 1
            self.block = episode_key(torch.tensor(self.stream), torch.arange(self.episode, self.episode + size))
            self._keys = self.block.tolist()
        self.index = self.episode - self.block_start
        self.episode += 1
        return self._keys[self.index]


RENDER_MODES = ["ansi", "human", "rgb_array"]

FRAME = (360, 640)
"""The height and width of an ``rgb_array`` frame: the same for every frame, as video writers need."""


def text_image(text: str, size: tuple[int, int] = FRAME) -> np.ndarray:
    """``text`` drawn in Pillow's default font, black on white, as an ``(height, width, 3)`` uint8 image
    (``render_mode="rgb_array"``, for video wrappers such as ``gymnasium.wrappers.RecordVideo``).
    Long lines wrap; when the text is taller than the frame, its last lines are shown."""
    from PIL import Image, ImageDraw, ImageFont  # Pillow comes with matplotlib

    height, width = size
    font = ImageFont.load_default()
    left, top, right, bottom = font.getbbox("M")
    char_w, line_h = max(1, right - left), max(1, bottom - top) + 4
    cols, rows = max(1, (width - 16) // char_w), max(1, (height - 16) // line_h)
    lines = [line[i : i + cols] for line in text.splitlines() or [""] for i in range(0, max(1, len(line)), cols)]
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines[-rows:]):
        draw.text((8, 8 + i * line_h), line, fill="black", font=font)
    return np.asarray(image, dtype=np.uint8)


def render_text(render_mode: str | None, text: str) -> str | np.ndarray | None:
    """What ``render()`` returns for ``text``: the text (``"ansi"``), an image of it
    (``"rgb_array"``, see :func:`text_image`), or None after printing it (``"human"``)."""
    if render_mode == "ansi":
        return text
    if render_mode == "rgb_array":
        return text_image(text)
    if render_mode == "human":
        print(text)
        return None
    if render_mode is None:
        gym.logger.warn("render() called without a render_mode: make the env with render_mode='ansi' or 'human'")
        return None
    raise ValueError(f"render_mode {render_mode!r} is not supported: use one of {RENDER_MODES}")


def token_observation_space(length: int, vocab_size: int) -> gym.spaces.Dict:
    """``{"input_ids": Box(int64), "attention_mask": Box(int8)}`` of ``length`` positions."""
    return gym.spaces.Dict(
        {
            "input_ids": gym.spaces.Box(0, vocab_size - 1, (length,), dtype=np.int64),
            "attention_mask": gym.spaces.Box(0, 1, (length,), dtype=np.int8),
        }
    )


def pad_to(ids: list[int], length: int, pad_id: int) -> dict[str, np.ndarray]:
    """A token observation from a list of ids: fresh arrays, right-padded to ``length``."""
    input_ids = np.full(length, pad_id, dtype=np.int64)
    input_ids[: len(ids)] = ids
    mask = np.zeros(length, dtype=np.int8)
    mask[: len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": mask}


@dataclass(frozen=True)
class SequenceSpec:
    """How a policy reads a vector env's observations: as a sequence that only grows.

    Attributes:
        max_len: the longest sequence, in positions.
        vocab_size: token ids the positions hold (0 when they are feature vectors).
        n_features: the size of each position's feature vector (0 when they are token ids).
        eos_id: the token id that ends what the agent writes (None when there is none), which a
            language model must give the same meaning.
    """

    max_len: int
    vocab_size: int
    n_features: int = 0
    eos_id: int | None = None


def as_numpy(x: Any) -> Any:
    """Tensors (alone or in a dict) as numpy arrays; on the CPU this shares memory, with no copy."""
    if isinstance(x, dict):
        return {k: as_numpy(v) for k, v in x.items()}
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return x


class TorchVectorEnv(VectorEnv):
    """Base of textgym's vector envs: a batch of episodes held as torch tensors on ``device``.

    Arrays at the boundary: with ``device=None`` (the default) observations, rewards,
    ``terminated``, ``truncated`` and the info values are numpy arrays, as from Gymnasium's own
    vector envs, so Gymnasium's vector wrappers (``RecordEpisodeStatistics``, ``NormalizeReward``,
    ``NormalizeObservation``, ``DictInfoToList``, ...) and torchrl work on them. With a ``device``
    (``"cpu"``, ``"cuda"``) they are torch tensors on it, and nothing is copied: the trainers use
    this. Actions may be a tensor, a numpy array or a list of ints either way.

    Autoreset (``autoreset_mode``, also in ``metadata["autoreset_mode"]``):

    * ``"next_step"`` (default, Gymnasium's): the step after a sub-env's episode ends starts its
      next episode, ignores that sub-env's action, and returns reward 0 with
      ``terminated = truncated = False``.
    * ``"same_step"``: a sub-env whose episode ends starts the next one in the same step; the
      observation is the new episode's first, and the last one is in ``info["final_obs"]`` (with
      ``info["final_info"]``), where ``info["_final_obs"]`` is true.
    * ``"disabled"``: a finished sub-env stays finished: its actions are ignored, it returns reward
      0 and ``terminated = truncated = False``, and its observation stays the last one, until
      ``reset``. Trainers use it to play exactly one episode per sub-env.

    Info: every ``info[k]`` is an array of one entry per sub-env with its mask ``info["_k"]``
    (Gymnasium's convention). At the end of an episode ``info["is_success"]`` says whether it
    succeeded (the name Stable-Baselines3 and RL Zoo read), where ``info["_is_success"]`` is true.

    ``reset(options={"reset_mask": mask})`` restarts only the sub-envs where ``mask`` is true.

    Seeding follows Gymnasium: ``reset(seed=s)`` seeds sub-env ``i`` with ``s + i``, and sub-env
    ``i`` then plays exactly the episodes of the single env reset with ``seed=s + i``. With
    ``options={"group_size": k}`` as well, sub-envs ``i`` come in groups of ``k`` that share the
    stream ``s + i // k``, so each group plays the same examples (for leave-one-out baselines).

    ## The env -> trainer protocol

    What a trainer reads from a vector env, so that it trains on envs it has never seen. A new
    env declares these in its own module and touches nothing in ``textgym.agents``:

    * ``max_episode_length``: the most steps one episode can take (with ``max_episode_steps``).
    * ``tokens_per_step``: the most observation positions one step can add (1 for the token envs;
      more where the env writes a reply), so a policy with a KV cache knows what to read.
    * ``sequence_spec`` and ``sequence(obs)``: how a policy reads the observations as sequences
      that only grow: token ids (the default, from ``input_ids`` and ``attention_mask``), or one
      feature vector per position (GuessNumber-v0).
    * ``info["success"]`` at the end of each episode (and ``is_success``, set by this class).
    * ``episode_metrics()``: the env's own metrics (mean guesses, exact match, grammatical rate,
      ...) over the episodes the sub-envs last played, as plain names and numbers a trainer logs
      without knowing what they mean.
    * ``expert(obs)`` when ``has_expert`` is true: the scripted player's actions, for SFT.
    * ``episode_texts()`` (optional, token envs): prompt, completion and references of each
      sub-env's last episode, for text metrics.
    * ``per_step_rewards`` (optional, True when absent): whether a step before the last can be
      paid, so a trainer may credit each step with its return-to-go (GRPO's per-token advantages).
    * ``difficulties`` (``None`` when the env has no knob), ``difficulty`` and ``set_curriculum``:
      the levels of the env's difficulty, the current one, and a
      :class:`~textgym.envs.curriculum.Curriculum` that moves it to keep the success in a band.
    * ``allowed_actions`` (optional, ``None`` when absent): a ``(n_actions,)`` bool tensor of the
      actions that can ever be valid (``action_mask=True``: GuessNumberText-v0's digits and eos, a
      token env's answer characters and eos).
      Trainers, evaluation and ``play`` then sample only those, in the rollouts and in the
      log-probs of the updates alike, as sb3-contrib's MaskablePPO does with ``action_masks()``.

    Attributes:
        tokens_per_step: see above.
        has_expert: whether :meth:`expert` is implemented.
        per_step_rewards: see above (a token env pays per step only with ``shaping=True``).
    """

    tokens_per_step: int = 1
    has_expert: bool = False
    per_step_rewards: bool = True
    difficulties: range | None = None
    curriculum: Curriculum | None = None
    levels: torch.Tensor | None = None  # each episode's difficulty, for envs with a knob (set by reset)
    allowed_actions: torch.Tensor | None = None  # (n_actions,) bool: the actions a policy may take; None: all

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": ["ansi"]}

    def __init__(
        self,
        num_envs: int = 1,
        device: str | torch.device | None = None,
        max_episode_steps: int | None = None,
        autoreset_mode: str | AutoresetMode = "next_step",
        render_mode: str | None = None,
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        if num_envs > MAX_NUM_ENVS:
            raise ValueError(f"num_envs must be at most {MAX_NUM_ENVS:,} sub-envs per vector env, got {num_envs:,}")
        if max_episode_steps is not None and (not isinstance(max_episode_steps, int) or max_episode_steps < 1):
            raise ValueError(f"max_episode_steps must be a positive integer or None, got {max_episode_steps!r}")
        modes = {"next_step": AutoresetMode.NEXT_STEP, "same_step": AutoresetMode.SAME_STEP,
                 "disabled": AutoresetMode.DISABLED, **{m.value: m for m in AutoresetMode}}
        mode = autoreset_mode if isinstance(autoreset_mode, AutoresetMode) else modes.get(autoreset_mode)
        if mode is None:
            raise ValueError(f"autoreset_mode must be 'next_step', 'same_step' or 'disabled', got {autoreset_mode!r}")
        render_modes = type(self).metadata.get("render_modes", [])
        if render_mode is not None and render_mode not in render_modes:
            raise ValueError(f"render_mode of the vector env must be one of {render_modes} or None, got {render_mode!r}")
        self.render_mode = render_mode
        self.metadata = {**type(self).metadata, "autoreset_mode": mode}
        self.autoreset_mode = mode  # torchrl reads the attribute
        self.num_envs = num_envs
        self.returns_numpy = device is None  # numpy arrays at the boundary; tensors when a device is given
        self.device = torch.device("cpu" if device is None else device)
        self.max_episode_steps = max_episode_steps
        self.validate_actions = True  # validate actions in step(); a trainer that samples from the space may turn it off
        self._streams = torch.zeros(num_envs, dtype=torch.int64, device=self.device)
        self._episodes = torch.zeros(num_envs, dtype=torch.int64, device=self.device)
        self._steps = torch.zeros(num_envs, dtype=torch.int64, device=self.device)
        self._needs_reset = torch.zeros(num_envs, dtype=torch.bool, device=self.device)
        self._started = False

    def _set_spaces(self, single_observation_space: gym.Space, single_action_space: gym.spaces.Discrete) -> None:
        self.single_observation_space = single_observation_space
        self.single_action_space = single_action_space
        self.observation_space = gym.vector.utils.batch_space(single_observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(single_action_space, self.num_envs)

    # -- to implement -------------------------------------------------------------------------
    def _start(self, mask: torch.Tensor, keys: torch.Tensor) -> None:
        """Begin new episodes in the sub-envs where ``mask`` is true, from their ``keys`` (B,)."""
        raise NotImplementedError

    def _advance(self, actions: torch.Tensor, active: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        """Apply ``actions`` where ``active``; return ``(reward, terminated, truncated, info)``, zero elsewhere.

        ``info`` holds ``success`` (bool, read where the episode ended) and the env's own entries.
        """
        raise NotImplementedError

    def _observe(self) -> Any:
        raise NotImplementedError

    def _longest_episode(self) -> int:
        """The most steps an episode can take by the env's own rules."""
        raise NotImplementedError

    # -- the env -> trainer protocol (see the class docstring) ---------------------------------
    @property
    def max_episode_length(self) -> int:
        """The most steps one episode can take, ``max_episode_steps`` included."""
        steps = self._longest_episode()
        return min(steps, self.max_episode_steps or steps)

    @property
    def sequence_spec(self) -> SequenceSpec:
        """Token observations: the length of ``input_ids``, and the vocabulary."""
        ids = self.single_observation_space["input_ids"]
        tokenizer = getattr(self, "tokenizer", None)
        eos = getattr(tokenizer, "eos_id", None)
        return SequenceSpec(max_len=int(ids.shape[0]), vocab_size=int(ids.high.max()) + 1,
                            eos_id=None if eos is None else int(eos))

    def sequence(self, obs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs, lengths)``: ``(B, L)`` ids (or ``(B, L, F)`` features) and the real lengths ``(B,)``."""
        return obs["input_ids"], obs["attention_mask"].sum(1).long()

    def expert(self, obs: Any) -> torch.Tensor:
        """The scripted player's actions ``(B,)`` for the current state (envs with ``has_expert``)."""
        raise NotImplementedError(f"{type(self).__name__} has no expert to imitate")

    def episode_metrics(self) -> dict[str, float]:
        """The env's own metrics, as means over the episodes the sub-envs last played (none here)."""
        return {}

    def action_masks(self) -> Any:
        """``(num_envs, n_actions)`` bool, for sb3-contrib's MaskablePPO: :attr:`allowed_actions`
        in every row, or every action where the env allows all."""
        allowed = self.allowed_actions if self.allowed_actions is not None else torch.ones(
            self.single_action_space.n, dtype=torch.bool, device=self.device)
        return self._out(allowed.expand(self.num_envs, -1).clone())

    # -- the difficulty knob and its curriculum ------------------------------------------------
    @property
    def difficulty(self) -> int | None:
        """The difficulty of the episodes that start from now on (``None``: the env has no knob).
        Set it to any level in :attr:`difficulties`; episodes under way keep theirs. With a
        curriculum's ``window`` it is the hardest level drawn; ``levels`` (int64, one per sub-env)
        holds the level of each episode under way."""
        return getattr(self, "_difficulty", None)

    @difficulty.setter
    def difficulty(self, level: int) -> None:
        levels = self.difficulties
        if levels is None:
            raise ValueError(f"{type(self).__name__} has no difficulty knob")
        if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or level not in levels:
            raise ValueError(f"difficulty must be an integer in {levels[0]}..{levels[-1]}, got {level!r}")
        self._difficulty = int(level)
        self._apply_difficulty(int(level))

    def _apply_difficulty(self, level: int) -> None:
        """Make the episodes that start from now on of difficulty ``level`` (envs with a knob)."""
        raise NotImplementedError

    def set_curriculum(self, curriculum: Curriculum | dict | None) -> None:
        """Let ``curriculum`` move :attr:`difficulty` at each full ``reset()`` (``None``: stop); a
        dict is its arguments (a trainer's ``curriculum`` setting); see :mod:`textgym.envs.curriculum`.

        Raises:
            ValueError: the env has no difficulty knob, or the dict's arguments are wrong.
        """
        if isinstance(curriculum, dict):
            curriculum = Curriculum.from_setting(curriculum)
        if curriculum is not None:
            if self.difficulties is None:
                raise ValueError(f"{type(self).__name__} has no difficulty knob, which a curriculum moves: use an env "
                                 "whose task has a difficulty (Countdown-v0, Hanoi-v0, Sudoku-v0, Maze-v0, LightsOut-v0)")
            self.difficulty = curriculum.attach(self.difficulties, self.device)
        self.curriculum = curriculum

    # -- Gymnasium API --------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        """Start new episodes in every sub-env, or in those of ``options["reset_mask"]``.

        Options: ``reset_mask`` (bool, one per sub-env), ``group_size`` (see the class docstring).
        """
        if options is not None and not isinstance(options, dict):
            raise ValueError(f"options must be a dict (keys 'reset_mask', 'group_size') or None, got {type(options).__name__}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise gym.error.Error(f"Seed must be a non-negative python integer (as for the single env), got {seed!r}")
        mask = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        if options and "reset_mask" in options:
            mask = options["reset_mask"]
            mask = mask if isinstance(mask, torch.Tensor) else torch.as_tensor(np.asarray(mask))
            if mask.dtype != torch.bool or mask.shape != (self.num_envs,):
                raise ValueError(f"options['reset_mask'] must be a bool array of shape ({self.num_envs},), got {mask.dtype} {tuple(mask.shape)}")
            mask = mask.to(self.device)
            if not self._started and not bool(mask.all()):
                raise ResetNeeded("the first reset must reset every sub-env; call reset() without reset_mask first")
        group = (options or {}).get("group_size", 1)
        if isinstance(group, bool) or not isinstance(group, (int, np.integer)) or group < 1 or self.num_envs % group:
            raise ValueError(f"options['group_size'] must be a positive integer dividing num_envs={self.num_envs}, got {group!r}")
        group = int(group)
        if seed is not None:
            streams = (as_stream(seed) + torch.arange(self.num_envs, device=self.device) // group) & 0xFFFFFFFF
            self._streams = torch.where(mask, streams, self._streams)
            self._episodes = torch.where(mask, 0, self._episodes)
            self._seed_streams(mask, seed, group)
        elif not self._started:
            base = int(np.random.default_rng().integers(2**32))
            self._streams = (base + torch.arange(self.num_envs, device=self.device) // group) & 0xFFFFFFFF
            self._seed_streams(mask, base, group)
        self._started = True
        if self.curriculum is not None and not (options and "reset_mask" in options):
            self.difficulty = self.curriculum.decide(self.difficulty, self.difficulties)
        self._begin(mask)
        return self._out(self._observe()), {}

    def _seed_streams(self, mask: torch.Tensor, seed: int, group: int) -> None:
        """Hook for envs that keep per-sub-env generators of their own: sub-env ``i`` gets ``seed + i // group``."""

    def stream_state(self) -> dict[str, Any]:
        """Where every sub-env's random stream stands, between rollouts: a resumed run loads it
        (:meth:`load_stream_state`) and plays the episodes the uninterrupted run would have."""
        state = {"streams": self._streams.cpu(), "episodes": self._episodes.cpu(), "started": self._started}
        if self.curriculum is not None:
            state["curriculum"] = {**self.curriculum.state_dict(), "difficulty": self.difficulty}
        return state

    def load_stream_state(self, state: dict[str, Any]) -> None:
        """Continue the streams of :meth:`stream_state`; the next ``reset()`` starts their next episodes."""
        if state["streams"].shape != (self.num_envs,):
            raise ValueError(f"the saved env state is for {state['streams'].shape[0]} sub-envs, not {self.num_envs}")
        self._streams = state["streams"].to(self.device)
        self._episodes = state["episodes"].to(self.device)
        self._started = bool(state["started"])
        if self.curriculum is not None and "curriculum" in state:
            self.curriculum.load_state_dict(state["curriculum"])
            self.difficulty = state["curriculum"]["difficulty"]

    def _begin(self, mask: torch.Tensor) -> None:
        keys = episode_key(self._streams, self._episodes)
        self._episodes = self._episodes + mask.long()
        self._steps = torch.where(mask, 0, self._steps)
        self._needs_reset = self._needs_reset & ~mask
        if self.difficulties is not None:
            levels = self._episode_levels(keys)
            self.levels = levels if self.levels is None else torch.where(mask, levels, self.levels)
        self._start(mask, keys)

    def _episode_levels(self, keys: torch.Tensor) -> torch.Tensor:
        """The difficulty of each episode that starts with ``keys``: :attr:`difficulty`, or with a
        curriculum's ``window``, a level drawn uniformly from the episode's key among the window's."""
        top = self.difficulty
        low = top if self.curriculum is None else self.curriculum.lowest(top, self.difficulties)
        if low == top:
            return torch.full_like(keys, top)
        return low + hash32(keys ^ _LEVEL_SALT) % (top - low + 1)  # independent of the task's own draws

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict]:
        """One action per sub-env; sub-envs whose episode ended start anew as ``autoreset_mode`` says."""
        if not self._started:
            raise ResetNeeded("call reset() before step()")
        n = int(self.single_action_space.n)
        if self.validate_actions:
            actions = check_actions(actions, n, self.num_envs, self.device)
        else:
            actions = torch.as_tensor(actions, device=self.device, dtype=torch.int64)
        finished = self._needs_reset
        active = ~finished
        reward, terminated, truncated, info = self._advance(actions, active)
        self._steps = self._steps + active.long()
        if self.max_episode_steps is not None:
            truncated = truncated | (active & (self._steps >= self.max_episode_steps))
        done = terminated | truncated
        if self.curriculum is not None:  # the episodes at the current level decide where it goes
            self.curriculum.count(done & (self.levels == self.difficulty), info["success"])
        info = self._info(info, active, done)
        mode = self.metadata["autoreset_mode"]
        if mode == AutoresetMode.DISABLED:
            self._needs_reset = finished | done
        elif mode == AutoresetMode.SAME_STEP:
            if bool(done.any()):
                info["final_info"], info["_final_info"] = dict(info), done
                info["final_obs"], info["_final_obs"] = self._observe(), done
                self._begin(done)
        else:
            if bool(finished.any()):
                self._begin(finished)
            self._needs_reset = done
        return self._out(self._observe()), self._out(reward), self._out(terminated), self._out(truncated), self._out(info)

    def _info(self, info: dict, active: torch.Tensor, done: torch.Tensor) -> dict:
        """Gymnasium's info convention: a mask ``_k`` for every entry ``k``, and ``is_success`` at the ends."""
        out = dict(info)
        for key in info:
            if not key.startswith("_") and f"_{key}" not in info:
                out[f"_{key}"] = done if key == "success" else active
        if "success" in info:
            out["is_success"], out["_is_success"] = info["success"] & done, done
        return out

    def _out(self, x: Any) -> Any:
        return as_numpy(x) if self.returns_numpy else x
