"""Lesson 9: your own language model as the policy: SFT, then PPO with LoRA.

Any Hugging Face causal LM saved in a directory (a `config.json`, its weights and its tokenizer,
as `save_pretrained` writes them) trains in textgym's envs. `init=DIR` loads it with
`AutoModelForCausalLM` and puts a value head on its last hidden states; the env then tokenizes
with the tokenizer saved in DIR, so the model's ids are the env's actions.

With no `--model`, this lesson builds a small GPT-2 from a config (random weights, textgym's
default size) and a character tokenizer for Reverse-v0, and saves them as a downloaded model
would be. With a model of your own, pass its directory: the env's prompts are then tokenized by
its tokenizer.

    python examples/09_your_own_language_model.py                   # about 3 minutes on a 2-core CPU
    python examples/09_your_own_language_model.py --quick
    python examples/09_your_own_language_model.py --model ~/models/gpt2 --sft-steps 50000

The same from the command line:

    textgym train sft --env textgym/Reverse-v0 --init runs/09/tiny-gpt2 --out runs/09/sft
    textgym train ppo --env textgym/Reverse-v0 --env-kwargs '{"shaping": true}' --init runs/09/sft \\
        --set lora_r=8 --set kl_coef=0.05 --out runs/09/ppo-lora
"""

import argparse
from pathlib import Path

from textgym.agents import ppo, sft
from textgym.tokenizers import CharTokenizer


def tiny_gpt2(directory: Path) -> Path:
    """A random GPT-2 of textgym's default size and Reverse-v0's character tokenizer, saved in ``directory``."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = CharTokenizer("abcdef=").to_transformers()
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=64, n_layer=2, n_head=4,
                        eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id)
    GPT2LMHeadModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def main(model: str | None = None, sft_steps: int = 200_000, ppo_steps: int = 100_000, out: str = "runs/09",
         quick: bool = False) -> dict:
    root = Path(out)
    model_dir = Path(model) if model else tiny_gpt2(root / "tiny-gpt2")
    if quick:
        sft_steps, ppo_steps = 2_000, 1_000
    small = {"num_envs": 32, "eval_episodes": 32} if quick else {}

    # 1. SFT: teacher forcing on the references, every weight of the model trained.
    imitation = sft.train(sft.SFTConfig(env_id="textgym/Reverse-v0", init=str(model_dir), total_steps=sft_steps,
                                        **small), out=root / "sft", progress=not quick)
    print(f"SFT from {model_dir}: {imitation.eval}")

    # 2. PPO with LoRA adapters on the SFT model: only the adapters and the value head train, and
    #    the KL reference is the same model with its adapters switched off (no second copy).
    tuned = ppo.train(ppo.PPOConfig(env_id="textgym/Reverse-v0", env_kwargs={"shaping": True}, init=str(root / "sft"),
                                    lora_r=8, kl_coef=0.05, total_steps=ppo_steps, **small),
                      out=root / "ppo-lora", progress=not quick)
    trainable = sum(p.numel() for p in tuned.policy.parameters() if p.requires_grad)
    total = sum(p.numel() for p in tuned.policy.parameters())
    print(f"PPO with LoRA ({trainable:,} of {total:,} weights trained): {tuned.eval}")
    print(f"{root / 'ppo-lora' / 'hf_model'} loads with AutoModelForCausalLM.from_pretrained (adapters merged)")
    return tuned.eval


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a Hugging Face causal LM's directory (default: build a small GPT-2)")
    parser.add_argument("--sft-steps", type=int, default=200_000)
    parser.add_argument("--ppo-steps", type=int, default=100_000)
    parser.add_argument("--out", default="runs/09")
    parser.add_argument("--quick", action="store_true", help="tiny budgets, to check that it runs")
    args = parser.parse_args()
    main(args.model, args.sft_steps, args.ppo_steps, args.out, args.quick)
