"""Lesson 2: a standard RL library on textgym, with no glue code.

Stable-Baselines3 learns two textgym envs with the recipes of ``benchmarks/sb3.py``:

1. GuessNumber-v0 with sb3-contrib's MaskablePPO and its default MLP, from ``make_vec_env``. The
   env gives the action masks itself (``env.action_masks()``: the guesses that can still be right),
   so the policy only chooses among sensible guesses.
2. Reverse-v0 with SB3's PPO and textgym's transformer features extractor, on textgym's torch
   vector env through the ``SB3VecEnv`` adapter (SB3 cannot use Gymnasium vector envs directly).

    python examples/02_sb3_agents.py                  # about 13 minutes on a 2-core CPU
    python examples/02_sb3_agents.py --steps 2000 --reverse-steps 2048   # a quick look
"""

import argparse
import time

import gymnasium as gym
import torch
from sb3_contrib import MaskablePPO
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecMonitor

import textgym  # noqa: F401  (registers the envs)
from textgym.cli import play
from textgym.envs.sb3 import SB3VecEnv, TokenTransformerExtractor


def evaluate(act, env_id, episodes):
    """Deterministic play with textgym's episode loop: (mean return, success rate, mean length).
    ``act(obs, env)`` reads the observation and, for MaskablePPO, the env's masks."""
    env = gym.make(env_id)
    return play(env, lambda obs: int(act(obs, env.unwrapped)), episodes, seed=10_000)


def main(steps: int = 100_000, reverse_steps: int = 600_000, episodes: int = 200, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    results = {}

    # 1. GuessNumber with MaskablePPO: make_vec_env's envs answer action_masks(), which
    #    MaskablePPO calls on the vector env before every step.
    print(f"1/2 MaskablePPO on GuessNumber-v0, {steps:,} steps ...", flush=True)
    start = time.time()
    venv = make_vec_env("textgym:textgym/GuessNumber-v0", n_envs=8, seed=seed)
    model = MaskablePPO("MlpPolicy", venv, seed=seed, verbose=0)
    model.learn(total_timesteps=steps)
    results["GuessNumber-v0"] = evaluate(
        lambda obs, env: model.predict(obs, action_masks=env.action_masks(), deterministic=True)[0],
        "textgym/GuessNumber-v0", episodes)
    print(f"    trained in {time.time() - start:.0f} s", flush=True)

    # 2. Reverse with a transformer over the tokens, on the torch vector env. shaping=True pays
    #    each token as it is written (see help(TokenGenerationEnv)); a whole episode's return is
    #    unchanged. A token is right or wrong whatever came before it, so its own reward is all the
    #    credit it earns: gamma=0 keeps the later tokens' luck out of its advantage.
    print(f"2/2 PPO with TokenTransformerExtractor on Reverse-v0, {reverse_steps:,} steps ...", flush=True)
    start = time.time()
    venv = VecMonitor(SB3VecEnv("textgym/Reverse-v0", num_envs=64, shaping=True))
    venv.seed(seed)
    model = PPO("MultiInputPolicy", venv, n_steps=32, batch_size=512, n_epochs=4, learning_rate=lambda f: 3e-4 * f,
                ent_coef=0.01, gamma=0.0, seed=seed, verbose=0,
                policy_kwargs=dict(features_extractor_class=TokenTransformerExtractor,
                                   features_extractor_kwargs=dict(d_model=128)))
    model.learn(total_timesteps=reverse_steps)
    results["Reverse-v0"] = evaluate(lambda obs, env: model.predict(obs, deterministic=True)[0],
                                     "textgym/Reverse-v0", episodes)
    print(f"    trained in {time.time() - start:.0f} s", flush=True)

    print(f"{'env':<16} {'mean return':>12} {'success':>8} {'mean length':>12}")
    for env_id, (ret, win, length) in results.items():
        print(f"{env_id:<16} {ret:>12.3f} {win:>8.1%} {length:>12.2f}")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000, help="MaskablePPO steps on GuessNumber-v0")
    parser.add_argument("--reverse-steps", type=int, default=600_000, help="PPO steps on Reverse-v0")
    parser.add_argument("--episodes", type=int, default=200, help="evaluation episodes")
    args = parser.parse_args()
    main(args.steps, args.reverse_steps, args.episodes)
