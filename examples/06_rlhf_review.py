"""Lesson 6: RLHF end to end on textgym/Review-v0, checked against the truth at every step.

The task: review the item in the prompt ("tea:" -> "tea is very good and fine"). A hidden rule
plays the human: it prefers more positive words (doubled by "very") and scores any review that
breaks the small template grammar as -1 (`textgym.review.review_score`). Because textgym
knows the rule, it can say how good the reward model and the RL policy really are.

1. SFT on the task's references, which carry no preference: the policy learns to write
   grammatical reviews, good and bad alike.
2. Preferences: pairs of reviews labelled by the rule, 10% of the labels flipped (noisy
   annotators). The reward model (a transformer with a scalar head) learns them with the
   Bradley-Terry loss; we measure its accuracy against the true and the noisy labels.
3. PPO against the reward model, from the SFT policy, with a KL penalty to it.
4. The same PPO run without the KL penalty: what happens when nothing holds the policy near the
   text the reward model was trained on?
5. Evaluation on the same held-out prompts: the true rule (mean_return), the reward model's
   score (learned_reward), the grammatical rate, distinct-n, length, and the KL to the SFT policy.

    python examples/06_rlhf_review.py           # about 8 minutes on a 2-core CPU
    python examples/06_rlhf_review.py --quick   # a smoke run, seconds
"""

import argparse
from pathlib import Path

from textgym.agents import ppo, sft
from textgym.agents.compare import compare_policies, format_comparison
from textgym.envs.token_generation import TokenSetup
from textgym.files import write_jsonl
from textgym.policies import Policy
from textgym.review import preference_pairs
from textgym.rewards import model as rm

ENV = "textgym/Review-v0"


def main(out: str = "runs/rlhf", quick: bool = False, seed: int = 0) -> list[dict]:
    out = Path(out)
    steps = lambda n: 1000 if quick else n  # noqa: E731
    tiny = dict(n_layers=1, d_model=32, n_heads=2) if quick else {}
    batch = dict(num_envs=16, eval_episodes=16) if quick else {}

    # 1. SFT on the neutral references.
    sft_result = sft.train(sft.SFTConfig(env_id=ENV, total_steps=steps(3_000_000), seed=seed, **batch, **tiny),
                           out=out / "sft", progress=False)
    print(f"SFT: true reward {sft_result.eval['mean_return']:+.3f} (greedy), "
          f"grammatical {sft_result.eval['grammatical']:.1%}")

    # 2. Preference pairs from the hidden rule, with label noise; held-out pairs with clean and noisy labels.
    n_pairs = 200 if quick else 20_000
    write_jsonl(out / "prefs.jsonl", preference_pairs(n_pairs, noise=0.1, seed=seed))
    write_jsonl(out / "test_clean.jsonl", preference_pairs(n_pairs // 10, noise=0.0, seed=seed + 1))
    write_jsonl(out / "test_noisy.jsonl", preference_pairs(n_pairs // 10, noise=0.1, seed=seed + 1))

    # 3. The reward model, reading the env's tokens, with a context for anything the env lets a policy write.
    setup = TokenSetup.build(task="review", max_new_tokens=48)
    cfg = rm.RewardModelTrainConfig(epochs=1 if quick else 10, seed=seed, max_len=setup.max_len + 1, **tiny)
    model, tokenizer, _ = rm.train_reward_model(rm.load_reward_data(out / "prefs.jsonl"), cfg, setup.tokenizer)
    rm.save_reward_model(model, tokenizer, out / "rm")
    device = next(model.parameters()).device
    for name in ("test_clean", "test_noisy"):
        enc = rm.encode_rows(rm.load_reward_data(out / f"{name}.jsonl"), tokenizer, model.cfg.max_len, device)
        print(f"reward model accuracy on {name}: {rm.evaluate_reward_model(model, enc, 'preferences')['accuracy']:.1%}")

    # 4. PPO against the (normalised) reward model, from the SFT policy, with and without the KL penalty.
    learned = {"reward": "reward_model", "reward_kwargs": {"path": str(out / "rm"), "normalize": True}}
    for name, kl_coef in (("ppo_kl", 0.05), ("ppo_no_kl", 0.0)):
        ppo.train(ppo.PPOConfig(env_id=ENV, env_kwargs=learned, total_steps=steps(500_000), kl_coef=kl_coef,
                                seed=seed, **batch),
                  policy=Policy.load(out / "sft"), out=out / name, progress=False)

    # 5. Everyone on the same prompts, sampled; the true reward is the env's own (mean_return).
    rows = compare_policies([out / "sft", out / "ppo_kl", out / "ppo_no_kl"], ENV, episodes=100 if quick else 1000,
                            reference=out / "sft", reward_model=out / "rm", sample=True, show=3)
    print(format_comparison(rows, ("mean_return", "learned_reward", "kl_to_reference", "grammatical", "positive_words",
                                   "mean_length", "distinct_2")))  # and what each wrote for the same three prompts
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/rlhf")
    parser.add_argument("--quick", action="store_true", help="tiny budgets, to check that it runs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.out, args.quick, args.seed)
