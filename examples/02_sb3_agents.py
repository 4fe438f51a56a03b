"""Lesson 2: a standard RL library on textgym, with no glue code.

Stable-Baselines3 PPO with its default MLP policy learns GuessNumber-v0 from `make_vec_env`.
Then SB3 PPO learns Reverse-v0 with textgym's transformer features extractor, running on
textgym's torch vector env through the `SB3VecEnv` adapter (SB3 cannot use Gymnasium vector
envs directly).

    python examples/02_sb3_agents.py            # about 6 minutes on a 2-core CPU
    python examples/02_sb3_agents.py --steps 2000  # a quick look
"""

import argparse

import gymnasium as gym
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecMonitor

import textgym  # noqa: F401  (registers the envs)
from textgym.cli import play
from textgym.envs.sb3 import SB3VecEnv, TokenTransformerExtractor


def evaluate(model, env_id, episodes):
    """Greedy play with textgym's episode loop: (mean return, success rate, mean length)."""
    env = gym.make(env_id)
    return play(env, lambda obs: int(model.predict(obs, deterministic=True)[0]), episodes, seed=10_000)


def main(steps: int = 300_000, reverse_steps: int = 30_000, episodes: int = 200, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    results = {}

    # 1. GuessNumber with SB3's MLP policy on the 23-number observation. shaping=True pays each
    #    guess for how much it narrows the interval, a signal on every step instead of only at
    #    the win; a won game's return is unchanged (see help(GuessNumberEnv)).
    venv = make_vec_env("textgym:textgym/GuessNumber-v0", n_envs=8, seed=seed, env_kwargs={"shaping": True})
    model = PPO("MlpPolicy", venv, n_steps=256, batch_size=512, learning_rate=1e-3, gamma=1.0,
                policy_kwargs=dict(net_arch=[128, 128]), seed=seed, verbose=0)
    model.learn(total_timesteps=steps)
    results["GuessNumber-v0"] = evaluate(model, "textgym/GuessNumber-v0", episodes)

    # 2. Reverse with a transformer over the tokens, on the torch vector env.
    venv = VecMonitor(SB3VecEnv("textgym/Reverse-v0", num_envs=16))
    venv.seed(seed)
    policy_kwargs = dict(features_extractor_class=TokenTransformerExtractor,
                         features_extractor_kwargs=dict(d_model=64, n_layers=2, n_heads=4))
    model = PPO("MultiInputPolicy", venv, n_steps=64, batch_size=256, policy_kwargs=policy_kwargs, seed=seed, verbose=0)
    model.learn(total_timesteps=reverse_steps)
    results["Reverse-v0"] = evaluate(model, "textgym/Reverse-v0", episodes)

    print(f"{'env':<16} {'mean return':>12} {'success':>8} {'mean length':>12}")
    for env_id, (ret, win, length) in results.items():
        print(f"{env_id:<16} {ret:>12.3f} {win:>8.1%} {length:>12.2f}")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300_000, help="PPO steps on GuessNumber-v0")
    parser.add_argument("--reverse-steps", type=int, default=30_000, help="PPO steps on Reverse-v0")
    parser.add_argument("--episodes", type=int, default=200, help="evaluation episodes")
    args = parser.parse_args()
    main(args.steps, args.reverse_steps, args.episodes)
