"""The ``textgym`` command: ``textgym list`` and ``textgym demo``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import gymnasium as gym
import numpy as np

import textgym
from textgym.agents import scripted_policy


def _space(space: gym.Space) -> str:
    if isinstance(space, gym.spaces.Dict):
        return "Dict(" + ", ".join(f"{k}: {v.dtype}{tuple(v.shape)}" for k, v in space.spaces.items()) + ")"
    if isinstance(space, gym.spaces.Box):
        return f"Box({space.dtype}, {tuple(space.shape)})"
    return str(space)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda row: "  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def cmd_list(args: argparse.Namespace) -> int:
    """Print every registered env: id, spaces, default reward, description."""
    rows = []
    for info in textgym.ENVS:
        env = gym.make(info.id)
        rows.append([info.id, _space(env.action_space), _space(env.observation_space), info.default_reward, info.description])
        env.close()
    print(_table(["id", "action space", "observation space", "default reward", "description"], rows))
    return 0


def play(env: gym.Env, policy, episodes: int, seed: int) -> tuple[float, float, float]:
    """Mean return, success rate and mean length of ``episodes`` episodes of ``policy``."""
    returns, wins, lengths = [], [], []
    for ep in range(episodes):
        obs, info = env.reset(seed=seed + ep)
        total, steps, done = 0.0, 0, False
        while not done:
            obs, reward, terminated, truncated, info = env.step(policy(obs))
            total, steps, done = total + float(reward), steps + 1, terminated or truncated
        returns.append(total)
        wins.append(bool(info["success"]) if "success" in info else info["score"] >= 1.0)
        lengths.append(steps)
    return float(np.mean(returns)), float(np.mean(wins)), float(np.mean(lengths))


def cmd_demo(args: argparse.Namespace) -> int:
    """Play every env with a random agent and with its scripted player; print a table."""
    rows = []
    for info in textgym.ENVS:
        env = gym.make(info.id)
        env.action_space.seed(args.seed)
        agents = {"random": lambda obs, env=env: env.action_space.sample(), "scripted": scripted_policy(env)}
        for name, policy in agents.items():
            ret, win, length = play(env, policy, args.episodes, args.seed)
            rows.append([info.id, name, str(args.episodes), f"{ret:.3f}", f"{win:.1%}", f"{length:.2f}"])
    print(_table(["env", "agent", "episodes", "mean return", "success", "mean length"], rows))
    print("\nscripted: binary search for the guessing games, the reference answer for the token tasks.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="textgym", description="Gymnasium environments for text generation.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="list the registered envs")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("demo", help="play every env with a random and a scripted agent")
    p.add_argument("--episodes", type=int, default=100, help="episodes per env and agent (default 100)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "episodes", 1) < 1:
        print(f"textgym: --episodes must be at least 1, got {args.episodes}", file=sys.stderr)
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
