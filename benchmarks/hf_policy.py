"""Hugging Face causal LMs as textgym policies: learning, rollout speed and LoRA's memory.

    python benchmarks/hf_policy.py learning      # PPO on Reverse-v0, seeds 0-2: textgym's Policy and a GPT-2 of its size (~15 min)
    python benchmarks/hf_policy.py throughput    # rollout tokens/s: Policy, the HF adapter, and generate() alone
    python benchmarks/hf_policy.py memory        # peak memory of PPO: LoRA against full fine-tuning with a reference
    python benchmarks/hf_policy.py all --quick   # tiny versions of the three, to check that it runs

Every model is built here from a config with random weights (nothing is downloaded). The GPT-2
has textgym's default size: 2 layers, 4 heads, width 64, learned positions, tied embeddings.
Run it alone on the machine: torch's threads slow down badly beside another busy process.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from textgym.agents import evaluate_policy, ppo
from textgym.agents.common import seed_everything
from textgym.agents.rollout import SequenceView, collect, make_envs
from textgym.bench import error_text, gpt2_for, sync
from textgym.policies import HFPolicy, make_policy
from textgym.recipes import find_recipe


def learning(quick: bool, seeds: list[int]) -> list[dict]:
    """PPO's Reverse-v0 recipe with textgym's Policy and with the GPT-2 of the same size, same
    budget and seeds; each policy is built right after the seed, as a trainer builds its own."""
    r = find_recipe("textgym/Reverse-v0", "ppo", required=True)
    rows = []
    for seed in seeds:
        cfg = ppo.PPOConfig(env_id="textgym/Reverse-v0", env_kwargs=r.env_kwargs, device="cpu", seed=seed, **r.config)
        if quick:
            cfg = ppo.PPOConfig(**{**cfg.__dict__, "total_steps": 2_000, "num_envs": 32, "eval_episodes": 32})
        envs = make_envs(cfg.env_id, 1, torch.device("cpu"), **cfg.env_kwargs)
        view, tok = SequenceView(envs), envs.tokenizer
        for name in ("textgym Policy", "HF GPT-2 (HFPolicy)"):
            seed_everything(cfg.seed)
            policy = make_policy(**view.policy_spec()) if name.startswith("textgym") else \
                HFPolicy(gpt2_for(view, tok.eos_id, tok.pad_id))
            params = sum(p.numel() for p in policy.parameters())
            start = time.time()
            result = ppo.train(cfg, policy=policy, progress=False)
            seconds = time.time() - start
            ev = evaluate_policy(result.policy, cfg.env_id, cfg.env_kwargs, 256 if quick else 1024, "cpu", seed=2024)
            rows.append({"policy": name, "seed": seed, "parameters": params, "env_steps": cfg.total_steps,
                         "train_seconds": round(seconds, 1), "token_accuracy": round(ev["mean_return"], 4),
                         "exact_match": round(ev["exact_match"], 4)})
    return rows


def throughput(quick: bool, device: str | torch.device = "cpu", batch: int | None = None, length: int | None = None,
               gpt2: tuple[int, int, int] = (2, 64, 4), repeats: int | None = None,
               compile_modes: tuple[str, ...] = ()) -> list[dict]:
    """Tokens per second: sampling ``length`` tokens for ``batch`` prompts (eos forbidden, so every
    sequence writes them all), by textgym's rollout with each policy and by ``generate`` alone, on
    ``device``; ``gpt2`` is the GPT-2's (layers, width, heads), textgym's default policy size unless given.
    Each of ``compile_modes`` adds a row of the GPT-2-sized Policy whose cached step is
    ``torch.compile``'d in that mode (e.g. ``"default"``, ``"reduce-overhead"``: CUDA graphs)."""
    device = torch.device(device)
    batch, length = batch or (32 if quick else 256), length or (8 if quick else 16)
    kwargs = {"task_kwargs": {"min_length": length - 1, "max_length": length - 1}}  # + eos: `length` tokens
    envs = make_envs("textgym/Reverse-v0", batch, device, **kwargs)
    view, tok = SequenceView(envs), envs.tokenizer
    eos = torch.tensor([tok.eos_id], device=device)
    no_eos = lambda logits: logits.index_fill(1, eos, float("-inf"))  # noqa: E731
    torch.manual_seed(0)
    native = make_policy(**view.policy_spec()).to(device).eval()
    lm = gpt2_for(view, tok.eos_id, tok.pad_id, *gpt2).to(device).eval()
    hf = HFPolicy(lm).eval()
    policies = [("textgym Policy, rollout with env", native), ("HF GPT-2, rollout with env", hf)]
    shape = dict(n_layers=gpt2[0], d_model=gpt2[1], n_heads=gpt2[2])
    if any(getattr(native.cfg, k) != v for k, v in shape.items()):  # the same arithmetic as the GPT-2, in textgym's Policy
        sized = make_policy(**view.policy_spec(), **shape).to(device).eval()
        policies.insert(1, ("textgym Policy of the GPT-2's size, rollout with env", sized))
    else:
        sized = native
    steps = {name: None for name, _ in policies}
    for mode in compile_modes:
        name = f"textgym Policy of the GPT-2's size, step compiled ({mode}), rollout with env"
        policies.insert(-1, (name, sized))
        steps[name] = torch.compile(sized.step, dynamic=True, mode=mode)
    repeats = repeats or (2 if quick else 5)
    rows = []

    def timed(fn) -> float:
        fn()  # warm-up
        sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        sync(device)
        return (time.perf_counter() - start) / repeats

    for name, policy in policies:
        go = lambda p=policy, s=steps[name]: collect(envs, view, p, seed=0, logits_fn=no_eos, step=s)  # noqa: E731
        try:
            tokens = int(go().mask.sum())
            seconds = timed(go)
        except Exception as e:  # a compiled step that fails here (no C++ compiler, say) is a row, not the end
            if steps[name] is None:
                raise
            rows.append({"what": name, "error": error_text(e)})
            continue
        rows.append({"what": name, "tokens": tokens, "seconds": round(seconds, 4), "tokens_per_s": round(tokens / seconds)})
    obs, _ = envs.reset(seed=0)
    prompt = obs["input_ids"][:, : int(obs["attention_mask"].sum(1).max())]  # equal-length prompts: no padding

    def generate() -> torch.Tensor:
        with torch.no_grad():
            return lm.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=True, max_new_tokens=length,
                               min_new_tokens=length, pad_token_id=tok.pad_id, suppress_tokens=[tok.eos_id])

    tokens = int((generate().shape[1] - prompt.shape[1]) * batch)
    seconds = timed(generate)
    rows.append({"what": "HF GPT-2, model.generate alone (no env)", "tokens": tokens, "seconds": round(seconds, 4),
                 "tokens_per_s": round(tokens / seconds)})
    base = rows[-1]["tokens_per_s"]
    for row in rows:
        if "tokens_per_s" in row:
            row["vs_generate"] = round(row["tokens_per_s"] / base, 2)
    return rows


