"""A curriculum: move a vector env's difficulty to keep the training success in a band.

Any textgym vector env with a difficulty knob (``envs.difficulties``, e.g. the puzzles'
``difficulty``) takes one: ``envs.set_curriculum(Curriculum(low=0.2, high=0.8))``, or a trainer's
``curriculum`` setting (``textgym train ppo --set 'curriculum={"low": 0.2, "high": 0.8}'``). The
env then starts at its easiest difficulty; after every ``episodes`` finished episodes (counted
across resets, read once per full reset: no sync while stepping) it moves one level up when the
success rate is above ``high``, one level down when it is below ``low``, and stays otherwise. The
hardest level is the difficulty the env was made with, which is also where a trainer evaluates.

With ``window=w`` above 1, each new episode's level is drawn uniformly (from the episode's key, so
a seed replays it) among the current level and the ``w - 1`` below it, as RLVE samples a range of
difficulties (Zeng et al., 2025): the levels already learned keep being played, and a prompt that
names its level (the puzzles' size, GuessNumberText's range) is worth reading. The success rate
that moves the level is that of the episodes at the current level alone: a trainer logs it at
each decision as ``level_success``, beside the run's ``success_rate`` over all the levels played.

The state (the level, the counts, the moves) is part of the env's ``stream_state``, so a resumed
run moves exactly as the uninterrupted one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Curriculum:
    """Keep the training success rate in ``[low, high]`` by moving the difficulty one level at a time.

    Args:
        low: below this success rate the env gets one level easier (``0 <= low < high``).
        high: above it, one level harder (``high <= 1``).
        episodes: finished episodes between two decisions (at least 1).
        start: the first level (default: the easiest).
        window: how many levels new episodes are drawn from, the current one and those below it
            (1, the default: the current level alone).
    """

    low: float = 0.2
    high: float = 0.8
    episodes: int = 256
    start: int | None = None
    window: int = 1
    moves: list[tuple[int, int]] = field(default_factory=list)
    """``(episodes finished so far, new level)`` for the start and every move since."""

    def __post_init__(self) -> None:
        for name in ("low", "high"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 <= v <= 1:
                raise ValueError(f"curriculum {name} must be a success rate in [0, 1], got {v!r}")
        if not self.low < self.high:
            raise ValueError(f"the curriculum's band is empty: low={self.low} must be below high={self.high}")
        if isinstance(self.episodes, bool) or not isinstance(self.episodes, int) or self.episodes < 1:
            raise ValueError(f"curriculum episodes must be a positive integer, got {self.episodes!r}")
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 1:
            raise ValueError(f"curriculum window must be a positive integer (how many levels episodes are drawn "
                             f"from), got {self.window!r}")
        self.finished = 0  # episodes finished since the start
        self.rate = math.nan  # the current level's success rate at the last decision (NaN before the first)
        self._counted = self._succeeded = None  # since the last decision, on the env's device

    @classmethod
    def from_setting(cls, setting: dict[str, Any]) -> Curriculum:
        """A curriculum from a trainer's ``curriculum`` setting (a JSON object of the arguments above)."""
        allowed = {"low", "high", "episodes", "start", "window"}
        if not isinstance(setting, dict) or set(setting) - allowed:
            raise ValueError(f"curriculum must be a JSON object with keys among {sorted(allowed)}, got {setting!r}")
        return cls(**setting)

    def attach(self, levels: range, device: torch.device) -> int:
        """Start on an env whose levels are ``levels``; the first level."""
        level = levels[0] if self.start is None else self.start
        if level not in levels:
            raise ValueError(f"curriculum start must be a difficulty in {levels[0]}..{levels[-1]}, got {level!r}")
        self._counted = torch.zeros((), dtype=torch.int64, device=device)
        self._succeeded = torch.zeros((), dtype=torch.int64, device=device)
        if not self.moves:
            self.moves.append((0, level))
        return self.moves[-1][1]

    def lowest(self, level: int, levels: range) -> int:
        """The easiest level new episodes are drawn from while the curriculum is at ``level``."""
        return max(levels[0], level - self.window + 1)

    def count(self, done: torch.Tensor, success: torch.Tensor) -> None:
        """Count the episodes that ended in a step and those that succeeded (on the device): the
        env passes those at the current level as ``done``."""
        self._counted += done.sum()
        self._succeeded += (done & success).sum()

    def decide(self, level: int, levels: range) -> int:
        """The level for the episodes that start now: one up, one down or the same."""
        counted, succeeded = torch.stack((self._counted, self._succeeded)).tolist()  # one sync
        if counted < self.episodes:
            return level
        self.rate = rate = succeeded / counted
        self.finished += counted
        self._counted.zero_()
        self._succeeded.zero_()
        new = level + 1 if rate > self.high else level - 1 if rate < self.low else level
        new = min(max(new, levels[0]), levels[-1])
        if new != level:
            self.moves.append((self.finished, new))
        return new

    def state_dict(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "episodes": self.episodes, "start": self.start,
                "window": self.window, "moves": [list(m) for m in self.moves], "finished": self.finished,
                "counted": int(self._counted), "succeeded": int(self._succeeded), "rate": self.rate}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.moves = [tuple(m) for m in state["moves"]]
        self.finished = int(state["finished"])
        self.rate = float(state.get("rate", math.nan))
        self._counted.fill_(int(state["counted"]))
        self._succeeded.fill_(int(state["succeeded"]))
