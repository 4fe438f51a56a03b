"""Lesson 4: PPO writes text, one token at a time.

Reverse-v0 shows the agent a string like "cabd=" and pays it for writing "dbac" then eos. PPO
(textgym/agents/ppo.py, read it top to bottom) samples a batch of episodes with the KV cache,
computes advantages with GAE, and takes several clipped steps on them.

With `shaping=True` the env pays each token as it is written (the change in per-token accuracy of
the prefix), so the reward tells the policy *which* token was right, not only how many.

    python examples/04_ppo_reverse.py                  # about 2 minutes on a 2-core CPU
    python examples/04_ppo_reverse.py --steps 40000 --num-envs 64   # a quick look: about 40 s of CPU;
                                                   # the 2- and 3-letter strings come out reversed
"""

import argparse

import torch

from textgym.agents import ppo
from textgym.agents.rollout import SequenceView, collect, make_envs


def show_samples(policy, n: int = 6) -> None:
    """Greedy completions for a few prompts."""
    envs = make_envs("textgym/Reverse-v0", n, torch.device("cpu"))
    collect(envs, SequenceView(envs), policy.cpu(), seed=123, greedy=True)
    for ex, text in envs.episode_texts():  # each episode's example and what the policy wrote
        mark = "ok" if text == ex.references[0] else "  "
        print(f"  {mark} {ex.prompt:<8} -> {text:<8} (reference {ex.references[0]})")


def main(steps: int = 600_000, num_envs: int = 256, seed: int = 0) -> dict:
    cfg = ppo.PPOConfig(
        env_id="textgym/Reverse-v0",
        env_kwargs={"shaping": True},
        num_envs=num_envs,
        total_steps=steps,
        seed=seed,
    )
    result = ppo.train(cfg)
    for h in result.history[:: max(1, len(result.history) // 8)]:
        print(f"steps {h['env_steps']:>9,}  token accuracy {h['mean_return']:.3f}  "
              f"exact {h['success_rate']:.1%}  entropy {h['entropy']:.3f}  approx_kl {h['approx_kl']:.4f}")
    ev = result.eval
    print(f"\ngreedy: token accuracy {ev['mean_return']:.3f}, exact match {ev['exact_match']:.3f}")
    show_samples(result.policy)
    return ev


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600_000)
    parser.add_argument("--num-envs", type=int, default=256)
    args = parser.parse_args()
    main(args.steps, args.num_envs)
