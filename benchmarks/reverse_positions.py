"""Where RL fails on Reverse-v0: exact match by string length and accuracy by output position.

    python benchmarks/reverse_positions.py                  # REINFORCE-RLOO, 120,000 steps, about 1 minute
    python benchmarks/reverse_positions.py --algo ppo --steps 300000 --set d_model=128

Trains a policy from scratch at the env's recipe (with the budget given), plays held-out strings
greedily, and prints, for each length, the exact match and the accuracy of each letter written,
with the policy's entropy per token in the last training iteration. Chance for one letter is 1/6.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

from textgym.agents import grpo, ppo, reinforce
from textgym.agents.evaluate import play_policy
from textgym.recipes import find_recipe
from textgym.threads import set_threads

TRAINERS = {"ppo": (ppo, ppo.PPOConfig), "reinforce": (reinforce, reinforce.ReinforceConfig), "grpo": (grpo, grpo.GRPOConfig)}


def by_length(rows: list[dict]) -> dict[int, tuple[float, list[float]]]:
    """For each string length: the exact match, and the accuracy of each output position."""
    groups: dict[int, list[dict]] = defaultdict(list)
    for row in rows:
        groups[len(row["references"][0])].append(row)
    out = {}
    for n, group in sorted(groups.items()):
        exact = sum(r["completion"] in r["references"] for r in group) / len(group)
        right = [sum(len(r["completion"]) > i and r["completion"][i] == r["references"][0][i] for r in group) / len(group)
                 for i in range(n)]
        out[n] = (exact, right)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=sorted(TRAINERS), default="reinforce")
    parser.add_argument("--steps", type=int, default=120_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=512)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe field")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    set_threads(args.threads)
    recipe = find_recipe("textgym/Reverse-v0", args.algo, required=True)
    module, cls = TRAINERS[args.algo]
    fields = {**recipe.config, "total_steps": args.steps, "seed": args.seed}
    for item in args.set:
        key, value = item.split("=", 1)
        fields[key] = json.loads(value)
    result = module.train(cls(env_id="textgym/Reverse-v0", env_kwargs=recipe.env_kwargs, **fields), progress=False)
    metrics, rows = play_policy(result.policy, "textgym/Reverse-v0", {}, args.episodes, "cpu", seed=2024)
    print(f"{args.algo}, {args.steps:,} steps, seed {args.seed}: exact match {metrics['exact_match']:.3f}, "
          f"entropy per token in the last iteration {result.history[-1]['entropy']:.3f} nats")
    for n, (exact, right) in by_length(rows).items():
        print(f"length {n}: exact match {exact:.2f}   letters right by position {' '.join(f'{x:.2f}' for x in right)}")


if __name__ == "__main__":
    main()
