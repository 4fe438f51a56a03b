"""TextArena's single-player games as textgym text envs (``pip install 'textgym[textarena]'``).

TextArena (Guertler et al., 2025) keeps its own game loop: ``reset(num_players=1)``,
``get_observation()``, ``step(action) -> (done, info)`` and ``close() -> (rewards, game_info)``.
:class:`TextArenaEnv` gives one of its games the text env convention, so ``textgym/MultiTurn-v0``
plays it token by token::

    env = gym.make("textgym/MultiTurn-v0", text_env="textgym.envs.textarena:TextArenaEnv",
                   text_env_kwargs={"game": "GuessTheNumber-v0"})

GuessTheNumber, Mastermind, TowerOfHanoi and FrozenLake run offline; Wordle and Hangman need an
NLTK download and do not.
"""

from __future__ import annotations

import string

import gymnasium as gym

CHARSET = string.printable
"""The characters a TextArena text may hold here; any other is written as ``?``."""


def _clean(text: str, limit: int) -> str:
    """``text`` over :data:`CHARSET`, its last ``limit`` characters."""
    return "".join(ch if ch in CHARSET else "?" for ch in text)[-limit:]


class TextArenaEnv(gym.Env):
    """A TextArena single-player game as a text env (strings in, strings out).

    ## Description

    `reset` returns the game's first observation (its rules and the state); `step(message)` plays
    the message as the player's move and returns what the game printed since, as the reply. At the
    end the reply also gives TextArena's reason, and the reward is the player's TextArena reward.

    ## Action Space

    `Text(max_length=max_message_chars, charset=string.printable)`.

    ## Observation Space

    `Text(max_length=max_reply_chars, charset=string.printable)`; other characters become `?`, and
    a longer text keeps its last `max_reply_chars` characters.

    ## Rewards

    0 until the game ends, then TextArena's reward for the player (1 for a win).

    ## Episode End

    * Termination: TextArena says the game is done.
    * Truncation: none here; `textgym/MultiTurn-v0` truncates after `max_turns` messages.

    `info` at the end holds TextArena's game info for the player and `is_success` (reward >= 1).

    ## Arguments

    * `game`: a TextArena id, e.g. `"GuessTheNumber-v0"`.
    * `max_turns`: messages per episode, for MultiTurn (default 10).
    * `max_message_chars`, `max_reply_chars`: the bounds of the Text spaces (defaults 32, 1024).
    * Any other keyword goes to `textarena.make`.

    ## Version History

    * v0: initial version.
    """

    metadata = {"render_modes": []}

    def __init__(self, game: str = "GuessTheNumber-v0", max_turns: int = 10, max_message_chars: int = 32,
                 max_reply_chars: int = 1024, **game_kwargs) -> None:
        try:
            import textarena
        except ImportError:
            raise ImportError("TextArenaEnv needs TextArena: pip install 'textgym[textarena]'") from None
        self.game_id = game
        self.game = textarena.make(game, **game_kwargs)
        self.max_turns = max_turns
        self.observation_space = gym.spaces.Text(max_length=max_reply_chars, charset=CHARSET)
        self.action_space = gym.spaces.Text(max_length=max_message_chars, charset=CHARSET)
        self._seen = ""

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        self.game.reset(num_players=1, seed=int(self.np_random.integers(2**31)))
        _, observation = self.game.get_observation()
        self._seen = observation
        return _clean(observation, self.observation_space.max_length), {}

    def step(self, message: str) -> tuple[str, float, bool, bool, dict]:
        done, _ = self.game.step(message)
        _, observation = self.game.get_observation()
        reply = observation[len(self._seen):] if observation.startswith(self._seen) else observation
        self._seen = observation
        if not done:
            return _clean(reply, self.observation_space.max_length), 0.0, False, False, {}
        rewards, game_info = self.game.close()
        info = dict(game_info.get(0, {}))
        reward = float(rewards.get(0, 0.0))
        info["is_success"] = reward >= 1.0  # TextArena pays partial credit to a lost game
        if info.get("reason"):
            reply += f"\n[GAME] {info['reason']}"
        return _clean(reply, self.observation_space.max_length), reward, True, False, info
