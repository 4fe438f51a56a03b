"""Multi-turn text envs as token envs: a game written once, in strings, played one token at a time.

A *text env* is any ``gymnasium.Env`` whose observations and actions are strings, with spaces of
type ``gymnasium.spaces.Text`` (the convention GEM and TextArena use too)::

    reset(seed=, options=) -> (opening_text, info)
    step(message: str)     -> (reply_text, reward, terminated, truncated, info)

``textgym/MultiTurn-v0`` turns one into a token-level env: the agent writes its message one token
at a time and ends it with eos (or reaches ``max_turn_tokens``); the text env then answers and
its reply's tokens join the observation. ``gym.make_vec`` holds ``N`` text env instances and
steps the tokens as tensors: Python runs only for the sub-envs whose turn just ended.

A text env may offer an expert for SFT: a method ``expert() -> str``, the message its scripted
player would write now.
"""

from __future__ import annotations

import ctypes
import math
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from textgym.envs.code_games import TEXT_GAMES
from textgym.envs.core import (
    RENDER_MODES,
    TorchVectorEnv,
    check_step,
    pad_to,
    render_text,
    token_observation_space,
    where,
)
from textgym.errors import TextEnvError
from textgym.names import import_user_module, split_name
from textgym.tasks.chat import ChatTurns, chat_options
from textgym.tokenizers import CharTokenizer, Tokenizer, as_tokenizer


def _preview(x: Any) -> str:
    s = repr(x)
    return s if len(s) <= 80 else s[:77] + "..."


def make_text_env(text_env: Any, text_env_kwargs: dict | None = None) -> tuple[gym.Env, str]:
    """A text env and its name, from a registered id (``"module:Id-v0"`` imports the module first),
    a class or function named as ``"module:Name"``, a built-in game's short name (``"mastermind"``,
    ``"bulls_and_cows"``) or a callable.

    Raises:
        ValueError: an unknown id, or an env whose spaces are not ``gymnasium.spaces.Text``.
        TypeError: a callable that does not return a ``gymnasium.Env``.
    """
    kwargs = dict(text_env_kwargs or {})
    if isinstance(text_env, str):
        name = text_env
        maker = _named_callable(text_env)
        if text_env in TEXT_GAMES:
            env = TEXT_GAMES[text_env](**kwargs)
        elif maker is not None:
            env = maker(**kwargs)
        else:
            try:
                env = gym.make(text_env, disable_env_checker=True, **kwargs)
            except (gym.error.NameNotFound, gym.error.NamespaceNotFound, gym.error.VersionNotFound,
                    gym.error.UnregisteredEnv, ModuleNotFoundError) as e:
                raise ValueError(
                    f"text_env {text_env!r} is not a registered env id ({e}); expected a short name "
                    f"{sorted(TEXT_GAMES)}, an id you registered with gym.register (MODULE:ID imports "
                    "MODULE first), or a callable that returns a text env"
                ) from None
    elif callable(text_env):
        name = getattr(text_env, "__name__", type(text_env).__name__)
        env = text_env(**kwargs)
    else:
        raise TypeError(
            f"text_env must be an env id, a short name {sorted(TEXT_GAMES)} or a callable returning a "
            f"gymnasium.Env, got {type(text_env).__name__}"
        )
    if not isinstance(env, gym.Env):
        raise TypeError(f"text_env {name} must make a gymnasium.Env, got {type(env).__name__}")
    for which in ("observation_space", "action_space"):
        space = getattr(env, which, None)
        if not isinstance(space, gym.spaces.Text):
            raise ValueError(
                f"text_env {name}: its {which} must be gymnasium.spaces.Text (observations and actions are "
                f"strings), got {space}"
            )
    return env, name


def _named_callable(spec: str) -> Any:
    """The callable ``"module:Name"`` names, or None (then the string is an env id, whose
    ``module:`` part, if any, is imported here with the current folder searched too)."""
    parts = split_name(spec)
    if parts is None:
        return None
    module, attr = parts
    if not attr.isidentifier():  # "module:Id-v0": the module registers the id
        import_user_module(module, f"text_env {spec!r}")
        return None
    found = getattr(import_user_module(module, f"text_env {spec!r}"), attr, None)
    return found if callable(found) else None


