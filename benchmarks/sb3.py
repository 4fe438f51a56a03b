"""Stable-Baselines3 recipes that learn textgym envs, measured: the README's SB3 snippets.

1. GuessNumber-v0 with sb3-contrib's MaskablePPO and textgym's action masks (the guesses still
   possible), through ``make_vec_env``.
2. Reverse-v0 with SB3's PPO, textgym's ``TokenTransformerExtractor`` and per-token shaping,
   through ``SB3VecEnv``, discounting with ``gamma=0`` (each token is paid for itself); and random
   tokens on the same strings, the floor.

Each is evaluated on 1,000 held-out episodes with the deterministic policy.

    python benchmarks/sb3.py            # about 13 minutes on a 2-core CPU
    python benchmarks/sb3.py --only reverse --seed 1 --threads 1   # another seed of Reverse-v0
    python benchmarks/sb3.py --quick    # tiny budgets, to check that it runs
"""

import argparse
import time

import gymnasium as gym
import numpy as np
import torch

import textgym  # noqa: F401  (registers the envs)


def final_infos(env_id: str, act, episodes: int) -> list[dict]:
    """The last ``info`` of each of ``episodes`` held-out episodes played by ``act(obs, env) -> action``."""
    env = gym.make(env_id)
    infos = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=10_000 + ep)
        done = False
        while not done:
            obs, _, terminated, truncated, info = env.step(int(act(obs, env.unwrapped)))
            done = terminated or truncated
        infos.append(info)
    return infos


def guess_number(steps: int, episodes: int) -> dict:
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.env_util import make_vec_env

    start = time.time()
    model = MaskablePPO("MlpPolicy", make_vec_env("textgym:textgym/GuessNumber-v0", n_envs=8, seed=0), seed=0)
    model.learn(steps)
    seconds = time.time() - start
    infos = final_infos("textgym/GuessNumber-v0",
                        lambda obs, env: model.predict(obs, action_masks=env.action_masks(), deterministic=True)[0], episodes)
    wins, guesses = [i["is_success"] for i in infos], [i["guesses"] for i in infos]
    return {"run": "MaskablePPO, GuessNumber-v0", "steps": steps, "seconds": seconds,
            "result": f"success {np.mean(wins):.1%}, mean guesses {np.mean(guesses):.2f}"}


def reverse(steps: int, episodes: int, seed: int = 0) -> dict:
    """SB3's PPO with a 128-wide extractor, the step size decayed linearly to 0, and ``gamma=0``.

    With ``shaping=True`` each token is paid as it is written (its change of the token accuracy),
    and whether a token is right does not depend on the tokens before it, so a token's own reward
    is all the credit it earns: ``gamma=0`` makes each advantage that token's alone, where
    ``gamma=1`` adds the noise of every later token's sampling to it."""
    from stable_baselines3 import PPO

    from textgym.envs.sb3 import SB3VecEnv, TokenTransformerExtractor

    start = time.time()
    venv = SB3VecEnv("textgym/Reverse-v0", num_envs=64, shaping=True)
    model = PPO("MultiInputPolicy", venv, n_steps=32, batch_size=512, n_epochs=4, learning_rate=lambda f: 3e-4 * f,
                ent_coef=0.01, gamma=0.0, seed=seed, policy_kwargs=dict(features_extractor_class=TokenTransformerExtractor,
                                                                        features_extractor_kwargs=dict(d_model=128)))
    model.learn(steps)
    seconds = time.time() - start
    infos = final_infos("textgym/Reverse-v0", lambda obs, env: model.predict(obs, deterministic=True)[0], episodes)
    return {"run": f"PPO + TokenTransformerExtractor, Reverse-v0 (shaping), seed {seed}", "steps": steps,
            "seconds": seconds, "result": _reverse_result(infos)}


def reverse_random(episodes: int, seed: int = 0) -> dict:
    """Uniformly random tokens on the same held-out strings: the floor."""
    rng = np.random.default_rng(seed)
    infos = final_infos("textgym/Reverse-v0", lambda obs, env: rng.integers(env.action_space.n), episodes)
    return {"run": f"random tokens, Reverse-v0, seed {seed}", "steps": 0, "seconds": 0.0,
            "result": _reverse_result(infos)}


def _reverse_result(infos: list[dict]) -> str:
    exact = [i["completion"] == i["references"][0] for i in infos]
    accuracy = [i["score"] for i in infos]  # token accuracy, the env's reward
    return f"exact match {np.mean(exact):.3f}, token accuracy {np.mean(accuracy):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny budgets")
    parser.add_argument("--only", choices=("guess", "reverse", "random"))
    parser.add_argument("--seed", type=int, default=0, help="seed of the Reverse-v0 run (default 0)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--steps", type=int, help="env steps of the Reverse-v0 run (default 600,000)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = {"guess": 512 if args.quick else 100_000, "reverse": args.steps or (2048 if args.quick else 600_000)}
    episodes = 10 if args.quick else 1000
    runs = (("guess", guess_number), ("reverse", lambda s, e: reverse(s, e, args.seed)),
            ("random", lambda s, e: reverse_random(e, args.seed)))
    for name, fn in runs:
        if args.only in (None, name):
            row = fn(steps.get(name, 0), episodes)
            print(f"{row['run']:<55} {row['steps']:>9,} steps {row['seconds']:>6.0f} s   {row['result']}", flush=True)


if __name__ == "__main__":
    main()