def memory_run(mode: str, quick: bool) -> dict:
    """One PPO run in this process (LoRA, or full fine-tuning with a reference copy); its peak memory."""
    n_layer, n_embd = (2, 128) if quick else (8, 512)
    envs = make_envs("textgym/Reverse-v0", 1, torch.device("cpu"))
    view, tok = SequenceView(envs), envs.tokenizer
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    torch.manual_seed(0)
    lm = gpt2_for(view, tok.eos_id, tok.pad_id, n_layer=n_layer, n_embd=n_embd, n_head=8)
    policy = HFPolicy(lm, lora_r=8) if mode == "lora" else HFPolicy(lm)
    trainable = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    total = sum(p.numel() for p in policy.parameters())
    cfg = ppo.PPOConfig(env_id="textgym/Reverse-v0", num_envs=64, total_steps=600 if not quick else 200,
                        eval_episodes=16, device="cpu", kl_coef=0.05)
    start = time.time()
    ppo.train(cfg, policy=policy, progress=False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"mode": mode, "parameters": total, "trainable": trainable, "peak_rss_mib": round(peak),
            "peak_minus_start_mib": round(peak - baseline), "seconds": round(time.time() - start, 1)}


def memory(quick: bool) -> list[dict]:
    """Each mode in a fresh process, so one's peak does not hide the other's."""
    rows = []
    for mode in ("full", "lora"):
        cmd = [sys.executable, __file__, "_memory", "--mode", mode] + (["--quick"] if quick else [])
        rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["learning", "throughput", "memory", "all", "_memory"])
    parser.add_argument("--quick", action="store_true", help="tiny budgets, to check that it runs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the learning runs")
    parser.add_argument("--mode", choices=["full", "lora"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.what == "_memory":
        print(json.dumps(memory_run(args.mode, args.quick)))
        return
    runs = {"learning": lambda quick: learning(quick, args.seeds[:1] if quick else args.seeds),
            "throughput": throughput, "memory": memory}
    for name, fn in runs.items():
        if args.what in (name, "all"):
            for row in fn(args.quick):
                print(json.dumps({"benchmark": name, **row}), flush=True)


if __name__ == "__main__":
    main()