CALL_TIMEOUT = 60.0
"""Default seconds a text env's ``reset``, ``step`` or ``expert`` may take (``call_timeout``)."""


class _CallTimedOut(BaseException):
    """Raised by the watchdog inside a text env call that overran its time (then reported as a TextEnvError)."""


class _Watchdog:
    """One daemon thread that raises :class:`_CallTimedOut` in a thread whose text env call overran.

    A thread opens a region (:meth:`region`) around a batch of calls and writes each call's
    deadline into its slot, which costs no lock; the watchdog fires only inside a region, under the
    lock that opens and closes it. The exception is delivered between two Python bytecodes of the
    stuck thread (CPython's ``PyThreadState_SetAsyncExc``): a text env that loops or waits in Python
    is stopped; one stuck inside a single C call is stopped when that call returns (and a second
    Ctrl-C stops the run).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.slots: dict[int, list[float]] = {}  # thread ident -> [deadline of its call under way, or inf]
        self.thread: threading.Thread | None = None

    def _run(self) -> None:
        while True:
            time.sleep(0.05)
            now = time.monotonic()
            with self.lock:
                for ident, slot in self.slots.items():
                    if now > slot[0]:
                        slot[0] = math.inf
                        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(_CallTimedOut))

    def slot(self) -> list[float] | None:
        """This thread's slot, inside a region."""
        return self.slots.get(threading.get_ident())

    @contextmanager
    def region(self, name: str, seconds: float | None):
        """Calls into the text env ``name`` may be stopped inside; a late stop is reported here."""
        ident = threading.get_ident()
        if ident in self.slots:  # inside a region already (a text env that plays one itself)
            yield
            return
        with self.lock:
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="textgym-text-env-watchdog", daemon=True)
                self.thread.start()
            self.slots[ident] = [math.inf]
        try:
            yield
        except _CallTimedOut:  # delivered just after the call that overran returned
            raise TextEnvError(f"text_env {name}: a call did not return within call_timeout={seconds:g} s") from None
        finally:
            with self.lock:
                self.slots.pop(ident, None)


_WATCHDOG = _Watchdog()


