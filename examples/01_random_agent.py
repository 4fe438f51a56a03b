"""Lesson 1: an env is a loop of observations, actions and rewards.

Make every textgym env with `gym.make`, play one episode with a random agent, and look at what
the agent sees (`obs`), what it does (`action`) and what it gets (`reward`). Then play the
guessing game with a scripted agent, binary search, to see what a perfect return looks like.

    python examples/01_random_agent.py
"""

import argparse

import gymnasium as gym

import textgym
from textgym.agents import scripted_policy


def play(env, policy, seed):
    """One episode; returns (return, number of steps, last info)."""
    obs, info = env.reset(seed=seed)
    total, steps, done = 0.0, 0, False
    while not done:
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        total, steps, done = total + reward, steps + 1, terminated or truncated
    return total, steps, info


def main(episodes: int = 3) -> None:
    for info in textgym.ENVS:
        env = gym.make(info.id, render_mode="ansi")
        total, steps, _ = play(env, lambda obs, env=env: env.action_space.sample(), seed=0)
        print(f"== {info.id}: random agent, return {total:.2f} in {steps} steps")
        print(env.render(), "\n")

    # Binary search reads the interval of secrets still possible from obs[0] and obs[1]
    # (see textgym/agents/scripted.py): the best any agent can do.
    env = gym.make("textgym/GuessNumber-v0")
    results = [play(env, scripted_policy(env), seed) for seed in range(episodes)]
    mean_guesses = sum(info["guesses"] for *_, info in results) / episodes
    print(f"binary search on GuessNumber-v0: {episodes} games, mean {mean_guesses:.2f} guesses, "
          f"all won: {all(info['success'] for *_, info in results)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=200)
    main(parser.parse_args().episodes)
