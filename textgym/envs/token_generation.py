"""Token-level text generation: the agent writes a completion for a prompt, one token per step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from gymnasium.error import ResetNeeded

from textgym import rewards
from textgym.envs.core import (
    RENDER_MODES,
    EpisodeKeys,
    TorchVectorEnv,
    arguments_of,
    check_step,
    pad_to,
    pop_arguments,
    render_text,
    token_observation_space,
)
from textgym.rewards import EpisodeBatch, Reward
from textgym.rewards.metrics import exact_match_score, f1_score
from textgym.tasks import ChatTask, EncodedExamples, Example, Task, make_task
from textgym.tasks.chat import chat_options
from textgym.tokenizers import CharTokenizer, Tokenizer, as_tokenizer

MAX_POSITIONS = 2**20
"""The most positions (prompt and completion) a token env's episode may have."""


@dataclass
class TokenSetup:
    """The resolved arguments shared by the single and the vector token env."""

    task: Task
    tokenizer: Tokenizer
    reward: Reward
    max_prompt_len: int
    max_new_tokens: int
    shaping: bool
    allowed: np.ndarray | None = None  # (vocab_size,) bool with action_mask: the answer's tokens and eos

    @property
    def max_len(self) -> int:
        """Observation length: the longest prompt plus the longest completion (with its eos)."""
        return self.max_prompt_len + self.max_new_tokens

    @classmethod
    def build(
        cls,
        task: Any = "copy",
        tokenizer: Any = None,
        reward: Any = "exact_match",
        max_new_tokens: int | None = None,
        max_prompt_len: int | None = None,
        shaping: bool = False,
        action_mask: bool = False,
        task_kwargs: dict | None = None,
        reward_kwargs: dict | None = None,
        chat: Any = None,
    ) -> TokenSetup:
        for name, flag in (("shaping", shaping), ("action_mask", action_mask)):
            if not isinstance(flag, (bool, np.bool_)):
                raise ValueError(f"{name} must be true or false, got {flag!r}")
        task = make_task(task, **(task_kwargs or {}))
        if tokenizer is None:
            alphabet = task.alphabet()
            if alphabet is None:
                raise ValueError(f"task {task.name!r} has no fixed alphabet: pass a tokenizer")
            tokenizer = CharTokenizer(alphabet, unk=getattr(task, "open_alphabet", False))
        tokenizer = as_tokenizer(tokenizer)
        chat = chat_options(chat, ("system", "instruction", "answer"))
        if chat is not None:
            task = ChatTask(task, tokenizer, **chat)
            if max_new_tokens is None:
                raise ValueError("a chat env's completions are free text: pass max_new_tokens (e.g. 32)")
        reward = rewards.make(reward, **(reward_kwargs or {}))
        if max_prompt_len is None:
            max_prompt_len = task.max_prompt_tokens(tokenizer)
            if max_prompt_len is None:
                raise ValueError(f"task {task.name!r} does not bound its prompt length: pass max_prompt_len")
        if max_new_tokens is None:
            longest = task.max_reference_tokens(tokenizer)
            if longest is None:
                raise ValueError(f"task {task.name!r} does not bound its reference length: pass max_new_tokens")
            max_new_tokens = longest + 1  # room for the eos after the longest reference
        for name, value in (("max_prompt_len", max_prompt_len), ("max_new_tokens", max_new_tokens)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if max_prompt_len + max_new_tokens > MAX_POSITIONS:
            raise ValueError(f"max_prompt_len + max_new_tokens = {max_prompt_len + max_new_tokens:,} positions; an "
                             f"episode holds at most {MAX_POSITIONS:,}: shorten the prompts or the completions")
        parts = [r for r, _ in reward.parts] if isinstance(reward, rewards.WeightedSum) else [reward]
        for part in parts:  # a learned reward must read the env's tokens, and all it can write
            if hasattr(part, "check_tokenizer"):
                part.check_tokenizer(tokenizer, max_prompt_len + max_new_tokens)
            if isinstance(part, rewards.TaskScore):  # the task's own judge (or its format) scores this env's task
                part.bind(task, tokenizer)
        allowed = answer_tokens(task, tokenizer) if action_mask else None
        return cls(task, tokenizer, reward, max_prompt_len, max_new_tokens, bool(shaping), allowed)

    def encode(self, keys: torch.Tensor) -> EncodedExamples:
        return self.task.encode(keys, self.tokenizer, self.max_prompt_len, self.max_new_tokens)

    # The episode's rules, once for both envs: on Python values (single env) or tensors (vector env).
    def episode_end(self, token, written: int, active=True):
        """``(terminated, truncated)`` after writing ``token`` as the ``written``-th token: eos
        terminates; ``max_new_tokens`` tokens without an eos truncate."""
        eos = self.tokenizer.eos_id
        return active & (token == eos), active & (token != eos) & (written >= self.max_new_tokens)

    def scored(self, active, done):
        """Which steps are scored: every step with ``shaping``, else the last."""
        return active if self.shaping else done

    def pay(self, score, previous):
        """A scored step's reward: the score's change with ``shaping``, else the score itself."""
        return score - previous if self.shaping else score


def answer_tokens(task: Task, tokenizer: Tokenizer) -> np.ndarray:
    """``(vocab_size,)`` bool: the tokens of the task's answer characters
    (:meth:`~textgym.tasks.Task.answer_alphabet`), and eos."""
    chars = task.answer_alphabet()
    if not chars:
        raise ValueError(f"action_mask=True needs the characters of the task's answers, and task {task.name!r} does not "
                         "name them (Task.answer_alphabet): the strings, arithmetic, puzzle and list tasks do")
    allowed = np.zeros(tokenizer.vocab_size, dtype=bool)
    for ch in chars:
        ids = tokenizer.encode(ch)
        if len(ids) != 1:
            raise ValueError(f"action_mask=True: the answer character {ch!r} is {len(ids)} tokens of this tokenizer; "
                             "each must be one")
        allowed[ids[0]] = True
    allowed[tokenizer.eos_id] = True
    return allowed


_DOC_ARGS = """
    ## Arguments

    * `task`: a name (`"copy"`, `"reverse"`, `"sort"`, `"addition"`, `"review"`, the puzzles `"countdown"`,
      `"hanoi"`, `"sudoku"`, `"maze"`, `"lights_out"`; `"reasoning_gym"` with `task_kwargs={"dataset": NAME}`), a path to a `.jsonl` file of
      `{"prompt": ..., "references": [...]}` lines, a list of examples, or a `textgym.tasks.Task`
      (e.g. `ListTask.from_hf_dataset(...)`). Default `"copy"`.
    * `task_kwargs`: arguments of a named task (`alphabet`, `min_length`, `max_length`,
      `min_digits`, `max_digits`; a puzzle's `difficulty`).
    * `tokenizer`: a `CharTokenizer`, a `transformers` tokenizer, or `None` for a `CharTokenizer`
      over the task's characters.
    * `reward`: anything `textgym.rewards.make` accepts: a name (`"exact_match"`, `"f1"`, `"bleu"`,
      `"chrf"`, `"rouge_l"`, `"token_accuracy"`, `"task"` (the task's own judge), `"review_rule"`, `"reward_model"` with
      `reward_kwargs={"path": DIR}`), a list of `(reward, weight)` pairs, a `Reward`,
      or a function `(prompts, completions, references) -> list[float]`. `reward_kwargs` are
      passed to a named reward.
    * `max_new_tokens`: most tokens the agent may write, its eos included (default: the longest
      reference plus one).
    * `max_prompt_len`: most prompt tokens (default: the task's bound); a longer prompt is an error.
    * `shaping`: pay the reward as it accrues: each step gets `score(prefix) - score(previous
      prefix)` of the completion so far, so the rewards of an episode add up to the final score
      minus the score of an empty completion. The reward is then computed every step.
    * `action_mask`: declare the characters of the task's answers and eos as the only tokens to
      write (default False; Hanoi's `ABC`, Sudoku's digits, a string task's letters, the
      characters of a list or JSONL task's references):
      `env.action_masks()` returns them for sb3-contrib's MaskablePPO, and textgym's trainers,
      evaluation and `play` sample only those (the vector env's `allowed_actions`). The rules
      stay the same: a token outside them, written anyway, is judged as before.
    * `chat`: ask the task through the tokenizer's chat template and read the answer back from the
      free text written (`textgym.tasks.ChatTask`): `True`, or a dict with `system` (a system
      turn), `instruction` (the user's turn, with `{prompt}`) and `answer` (`"last_number"`,
      `"tag"` for `<answer>...</answer>`, or `"text"`). Score it with `reward="task"` (the answer
      against the references) and `"format"` (an answer could be read), e.g.
      `reward=[["task", 1.0], ["format", 0.1]]`; needs `max_new_tokens`.
    * `render_mode`: `"ansi"` (the episode as text), `"human"` (printed) or `"rgb_array"` (the text as an image, for video wrappers).
"""


class TokenGenerationEnv(gym.Env):
    """Write a completion for a prompt, one token per step, scored by a reward at the end.

    ## Description

    Each episode draws an example `(prompt, references)` from a task. The agent reads the prompt
    and the tokens it wrote so far, and writes the next token. Writing eos ends the completion;
    the reward compares the completion (the tokens before eos) with the references.

    ## Action Space

    `Discrete(vocab_size)`: the id of the next token. The tokenizer's eos id ends the episode.

    ## Observation Space

    `Dict(input_ids=Box(0, vocab_size - 1, (max_len,), int64), attention_mask=Box(0, 1, (max_len,), int8))`
    with `max_len = max_prompt_len + max_new_tokens`: the prompt's ids, then the ids written so
    far, then padding (pad id); the mask is 1 on the prompt and written tokens.

    ## Rewards

    0 on every step but the last, which gets the reward's score of the completion (see the
    reward's docstring for its range; `exact_match` is 0 or 1). With `shaping=True` the score is
    paid as it accrues instead (see Arguments).

    ## Episode End

    * Termination: the agent writes eos.
    * Truncation: `max_new_tokens` tokens were written without an eos.

    `info` at the end holds `score` (the final score), `completion` and `references` (texts), and
    `is_success` (the score is at least 1, e.g. an exact match).
    {args}
    ## Version History

    * v0: initial version.
    """

    metadata = {"render_modes": RENDER_MODES, "render_fps": 4}

    @arguments_of(TokenSetup.build)
    def __init__(self, task: Any = "copy", *, render_mode: str | None = None, **setup: Any) -> None:
        self.setup = TokenSetup.build(task, **setup)
        self.render_mode = render_mode
        tok = self.setup.tokenizer
        self.action_space = gym.spaces.Discrete(tok.vocab_size)
        self.observation_space = token_observation_space(self.setup.max_len, tok.vocab_size)
        self._keys = EpisodeKeys()
        self._block_id = -1
        self._example: EncodedExamples | None = None
        self._done = True

    @property
    def task(self) -> Task:
        return self.setup.task

    @property
    def tokenizer(self) -> Tokenizer:
        return self.setup.tokenizer

    @property
    def current_example(self) -> Example:
        """The example of the current episode (prompt and reference texts)."""
        if self._example is None:
            raise ResetNeeded("call reset() first")
        if self._block_examples is None:
            self._block_examples = self.task.examples_for(self._keys.block.tolist())
        return self._block_examples[self._keys.index]

    @property
    def current_prompt_len(self) -> int:
        """Number of prompt tokens at the start of the observation."""
        return len(self._prompt)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        self._key = self._keys.next(seed, self.np_random)
        if self._block_id != self._keys.block_id:  # the examples of a block of keys, encoded at once
            self._block, self._block_id = self.setup.encode(self._keys.block), self._keys.block_id
            self._block_examples: list | None = None  # their texts, made when first asked for
        i = self._keys.index
        self._example = EncodedExamples(*(t[i : i + 1] for t in vars(self._block).values()))
        self._prompt = self._example.prompt_ids[0, : self._example.prompt_len[0]].tolist()
        self._written: list[int] = []
        self._done = False
        self._return = 0.0
        self._score = self._score_of([]) if self.setup.shaping else 0.0
        return self._obs(), {}

    def _score_of(self, completion: list[int]) -> float:
        ex = self._example
        ids = torch.tensor([completion + [self.tokenizer.pad_id]], dtype=torch.int64)
        batch = EpisodeBatch(ex.prompt_ids, ex.prompt_len, ids, torch.tensor([len(completion)]),
                             ex.reference_ids, ex.reference_len, self.tokenizer, lambda: [self.current_example])
        return float(self.setup.reward(batch)[0])

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        token = check_step(self._example is not None, self._done, action, self.action_space.n)
        self._written.append(token)
        terminated, truncated = self.setup.episode_end(token, len(self._written))
        self._done = terminated or truncated
        completion = self._written[:-1] if terminated else self._written
        reward, info = 0.0, {}
        if self.setup.scored(True, self._done):
            score = self._score_of(completion)
            reward, self._score = self.setup.pay(score, self._score), score
        if self._done:
            example = self.current_example
            final = self._score if self.setup.shaping else reward
            info = {"score": final, "completion": self.tokenizer.decode(completion),
                    "references": list(example.references), "is_success": final >= 1.0}
        self._return += reward
        if self.render_mode == "human":
            self.render()
        return self._obs(), reward, terminated, truncated, info

    def _obs(self) -> dict[str, np.ndarray]:
        return pad_to(self._prompt + self._written, self.setup.max_len, self.tokenizer.pad_id)

    def action_masks(self) -> np.ndarray:
        """``(vocab_size,)`` bool: the tokens the agent may write, for sb3-contrib's MaskablePPO: the
        answer's characters and eos with ``action_mask=True``, every token otherwise."""
        allowed = self.setup.allowed
        return allowed.copy() if allowed is not None else np.ones(self.action_space.n, dtype=bool)

    def expert(self, obs: dict) -> int:
        """The oracle: write the first reference of the current example, then eos."""
        reference = self.tokenizer.encode(self.current_example.references[0])
        written = int(obs["attention_mask"].sum()) - self.current_prompt_len
        return reference[written] if written < len(reference) else self.tokenizer.eos_id

    def _render_text(self) -> str:
        example = self.current_example
        wrote = self.tokenizer.decode(self._written)
        end = " <eos>" if self._written and self._written[-1] == self.tokenizer.eos_id else ""
        lines = [f"prompt:     {example.prompt!r}", f"completion: {wrote!r}{end}"]
        if self._done:
            lines += [f"references: {list(example.references)!r}", f"return:     {self._return:.3f}"]
        return "\n".join(lines)

    def render(self) -> str | None:
        """The episode so far as text: prompt, completion, and at the end references and return."""
        return render_text(self.render_mode, self._render_text() if self._example is not None else "")


TokenGenerationEnv.__doc__ = TokenGenerationEnv.__doc__.replace("{args}", _DOC_ARGS)


class TokenGenerationVectorEnv(TorchVectorEnv):
    """A batch of :class:`TokenGenerationEnv` episodes as torch tensors on ``device``.

    Same rules, arguments and spaces as :class:`TokenGenerationEnv` (see its docstring), plus
    ``num_envs``, ``device`` and ``max_episode_steps``. Observations are a dict of tensors
    ``input_ids (B, max_len)`` int64 and ``attention_mask (B, max_len)`` int8 on ``device``.
    New examples come from the task's tensor encoder, so resets stay on the device for the
    built-in tasks. Rewards that run on ids (``token_accuracy``) are computed for the whole batch
    on the device; text rewards decode only the episodes that just ended. ``info["score"]`` holds
    the final scores where ``info["_score"]`` is true; an episode succeeds when its score is at
    least 1. The expert writes the first reference; :meth:`episode_metrics` reports exact match,
    F1 and the task's own metrics.
    """

    has_expert = True

    @arguments_of(TokenSetup.build, TorchVectorEnv)
    def __init__(self, num_envs: int = 1, task: Any = "copy", **kwargs: Any) -> None:
        super().__init__(num_envs, **pop_arguments(kwargs, TorchVectorEnv))
        self.setup = s = TokenSetup.build(task, **kwargs)
        self._set_spaces(token_observation_space(s.max_len, s.tokenizer.vocab_size), gym.spaces.Discrete(s.tokenizer.vocab_size))
        B, T, dev = num_envs, s.max_new_tokens, self.device
        self.example = s.encode(torch.zeros(B, dtype=torch.int64, device=dev))
        self.keys = torch.zeros(B, dtype=torch.int64, device=dev)
        self.written = torch.full((B, T), s.tokenizer.pad_id, dtype=torch.int64, device=dev)  # (B, T)
        self.written_len = torch.zeros(B, dtype=torch.int64, device=dev)  # (B,) eos included
        self.ended_with_eos = torch.zeros(B, dtype=torch.bool, device=dev)  # (B,)
        self.score = torch.zeros(B, device=dev)  # last score, for shaping
        self._cols = torch.arange(s.max_len, device=dev)
        # The observation, kept up to date: a reset writes its rows' prompts, a step writes one
        # token per sub-env, so a step costs the same at any length (observations are copies).
        self._input_ids = torch.full((B, s.max_len), s.tokenizer.pad_id, dtype=torch.int64, device=dev)
        self._attention_mask = torch.zeros((B, s.max_len), dtype=torch.int8, device=dev)
        if s.allowed is not None:
            self.allowed_actions = torch.as_tensor(s.allowed, device=dev)
        levels = getattr(s.task, "difficulties", None)
        if levels is not None:  # a puzzle's knob: the levels up to the one the env was made with, which set its shapes
            self.difficulties = range(levels[0], s.task.difficulty + 1)
            self._difficulty = s.task.difficulty

    def _apply_difficulty(self, level: int) -> None:
        self.setup.task.difficulty = level

    @property
    def tokenizer(self) -> Tokenizer:
        return self.setup.tokenizer

    @property
    def per_step_rewards(self) -> bool:
        """Whether a step before the last can be paid: with ``shaping=True`` only."""
        return self.setup.shaping

    def stream_state(self) -> dict[str, Any]:
        """The base streams, and the reward's own state where it keeps one (a learned reward's
        running normalisation), so a resumed run scores as the uninterrupted one."""
        reward = self.setup.reward.state_dict()
        return {**super().stream_state(), **({"reward": reward} if reward else {})}

    def load_stream_state(self, state: dict[str, Any]) -> None:
        super().load_stream_state(state)
        self.setup.reward.load_state_dict(state.get("reward", {}))

    def _by_level(self, levels: list[int] | None, make) -> list[tuple[torch.Tensor | None, Any]]:
        """``[(where, make(where))]``, one per level among ``levels`` (one per episode), made with
        the task at that level; ``where`` (int64) are the episodes at it, ``None`` for all of them
        when they share one level (or the env has no knob: ``levels`` is ``None``)."""
        if levels is None:
            return [(None, make(None))]
        task, distinct, parts, at = self.setup.task, sorted(set(levels)), [], torch.tensor(levels)
        try:
            for level in distinct:
                task.difficulty = level
                where = None if len(distinct) == 1 else (at == level).nonzero().squeeze(1)
                parts.append((where, make(where)))
        finally:
            task.difficulty = self.difficulty
        return parts

    def _encode(self, keys: torch.Tensor, levels: torch.Tensor | None) -> EncodedExamples:
        """The examples of ``keys``, each drawn at its level."""
        parts = self._by_level(None if levels is None else levels.tolist(),
                               lambda where: self.setup.encode(keys if where is None else keys[where.to(keys.device)]))
        if parts[0][0] is None:
            return parts[0][1]
        out = EncodedExamples(*(t.new_empty((len(keys), *t.shape[1:])) for t in vars(parts[0][1]).values()))
        for where, part in parts:
            for t, p in zip(vars(out).values(), vars(part).values()):
                t.index_copy_(0, where.to(t.device), p)
        return out

    def _examples(self, keys: list[int], levels: list[int] | None) -> list[Example]:
        """The examples of ``keys``, each at its level, in order: what a text reward judges."""
        out: list[Any] = [None] * len(keys)
        task = self.setup.task
        for where, part in self._by_level(levels, lambda where: task.examples_for(
                keys if where is None else [keys[i] for i in where.tolist()])):
            for i, ex in zip(range(len(keys)) if where is None else where.tolist(), part):
                out[i] = ex
        return out

    def _start(self, mask: torch.Tensor, keys: torch.Tensor) -> None:
        idx = mask.nonzero().squeeze(1)
        levels = self.levels  # each episode's; None without a knob (see TorchVectorEnv)
        if len(idx) == self.num_envs:
            self.example = self._encode(keys, levels)
        else:  # only the restarted sub-envs: a task that encodes in Python pays for those alone
            new = self._encode(keys[idx], None if levels is None else levels[idx])
            self.example = EncodedExamples(*(old.index_copy(0, idx, part) for old, part in
                                             zip(vars(self.example).values(), vars(new).values())))
        self.keys = torch.where(mask, keys, self.keys)
        self.written = torch.where(mask[:, None], self.tokenizer.pad_id, self.written)
        self.written_len = torch.where(mask, 0, self.written_len)
        self.ended_with_eos = self.ended_with_eos & ~mask
        ex, T = self.example, self.setup.max_new_tokens
        prompt = self._cols < ex.prompt_len[:, None]  # (B, max_len)
        padded = F.pad(ex.prompt_ids, (0, T), value=self.tokenizer.pad_id)
        rows = mask[:, None]
        self._input_ids = torch.where(rows, torch.where(prompt, padded, self.tokenizer.pad_id), self._input_ids)
        self._attention_mask = torch.where(rows, prompt.to(torch.int8), self._attention_mask)
        if self.setup.shaping:
            self.score = torch.where(mask, self._scores(mask), self.score)

    def _scores(self, which: torch.Tensor) -> torch.Tensor:
        """The reward of the current completions where ``which`` (0 elsewhere)."""
        ex = self.example
        completion_len = self.written_len - self.ended_with_eos.long()  # the eos is not part of it
        if self.setup.reward.on_device:  # the whole batch on the device, no sync
            batch = EpisodeBatch(ex.prompt_ids, ex.prompt_len, self.written, completion_len,
                                 ex.reference_ids, ex.reference_len, self.tokenizer)
            return torch.where(which, self.setup.reward(batch), 0.0)
        idx = which.nonzero().squeeze(1)
        out = torch.zeros(self.num_envs, device=self.device)
        if len(idx):
            keys = self.keys[idx].tolist()
            levels = None if self.levels is None else self.levels[idx].tolist()
            batch = EpisodeBatch(ex.prompt_ids[idx], ex.prompt_len[idx], self.written[idx], completion_len[idx],
                                 ex.reference_ids[idx], ex.reference_len[idx], self.tokenizer,
                                 lambda: self._examples(keys, levels))
            out[idx] = self.setup.reward(batch)
        return out

    def _advance(self, actions, active):
        T = self.setup.max_new_tokens
        slot = self.written_len.clamp(max=T - 1)[:, None]
        token = torch.where(active, actions, self.written.gather(1, slot)[:, 0])
        self.written.scatter_(1, slot, token[:, None])
        self.written_len = self.written_len + active.long()
        at = self.example.prompt_len[:, None] + slot  # the slot's position in the observation
        self._input_ids.scatter_(1, at, token[:, None])
        self._attention_mask.scatter_(1, at, (slot < self.written_len[:, None]).to(torch.int8))
        terminated, truncated = self.setup.episode_end(actions, self.written_len, active)
        done = terminated | truncated
        self.ended_with_eos = self.ended_with_eos | terminated
        scored = self.setup.scored(active, done)
        score = self._scores(scored)
        reward = torch.where(scored, self.setup.pay(score, self.score), 0.0)
        self.score = torch.where(scored, score, self.score)
        return reward, terminated, truncated, {"score": torch.where(done, self.score, 0.0), "_score": done,
                                               "success": done & (self.score >= 1.0)}

    def _observe(self) -> dict[str, torch.Tensor]:
        return {"input_ids": self._input_ids.clone(), "attention_mask": self._attention_mask.clone()}

    # -- the env -> trainer protocol -------------------------------------------------------------
    def _longest_episode(self) -> int:
        return self.setup.max_new_tokens

    def expert(self, obs) -> torch.Tensor:
        """The oracle: the first reference of each current example, then eos."""
        ref, ref_len = self.example.reference_ids[:, 0], self.example.reference_len[:, 0]  # first reference
        t = self.written_len.clamp(max=ref.shape[1] - 1)
        return torch.where(self.written_len < ref_len, ref.gather(1, t[:, None]).squeeze(1), self.tokenizer.eos_id)

    def episode_texts(self) -> list[tuple[Example, str]]:
        """Each sub-env's current example and the completion it wrote (up to its eos)."""
        n = (self.written_len - self.ended_with_eos.long()).tolist()
        texts = [self.tokenizer.decode(row[:k]) for row, k in zip(self.written.tolist(), n)]
        return list(zip(self.setup.task.examples_for(self.keys.tolist()), texts))

    def episode_metrics(self) -> dict[str, float]:
        """``exact_match`` and ``f1`` of the completions against the references, and the task's own
        :meth:`~textgym.tasks.Task.text_metrics` (Review-v0: ``grammatical``, ``positive_words``)."""
        pairs = self.episode_texts()
        n = len(pairs)
        metrics = {"exact_match": sum(exact_match_score(c, ex.references) for ex, c in pairs) / n,
                   "f1": sum(f1_score(c, ex.references) for ex, c in pairs) / n}
        metrics.update(self.setup.task.text_metrics([ex.prompt for ex, _ in pairs], [c for _, c in pairs]))
        return metrics

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        lines = []
        for i in range(self.num_envs):
            ex = self.setup.task.example(int(self.keys[i]))
            wrote = self.tokenizer.decode(self.written[i, : self.written_len[i]].tolist(), skip_special_tokens=False)
            lines.append(f"[{i}] {ex.prompt!r} -> {wrote!r}")
        return "\n".join(lines)