@dataclass
class TurnSetup:
    """The resolved arguments shared by the single and the vector MultiTurn env.

    Attributes:
        name: the text env's name, for errors.
        tokenizer: the token-level vocabulary.
        max_turn_tokens: the most tokens of one agent message, its eos included.
        max_turns: turns (agent messages) per episode; the episode is truncated after them.
        max_reply_tokens: the most tokens of one reply (and of the opening).
        has_expert: the text env offers ``expert()``.
    """

    name: str
    tokenizer: Tokenizer
    max_turn_tokens: int
    max_turns: int
    max_reply_tokens: int
    has_expert: bool
    alphabet: frozenset[str] | None
    call_timeout: float | None = CALL_TIMEOUT
    chat: ChatTurns | None = None
    _encoded: dict = field(default_factory=dict)  # text -> ids: games repeat their replies
    _decoded: dict = field(default_factory=dict)  # ids -> text: and agents their messages

    @classmethod
    def build(cls, env: gym.Env, name: str, tokenizer: Any = None, max_turn_tokens: int | None = None,
              max_turns: int | None = None, max_reply_tokens: int | None = None,
              call_timeout: float | None = CALL_TIMEOUT, chat: Any = None) -> TurnSetup:
        obs_space, act_space = env.observation_space, env.action_space
        alphabet = None
        if tokenizer is None:
            chars = "".join(sorted(set(obs_space.character_set) | set(act_space.character_set)))
            tokenizer = CharTokenizer(chars)
            alphabet = frozenset(chars)
        tokenizer = as_tokenizer(tokenizer)
        if max_turn_tokens is None:
            max_turn_tokens = act_space.max_length + 1  # the longest message, then eos
        if max_turns is None:
            max_turns = getattr(env.unwrapped, "max_turns", None) or (env.spec.max_episode_steps if env.spec else None)
            if max_turns is None:
                raise ValueError(f"text_env {name} does not say how many turns it lasts: pass max_turns, or give it "
                                 "a max_turns attribute")
        if max_reply_tokens is None:
            max_reply_tokens = obs_space.max_length
        chat = chat_options(chat, ("system",))
        turns = None if chat is None else ChatTurns(tokenizer, **chat)
        for what, value in (("max_turn_tokens", max_turn_tokens), ("max_turns", max_turns),
                            ("max_reply_tokens", max_reply_tokens)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{what} must be a positive integer, got {value!r}")
        if call_timeout is not None and (isinstance(call_timeout, bool) or not isinstance(call_timeout, (int, float))
                                         or not 0 < call_timeout < math.inf):
            raise ValueError(f"call_timeout must be a positive number of seconds or None (no limit), got {call_timeout!r}")
        has_expert = callable(getattr(env.unwrapped, "expert", None))
        if turns is not None:  # the template's own tokens around each reply come on top of it
            max_reply_tokens = int(max_reply_tokens) + len(tokenizer.encode(turns.overhead())) + 2
        return cls(name, tokenizer, int(max_turn_tokens), int(max_turns), int(max_reply_tokens), has_expert, alphabet,
                   None if call_timeout is None else float(call_timeout), turns)

    def calls(self):
        """A region in which calls into the text env are timed (see :class:`_Watchdog`): open one
        around a batch of :meth:`reset`, :meth:`step` and :meth:`expert_ids` calls; each call
        outside one opens its own."""
        return _WATCHDOG.region(self.name, self.call_timeout) if self.call_timeout is not None else nullcontext()

    def call(self, what: str, fn: Any) -> Any:
        """``fn()``, a call into the text env, with its errors and its time limit reported as
        :class:`TextEnvError` naming the env and ``what`` was called."""
        slot = _WATCHDOG.slot() if self.call_timeout is not None else None
        if slot is None and self.call_timeout is not None:
            with self.calls():
                return self.call(what, fn)
        try:
            if slot is not None:
                slot[0] = time.monotonic() + self.call_timeout
            return fn()
        except _CallTimedOut:
            raise TextEnvError(f"text_env {self.name}: {what} did not return within call_timeout={self.call_timeout:g} s "
                               "(pass a larger call_timeout, or None for no limit)") from None
        except Exception as e:
            raise TextEnvError(f"text_env {self.name}: raised {type(e).__name__} in {what}: {e}") from e
        finally:
            if slot is not None:
                slot[0] = math.inf

    @property
    def max_len(self) -> int:
        """Observation length: room for the opening and ``max_turns`` messages and replies (the longest game)."""
        return self.max_reply_tokens + self.max_turns * (self.max_turn_tokens + self.max_reply_tokens)

    def encode(self, text: Any, what: str) -> list[int]:
        """Token ids of a text the text env wrote (``what``: "opening", "reply to ..."), checked."""
        if isinstance(text, str) and text in self._encoded:
            return self._encoded[text]
        if not isinstance(text, str):
            raise ValueError(f"text_env {self.name}: its {what} must be a str, got {type(text).__name__} {_preview(text)}")
        if self.alphabet is not None:
            bad = sorted(set(text) - self.alphabet)
            if bad:
                raise ValueError(
                    f"text_env {self.name}: its {what} {_preview(text)} has characters {bad} outside its alphabet "
                    f"(the charsets of its Text spaces, {''.join(sorted(self.alphabet))!r}): add them to its "
                    "observation_space's charset"
                )
        ids = self.tokenizer.encode(text)
        if len(ids) > self.max_reply_tokens:
            raise ValueError(
                f"text_env {self.name}: its {what} {_preview(text)} is {len(ids)} tokens long, more than the "
                f"{self.max_reply_tokens} a reply may take (max_reply_tokens, by default its observation_space's "
                "max_length): raise max_reply_tokens or the space's max_length"
            )
        if len(self._encoded) < 100_000:
            self._encoded[text] = ids
        return ids

    # The turn's rules, once for both envs: on Python values (single env) or tensors (vector env).
    def message_ends(self, token, message_len, active=True):
        """Whether the agent's message ends with ``token`` (its ``message_len``-th): at eos, or at
        ``max_turn_tokens``."""
        return active & ((token == self.tokenizer.eos_id) | (message_len >= self.max_turn_tokens))

    def truncates(self, ended, terminated, truncated, turns):
        """The episode's truncation after a turn: the text env's own, or ``max_turns`` turns played
        without the text env ending it."""
        return truncated | where(terminated, False, ended & (turns >= self.max_turns))

    def decode(self, ids: tuple[int, ...]) -> str:
        """The text of a message (its eos dropped)."""
        text = self._decoded.get(ids)
        if text is None:
            text = self.tokenizer.decode([t for t in ids if t != self.tokenizer.eos_id])
            if len(self._decoded) < 100_000:
                self._decoded[ids] = text
        return text

    def reset(self, env: gym.Env, seed: int | None, options: dict | None) -> tuple[list[int], dict]:
        out = self.call("reset()", lambda: env.reset(seed=seed, options=options))
        if not (isinstance(out, tuple) and len(out) == 2):
            raise ValueError(f"text_env {self.name}: reset must return (opening, info), got {_preview(out)}")
        opening = self.chat.opening(out[0]) if self.chat is not None and isinstance(out[0], str) else out[0]
        return self.encode(opening, "opening"), out[1]

    def step(self, env: gym.Env, message: str) -> tuple[list[int], float, bool, bool, dict]:
        """The text env's answer to ``message``, checked, with the reply as token ids."""
        out = self.call(f"step({message!r})", lambda: env.step(message))
        if not (isinstance(out, tuple) and len(out) == 5):
            raise ValueError(f"text_env {self.name}: step must return (reply, reward, terminated, truncated, info), "
                             f"got {_preview(out)}")
        reply, reward, terminated, truncated, info = out
        if isinstance(reward, bool) or not isinstance(reward, (int, float, np.number)) or not math.isfinite(reward):
            raise ValueError(f"text_env {self.name}: step({message!r}) returned the reward {_preview(reward)}; "
                             "expected a finite number")
        for name, flag in (("terminated", terminated), ("truncated", truncated)):
            if not isinstance(flag, (bool, np.bool_)):
                raise ValueError(f"text_env {self.name}: step({message!r}) returned {name}={_preview(flag)}; expected "
                                 "True or False")
        if info is not None and not isinstance(info, dict):
            raise ValueError(f"text_env {self.name}: step({message!r}) returned info={_preview(info)}; expected a dict")
        if self.chat is not None and isinstance(reply, str):
            reply = self.chat.reply(reply)
        ids = self.encode(reply, f"reply to {message!r}")
        return ids, float(reward), bool(terminated), bool(truncated), dict(info or {})

    def expert_ids(self, env: gym.Env) -> list[int]:
        """The expert's next message as token ids, eos included."""
        message = self.call("expert()", env.unwrapped.expert)
        if not isinstance(message, str):
            raise ValueError(f"text_env {self.name}: expert() must return a str, got {_preview(message)}")
        if self.alphabet is not None and set(message) - self.alphabet:
            raise ValueError(f"text_env {self.name}: its expert wrote {message!r}, with characters "
                             f"{sorted(set(message) - self.alphabet)} outside its alphabet "
                             f"{''.join(sorted(self.alphabet))!r}")
        ids = self.tokenizer.encode(message) + [self.tokenizer.eos_id]
        if len(ids) > self.max_turn_tokens:
            raise ValueError(f"text_env {self.name}: its expert wrote {message!r}, longer than max_turn_tokens="
                             f"{self.max_turn_tokens} with its eos")
        return ids


def episode_success(info: dict) -> bool:
    """A text env's success flag at the end of an episode: ``is_success``, else ``success``."""
    return bool(info.get("is_success", info.get("success", False)))


_DOC = """
    ## Arguments

    * `text_env`: the game: a registered env id (`"my_pkg:MyGame-v0"` imports `my_pkg` first), a
      built-in game (`"mastermind"`, `"bulls_and_cows"`), or a callable returning a text env.
    * `text_env_kwargs`: its arguments.
    * `tokenizer`: default a `CharTokenizer` over the union of the `charset`s of the text env's two
      `Text` spaces; or any `transformers` tokenizer.
    * `max_turn_tokens`: the most tokens of one message, its eos included (default: the action
      space's `max_length` + 1). A message that reaches it ends there.
    * `max_turns`: messages per episode (default: the text env's `max_turns` attribute, else its
      registered `max_episode_steps`); the episode is truncated after them.
    * `max_reply_tokens`: the most tokens of the opening and of one reply (default: the
      observation space's `max_length`). The observation has room for the opening and `max_turns`
      messages and replies.
    * `render_mode`: `"ansi"` (the transcript), `"human"` or `"rgb_array"` (the text as an image, for video wrappers).
    * `call_timeout`: the most seconds one call of the text env's `reset`, `step` or `expert` may
      take (default 60; `None`: no limit). A call that overruns fails with a `TextEnvError` naming
      the env and the call, so a stuck game stops the run with a message instead of hanging it.
    * `chat`: play the game as a chat through the tokenizer's chat template (a pretrained chat
      model's): `True`, or `{"system": TEXT}` for a system turn. The opening and each reply are
      user turns, each followed by the assistant's header; the agent's messages are its own ids,
      ended by the tokenizer's eos, never decoded and tokenized again. The template's tokens
      around a reply come on top of `max_reply_tokens`.

    A reply with a character outside the alphabet, a reply that does not fit, a non-string, a bad
    reward or an exception in the text env is an error naming the text env and what it returned.
"""


class MultiTurnEnv(gym.Env):
    """A multi-turn text env played token by token: write a message, read the reply, repeat.

    ## Description

    The text env (see the module docstring) opens with a text; the agent writes its message one
    token at a time and ends it with eos; the text env answers, and its reply joins the transcript.
    The observation is the whole transcript as token ids: the opening, then each message with its
    eos, then each reply.

    ## Action Space

    `Discrete(vocab_size)`: the next token of the message; the tokenizer's eos ends it.

    ## Observation Space

    `Dict(input_ids=Box(0, vocab_size - 1, (max_len,), int64), attention_mask=Box(0, 1, (max_len,), int8))`:
    the transcript's ids, right-padded.

    ## Rewards

    0 while a message is being written; the text env's reward for the turn on the step that ends
    it (per-turn rewards).

    ## Episode End

    * Termination: the text env terminates.
    * Truncation: the text env truncates, or `max_turns` messages were written.

    `info` is `{}` while a message is written; at the end of a turn it holds the text env's info
    plus `turns`, and at the end of the episode `is_success`. `env.unwrapped.text_env` is the text
    env and `env.unwrapped.tokenizer` the tokenizer.
    {args}
    ## Version History

    * v0: initial version.
    """

    metadata = {"render_modes": RENDER_MODES, "render_fps": 4}

    def __init__(self, text_env: Any = "mastermind", text_env_kwargs: dict | None = None, tokenizer: Any = None,
                 max_turn_tokens: int | None = None, max_turns: int | None = None, max_reply_tokens: int | None = None,
                 render_mode: str | None = None, call_timeout: float | None = CALL_TIMEOUT, chat: Any = None) -> None:
        self.text_env, name = make_text_env(text_env, text_env_kwargs)
        self.setup = TurnSetup.build(self.text_env, name, tokenizer, max_turn_tokens, max_turns, max_reply_tokens,
                                     call_timeout, chat)
        self.render_mode = render_mode
        vocab = self.setup.tokenizer.vocab_size
        self.action_space = gym.spaces.Discrete(vocab)
        self.observation_space = token_observation_space(self.setup.max_len, vocab)
        self._transcript: list[int] | None = None
        self._done = True

    @property
    def tokenizer(self) -> Tokenizer:
        return self.setup.tokenizer

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        opening, info = self.setup.reset(self.text_env, seed, options)
        self._transcript = list(opening)  # a copy: the setup caches the ids of the texts it encodes
        self._message: list[int] = []
        self._turns = 0
        self._expert: list[int] | None = None
        self._done = False
        return self._obs(), dict(info or {})

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        token = check_step(self._transcript is not None, self._done, action, self.action_space.n)
        s = self.setup
        self._transcript.append(token)
        self._message.append(token)
        if not s.message_ends(token, len(self._message)):
            return self._obs(), 0.0, False, False, {}
        text = s.decode(tuple(self._message))
        reply, reward, terminated, truncated, info = s.step(self.text_env, text)
        self._transcript += reply
        self._message, self._expert = [], None
        self._turns += 1
        truncated = s.truncates(True, terminated, truncated, self._turns)
        self._done = terminated or truncated
        info["turns"] = self._turns
        if self._done:
            info["is_success"] = episode_success(info)
        if self.render_mode == "human":
            self.render()
        return self._obs(), reward, terminated, truncated, info

    def _obs(self) -> dict[str, np.ndarray]:
        return pad_to(self._transcript, self.setup.max_len, self.setup.tokenizer.pad_id)

    def expert(self, obs: dict) -> int:
        """The text env's expert message, one token at a time, then eos."""
        if not self.setup.has_expert:
            raise NotImplementedError(f"text_env {self.setup.name} has no expert() method")
        if self._expert is None:
            self._expert = self.setup.expert_ids(self.text_env)
        return self._expert[min(len(self._message), len(self._expert) - 1)]

    def render(self) -> str | None:
        """The transcript so far (eos tokens not shown)."""
        text = self.setup.tokenizer.decode(self._transcript) if self._transcript is not None else ""
        return render_text(self.render_mode, text)


MultiTurnEnv.__doc__ = MultiTurnEnv.__doc__.replace("{args}", _DOC)


class MultiTurnVectorEnv(TorchVectorEnv):
    """A batch of :class:`MultiTurnEnv` episodes: ``N`` text env instances, tokens as tensors.

    Same rules, arguments and spaces as :class:`MultiTurnEnv`, plus ``num_envs``, ``device`` and
    ``max_episode_steps``. Writing tokens is a tensor operation on the whole batch; Python runs
    only for the sub-envs whose message just ended (decode it, call the text env, write its reply).
    Sub-env ``i`` reset with ``seed=s`` resets its text env with ``seed=s + i`` (``s + i // k`` with
    ``options={"group_size": k}``), so it plays the episodes of the single env seeded ``s + i``.

    ``info`` holds ``success`` and ``turns``; :meth:`episode_metrics` reports ``mean_turns`` and
    the mean of every number the text env put in its last ``info`` (``mean_guesses``, ...). The
    expert is the text env's ``expert()`` (when it has one), written token by token.
    """

    def __init__(self, num_envs: int = 1, text_env: Any = "mastermind", text_env_kwargs: dict | None = None,
                 tokenizer: Any = None, max_turn_tokens: int | None = None, max_turns: int | None = None,
                 max_reply_tokens: int | None = None, device: str | torch.device | None = None, max_episode_steps: int | None = None,
                 autoreset_mode: str = "next_step", render_mode: str | None = None,
                 call_timeout: float | None = CALL_TIMEOUT, chat: Any = None) -> None:
        super().__init__(num_envs, device, max_episode_steps, autoreset_mode, render_mode)
        first, name = make_text_env(text_env, text_env_kwargs)
        self.text_envs = [first] + [make_text_env(text_env, text_env_kwargs)[0] for _ in range(num_envs - 1)]
        self.text_env = first
        self.setup = s = TurnSetup.build(first, name, tokenizer, max_turn_tokens, max_turns, max_reply_tokens,
                                         call_timeout, chat)
        self.has_expert = s.has_expert
        vocab = s.tokenizer.vocab_size
        self._set_spaces(token_observation_space(s.max_len, vocab), gym.spaces.Discrete(vocab))
        self.tokens_per_step = 1 + s.max_reply_tokens  # the agent's token, then a whole reply
        B, dev = num_envs, self.device
        # One spare column: a message token written when the transcript is full lands there and is cut.
        self.transcript = torch.full((B, s.max_len + 1), s.tokenizer.pad_id, dtype=torch.int64, device=dev)
        z = torch.zeros(B, dtype=torch.int64, device=dev)
        self.length, self.message_len, self.turns = z.clone(), z.clone(), z.clone()
        self._cols = torch.arange(s.max_len, device=dev)
        self._seeds: list[int | None] = [None] * B
        self._final_info: list[dict] = [{} for _ in range(B)]
        self._expert_ids: torch.Tensor | None = None  # (B, max_turn_tokens), filled once SFT asks for the expert

    @property
    def tokenizer(self) -> Tokenizer:
        return self.setup.tokenizer

    def _seed_streams(self, mask: torch.Tensor, seed: int, group: int) -> None:
        for i in mask.nonzero().squeeze(1).tolist():
            self._seeds[i] = int(seed) + i // group

    def stream_state(self) -> dict[str, Any]:
        """The base streams, and each text env's own generator and pending seed."""
        return {**super().stream_state(), "seeds": list(self._seeds),
                "text_rng": [env.unwrapped.np_random.bit_generator.state for env in self.text_envs]}

    def load_stream_state(self, state: dict[str, Any]) -> None:
        super().load_stream_state(state)
        self._seeds = list(state["seeds"])
        for env, rng in zip(self.text_envs, state["text_rng"]):
            env.unwrapped.np_random.bit_generator.state = rng

    def _write_rows(self, rows: list[int], texts: list[list[int]]) -> None:
        """Append token ids ``texts[j]`` to the transcript of sub-env ``rows[j]``, in one scatter."""
        if not rows:
            return
        width, pad, dev = max(1, max(len(t) for t in texts)), self.setup.tokenizer.pad_id, self.device
        ids = torch.tensor([t + [pad] * (width - len(t)) for t in texts], dtype=torch.int64, device=dev)
        count = torch.tensor([len(t) for t in texts], device=dev)
        rows_t = torch.tensor(rows, device=dev)
        offset = torch.arange(width, device=dev)
        pos = (self.length[rows_t, None] + offset).clamp(max=self.transcript.shape[1] - 1)
        old = self.transcript[rows_t]
        self.transcript[rows_t] = old.scatter(1, pos, torch.where(offset < count[:, None], ids, old.gather(1, pos)))
        self.length[rows_t] += count

    def _refresh_expert(self, rows: list[int]) -> None:
        if self._expert_ids is None:
            return
        with self.setup.calls():
            for i in rows:
                ids = self.setup.expert_ids(self.text_envs[i])
                self._expert_ids[i] = self.setup.tokenizer.eos_id
                self._expert_ids[i, : len(ids)] = torch.tensor(ids, device=self.device)

    def _start(self, mask, keys):
        rows = mask.nonzero().squeeze(1).tolist()
        openings = []
        with self.setup.calls():
            for i in rows:
                ids, _ = self.setup.reset(self.text_envs[i], self._seeds[i], None)
                self._seeds[i] = None  # later episodes continue the text env's own generator
                self._final_info[i] = {}
                openings.append(ids)
        self.transcript[mask] = self.setup.tokenizer.pad_id
        self.length = torch.where(mask, 0, self.length)
        self.message_len = torch.where(mask, 0, self.message_len)
        self.turns = torch.where(mask, 0, self.turns)
        self._write_rows(rows, openings)
        self._refresh_expert(rows)

    def _advance(self, actions, active):
        s = self.setup
        slot = self.length.clamp(max=s.max_len)[:, None]
        self.transcript.scatter_(1, slot, torch.where(active, actions, self.transcript.gather(1, slot)[:, 0])[:, None])
        self.length = self.length + active.long()
        self.message_len = self.message_len + active.long()
        ends = s.message_ends(actions, self.message_len, active)
        reward = torch.zeros(self.num_envs, device=self.device)
        terminated, truncated, success = (torch.zeros(self.num_envs, dtype=torch.bool, device=self.device) for _ in range(3))
        rows = ends.nonzero().squeeze(1).tolist()  # the one sync of a step: Python plays these turns
        if rows:
            idx = torch.tensor(rows, device=self.device)
            # The last max_turn_tokens positions of each ended transcript hold its message, at the end.
            W = s.max_turn_tokens
            cols = (self.length[idx, None] - W + torch.arange(W, device=self.device)).clamp(min=0)
            tails, counts = self.transcript[idx].gather(1, cols).tolist(), self.message_len[idx].tolist()
            replies, rewards, terms, truncs, wins = [], [], [], [], []
            with s.calls():
                for j, i in enumerate(rows):
                    reply, r, te, tr, info = s.step(self.text_envs[i], s.decode(tuple(tails[j][W - counts[j]:])))
                    self._final_info[i] = info
                    replies.append(reply)
                    rewards.append(r)
                    terms.append(te)
                    truncs.append(tr)
                    wins.append(episode_success(info))
            reward[idx] = torch.tensor(rewards, device=self.device)
            terminated[idx] = torch.tensor(terms, device=self.device)
            truncated[idx] = torch.tensor(truncs, device=self.device)
            success[idx] = torch.tensor(wins, device=self.device)
            self._write_rows(rows, replies)
            self.message_len[idx] = 0
            self.turns[idx] += 1
            truncated = s.truncates(ends, terminated, truncated, self.turns)
            self._refresh_expert([i for i, te, tr in zip(rows, terms, truncs) if not (te or tr)])
        return reward, terminated, truncated, {"success": success, "turns": self.turns.clone(), "_turns": ends}

    def _observe(self):
        inside = self._cols < self.length[:, None]
        return {"input_ids": torch.where(inside, self.transcript[:, : self.setup.max_len], self.setup.tokenizer.pad_id),
                "attention_mask": inside.to(torch.int8)}

    # -- the env -> trainer protocol -------------------------------------------------------------
    def _longest_episode(self) -> int:
        return self.setup.max_turns * self.setup.max_turn_tokens

    def expert(self, obs) -> torch.Tensor:
        """The text env's expert message for each sub-env, one token at a time, then eos."""
        if not self.has_expert:
            raise NotImplementedError(f"text_env {self.setup.name} has no expert() method")
        if self._expert_ids is None:  # from now on, every new turn asks the text envs for their message
            self._expert_ids = torch.full((self.num_envs, self.setup.max_turn_tokens), self.setup.tokenizer.eos_id,
                                          dtype=torch.int64, device=self.device)
            self._refresh_expert([i for i in range(self.num_envs) if not bool(self._needs_reset[i])])
        col = self.message_len.clamp(max=self.setup.max_turn_tokens - 1)[:, None]
        return self._expert_ids.gather(1, col).squeeze(1)

    def episode_metrics(self) -> dict[str, float]:
        """``mean_turns``, and ``mean_K`` for every number ``K`` the text env put in its last info."""
        metrics = {"mean_turns": float(self.turns.float().mean())}
        keys = set.intersection(*(set(info) for info in self._final_info)) if self._final_info else set()
        for key in sorted(keys):
            values = [info[key] for info in self._final_info]
            if all(isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_)) for v in values):
                metrics[f"mean_{key}"] = float(np.mean(values))
        return metrics

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        return "\n---\n".join(self.setup.tokenizer.decode(row[:n]) for row, n in zip(self.transcript.tolist(), self.length.tolist()))

