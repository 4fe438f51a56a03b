"""Lesson 5: supervised fine-tuning, then RL, on the guessing game played in text.

GuessNumberText-v0 is the bridge from games to language: the agent reads a transcript
("guess 1-100\\n50: higher\\n...") and writes its guess as digits. Learning that from rewards alone
is slow, because a random policy rarely even writes a valid number. So:

1. SFT: imitate a binary-search player, token by token (teacher forcing on its transcripts);
2. PPO from the SFT policy, with a KL penalty that keeps it close to what SFT taught
   (the RLHF recipe: a reference policy and `reward - kl_coef * KL`).

The table compares a policy trained by PPO alone, the SFT policy, and SFT-then-PPO, on the same
held-out games.

    python examples/05_sft_then_ppo_text_game.py                          # about 6 minutes on a 2-core CPU
    python examples/05_sft_then_ppo_text_game.py --sft-steps 60000 --ppo-steps 20000 --num-envs 64
        # a quick look, about 80 s of CPU: SFT already wins about 18% of games, PPO from scratch 3%
"""

import argparse

from textgym.agents import ppo, sft

ENV = "textgym/GuessNumberText-v0"


def main(sft_steps: int = 400_000, ppo_steps: int = 400_000, num_envs: int = 256, seed: int = 0) -> dict:
    common = dict(env_id=ENV, env_kwargs={"shaping": True}, num_envs=num_envs, seed=seed)

    # 0. PPO from scratch, for comparison.
    scratch = ppo.train(ppo.PPOConfig(total_steps=ppo_steps, learning_rate=1e-3, **common), progress=False)

    # 1. SFT on the binary-search player's transcripts.
    imitation = sft.train(sft.SFTConfig(total_steps=sft_steps, **common), progress=False)

    # 2. PPO starting from the SFT policy; the KL penalty is to a frozen copy of it.
    tuned = ppo.train(ppo.PPOConfig(total_steps=ppo_steps, learning_rate=3e-4, kl_coef=0.05, **common),
                      policy=imitation.policy, progress=False)

    results = {"PPO from scratch": scratch.eval, "SFT": imitation.eval, "SFT then PPO": tuned.eval}
    print(f"{'policy':<18} {'success':>8} {'mean guesses':>13} {'mean return':>12}")
    for name, ev in results.items():
        print(f"{name:<18} {ev['success_rate']:>8.1%} {ev['mean_guesses']:>13.2f} {ev['mean_return']:>12.3f}")
    print("binary search: 100% success, 5.80 guesses")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sft-steps", type=int, default=400_000)
    parser.add_argument("--ppo-steps", type=int, default=400_000)
    parser.add_argument("--num-envs", type=int, default=256)
    args = parser.parse_args()
    main(args.sft_steps, args.ppo_steps, args.num_envs)
