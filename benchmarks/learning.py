"""Learning results: each recipe (and a few runs beside them) trained from scratch, then evaluated greedily.

    python benchmarks/learning.py                 # all of them, about 30 minutes on a 2-core CPU
    python benchmarks/learning.py --only ppo-guess --only sft-reverse
    python benchmarks/learning.py --quick         # tiny budgets, to check that it runs

Prints one row per run: the greedy evaluation on 1,024 held-out episodes, the wall time of
training, and the target where the issue set one.
"""

import argparse
import json
import time

from textgym.agents import evaluate_policy, ppo, reinforce, sft
from textgym.recipes import find_recipe

SHAPED = {"shaping": True}


def recipe(trainer, cls, env_id: str, algo: str):
    """``(trainer, config)`` of the shipped recipe of ``algo`` on ``env_id`` (textgym recipes)."""
    r = find_recipe(env_id, algo, required=True)
    return trainer, cls(env_id=env_id, env_kwargs=r.env_kwargs, **r.config)


# name: (what, target, list of (trainer, config) run in sequence, each starting from the last policy)
RUNS = {
    "ppo-guess": ("PPO, GuessNumber-v0", "success >= 99%, mean guesses <= 6.1, < 10 min",
                  [recipe(ppo, ppo.PPOConfig, "textgym/GuessNumber-v0", "ppo")]),
    "reinforce-guess": ("REINFORCE (RLOO), GuessNumber-v0", "success >= 95%",
                        [recipe(reinforce, reinforce.ReinforceConfig, "textgym/GuessNumber-v0", "reinforce")]),
    "ppo-reverse": ("PPO, Reverse-v0", "token accuracy >= 0.95",
                    [recipe(ppo, ppo.PPOConfig, "textgym/Reverse-v0", "ppo")]),
    "sft-reverse": ("SFT, Reverse-v0", "exact match >= 0.99",
                    [recipe(sft, sft.SFTConfig, "textgym/Reverse-v0", "sft")]),
    "sft-copy": ("SFT, Copy-v0", "exact match >= 0.99", [recipe(sft, sft.SFTConfig, "textgym/Copy-v0", "sft")]),
    "sft-sort": ("SFT, Sort-v0", "exact match >= 0.99", [recipe(sft, sft.SFTConfig, "textgym/Sort-v0", "sft")]),
    "sft-addition": ("SFT, Addition-v0", "exact match >= 0.99",
                     [recipe(sft, sft.SFTConfig, "textgym/Addition-v0", "sft")]),
    "ppo-text": ("PPO, GuessNumberText-v0", "report",
                 [(ppo, ppo.PPOConfig(env_id="textgym/GuessNumberText-v0", env_kwargs=SHAPED, total_steps=1_000_000, learning_rate=1e-3))]),
    "sft-ppo-text": ("SFT then PPO, GuessNumberText-v0", "report",
                     [recipe(sft, sft.SFTConfig, "textgym/GuessNumberText-v0", "sft"),
                      (ppo, ppo.PPOConfig(env_id="textgym/GuessNumberText-v0", env_kwargs=SHAPED, total_steps=400_000, kl_coef=0.05))]),
}


def run(name: str, quick: bool, episodes: int) -> dict:
    what, target, stages = RUNS[name]
    policy, start = None, time.time()
    for trainer, cfg in stages:
        if quick:
            cfg = type(cfg)(**{**cfg.__dict__, "total_steps": 500, "num_envs": 16, "eval_episodes": 16})
        policy = trainer.train(cfg, policy=policy, progress=False).policy
    seconds = time.time() - start
    ev = evaluate_policy(policy, cfg.env_id, {}, episodes, next(policy.parameters()).device, seed=2024)
    return {"run": name, "what": what, "target": target, "train_seconds": round(seconds, 1),
            "steps": sum(c.total_steps for _, c in stages) if not quick else 500 * len(stages), **ev}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=sorted(RUNS), help="run only these (repeatable)")
    parser.add_argument("--quick", action="store_true", help="tiny budgets")
    parser.add_argument("--episodes", type=int, default=1024, help="greedy evaluation episodes")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()
    rows = []
    for name in args.only or list(RUNS):
        row = run(name, args.quick, args.episodes)
        rows.append(row)
        metric = (f"success {row['success_rate']:.1%}, mean guesses {row['mean_guesses']:.2f}" if "mean_guesses" in row
                  else f"token accuracy {row['mean_return']:.3f}, exact match {row['exact_match']:.3f}")
        print(f"{row['what']:<36} {row['steps']:>10,} steps {row['train_seconds']:>7.1f} s   {metric}   [target: {row['target']}]", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
