"""Lesson 8: your own multi-turn game, written as text, learned token by token.

A text env is a plain Gymnasium env whose observations and actions are strings. Here the env shows
a letter and the agent must answer with the letter after it (`a` -> `b`, ..., `e` -> `a`), three
rounds in a row. Nothing in textgym knows this game: `textgym/MultiTurn-v0` turns it into a token
env (the agent writes its answer one token at a time, then eos), and PPO learns it through the
env -> trainer protocol.

    python examples/08_your_own_game.py                # about a minute on one CPU core
    python examples/08_your_own_game.py --steps 3000   # a quick look
"""

import argparse

import gymnasium as gym
import torch

from textgym.agents import ppo
from textgym.agents.rollout import SequenceView, collect, make_envs

LETTERS = "abcde"


class NextLetter(gym.Env):
    """Answer the letter after the one shown (cyclically), `rounds` times."""

    def __init__(self, rounds: int = 3):
        self.observation_space = gym.spaces.Text(max_length=3, charset=LETTERS + " \n")  # one reply: " c\n"
        self.action_space = gym.spaces.Text(max_length=1, charset=LETTERS)  # one message: "d"
        self.max_turns = rounds  # MultiTurn-v0 reads it

    def _draw(self) -> str:
        return LETTERS[self.np_random.integers(len(LETTERS))]

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.letter, self.right, self.turn = self._draw(), 0, 0
        return self.letter + "\n", {}

    def step(self, message: str):
        answer = LETTERS[(LETTERS.index(self.letter) + 1) % len(LETTERS)]
        self.turn += 1
        self.right += message == answer
        self.letter = self._draw()
        done = self.turn == self.max_turns
        info = {"right": self.right, "success": self.right == self.turn}
        return f" {self.letter}\n", float(message == answer), done, False, info


gym.register("examples/NextLetter-v0", entry_point=NextLetter)
ENV = dict(env_id="textgym/MultiTurn-v0", env_kwargs={"text_env": "examples/NextLetter-v0"})


def show_games(policy, n: int = 3) -> None:
    """Greedy games of the trained policy, as transcripts."""
    envs = make_envs(ENV["env_id"], n, torch.device("cpu"), **ENV["env_kwargs"])
    rollout = collect(envs, SequenceView(envs), policy.cpu(), seed=7, greedy=True)
    for i in range(n):  # the final observation is the whole transcript (decode drops pad and eos)
        print(f"game {i}: return {float(rollout.returns[i]):.0f}  {envs.tokenizer.decode(rollout.inputs[i].tolist())!r}")


def main(steps: int = 60_000, num_envs: int = 32, seed: int = 0) -> dict:
    # 1. The game as a token env: the tokenizer and the observation come from the Text spaces.
    env = gym.make(ENV["env_id"], **ENV["env_kwargs"], render_mode="ansi")
    print(f"action space {env.action_space}, observation {env.observation_space['input_ids'].shape}")
    obs, _ = env.reset(seed=0)
    tok = env.unwrapped.tokenizer
    for token in tok.encode("a") + [tok.eos_id]:  # one turn, by hand: write "a", then eos
        obs, reward, *_ = env.step(token)
    print(f"after one turn: {env.render()!r}, reward {reward}")

    # 2. PPO on it, with the defaults of every other env: nothing here is about letters.
    cfg = ppo.PPOConfig(**ENV, num_envs=num_envs, total_steps=steps, learning_rate=1e-3, seed=seed)
    result = ppo.train(cfg)
    ev = result.eval
    print(f"\ngreedy play over {ev['episodes']:.0f} games: success {ev['success_rate']:.1%}, "
          f"right answers per game {ev['mean_right']:.2f} of 3 (random play: under 0.1)")
    show_games(result.policy)
    return ev


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-envs", type=int, default=32)
    args = parser.parse_args()
    main(args.steps, args.num_envs, args.seed)
