"""Throughput benchmarks: ``textgym bench`` prints a table of figures and ratios measured in one run.

1. End-to-end PPO (rollout plus updates) on Reverse-v0 with textgym's default transformer, against
   Stable-Baselines3 PPO with textgym's features extractor of the same width and depth, on the
   same env with the same number of envs.
2. Random-action steps of the torch vector env against Gymnasium's ``SyncVectorEnv`` of single envs,
   for Reverse-v0 and for MultiTurn-v0 on Mastermind (a text game whose turns run in Python).
3. Rollout time (median of ``repeats``) for long against short generations with the KV cache
   (linear growth is the ratio of the lengths), next to generation without a cache (a full
   forward pass per token), with the memory of the cache and the process's peak.
4. The command's fixed costs, each a fresh process: ``textgym --help``, and the time a
   ``textgym train ppo`` run spends outside its training loop (imports, the start check, the
   closing evaluation, the learning curve and the exit): its wall time less its loop's.
"""

from __future__ import annotations

import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import textgym  # noqa: F401  (registers the envs)
from textgym.agents import ppo
from textgym.agents.common import resolve_device
from textgym.agents.rollout import SequenceView, collect, make_envs
from textgym.policies import Policy, make_policy
from textgym.tables import text_table


@dataclass(frozen=True)
class BenchConfig:
    """Sizes of the benchmarks (``quick()`` gives a smoke-test version)."""

    num_envs: int = 256
    """Envs of both PPO implementations."""
    ppo_steps: int = 300_000
    """Env steps of textgym PPO."""
    sb3_steps: int = 16_384
    """Env steps of SB3 PPO."""
    vec_envs: int = 1024
    """Envs of the vector env comparison."""
    vec_steps: int = 200
    """Steps of the torch vector env."""
    sync_steps: int = 20
    """Steps of SyncVectorEnv."""
    turn_steps: int = 100
    """Token steps of MultiTurn-v0 on Mastermind (vector env and SyncVectorEnv alike)."""
    short: int = 32
    """Tokens generated in the short rollout."""
    long: int = 256
    """Tokens generated in the long rollout."""
    gen_batch: int = 64
    """Batch of the generation rollouts."""
    repeats: int = 5
    """Rollouts timed per length (the median is reported)."""
    device: str = "auto"

    @classmethod
    def quick(cls) -> BenchConfig:
        return cls(num_envs=16, ppo_steps=500, sb3_steps=256, vec_envs=32, vec_steps=5, sync_steps=2,
                   turn_steps=10, short=4, long=16, gen_batch=4, repeats=1)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU), so that a timer measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def error_text(e: BaseException, limit: int = 300) -> str:
    """An exception as one short line for a benchmark's row: its type and its message's first line."""
    return f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:limit]}"


def vector_env_sps(env_id: str, num_envs: int, steps: int, device: torch.device) -> float:
    """Random-action steps per second of ``env_id``'s torch vector env of ``num_envs`` on ``device``
    (after one untimed step, which pays for first-call set-up on a GPU)."""
    vec = gym.make_vec(env_id, num_envs=num_envs, device=device)
    vec.reset(seed=0)
    g = torch.Generator(device=device).manual_seed(0)
    actions = torch.randint(0, vec.single_action_space.n, (steps + 1, num_envs), device=device, generator=g)
    vec.step(actions[0])
    sync(device)

    def run():
        for t in range(1, steps + 1):
            vec.step(actions[t])
        sync(device)

    return steps * num_envs / _timed(run)


def bench_ppo(cfg: BenchConfig, device: torch.device) -> dict[str, float]:
    """Env steps per second of textgym PPO and of SB3 PPO on Reverse-v0."""
    from stable_baselines3 import PPO

    from textgym.envs.sb3 import (  # optional: needs stable-baselines3
        SB3VecEnv,
        TokenTransformerExtractor,
    )

    ours = ppo.PPOConfig(env_id="textgym/Reverse-v0", num_envs=cfg.num_envs, total_steps=cfg.ppo_steps,
                         device=str(device), eval_episodes=1)
    result = ppo.train(ours, progress=False)
    ours_sps = result.history[-1]["env_steps"] / result.history[-1]["time"]

    venv = SB3VecEnv("textgym/Reverse-v0", num_envs=cfg.num_envs)
    n_steps = max(2, cfg.sb3_steps // cfg.num_envs // 2)
    model = PPO("MultiInputPolicy", venv, n_steps=n_steps, batch_size=n_steps * cfg.num_envs // 4, n_epochs=4,
                device=device, seed=0, policy_kwargs=dict(
                    features_extractor_class=TokenTransformerExtractor,
                    features_extractor_kwargs=dict(d_model=ours.d_model, n_layers=ours.n_layers, n_heads=ours.n_heads)))
    seconds = _timed(lambda: model.learn(total_timesteps=cfg.sb3_steps))
    return {"textgym_ppo_sps": ours_sps, "sb3_ppo_sps": model.num_timesteps / seconds}


def bench_vector_env(cfg: BenchConfig, device: torch.device, env_id: str = "textgym/Reverse-v0") -> dict[str, float]:
    """Random-action steps per second: torch vector env against SyncVectorEnv of single envs."""
    torch_sps = vector_env_sps(env_id, cfg.vec_envs, cfg.vec_steps, device)
    sync_env = gym.vector.SyncVectorEnv([lambda: gym.make(env_id) for _ in range(cfg.vec_envs)])
    sync_env.reset(seed=0)
    n = sync_env.single_action_space.n
    np_actions = np.random.default_rng(0).integers(0, n, (cfg.sync_steps, cfg.vec_envs))
    sync_sps = cfg.sync_steps * cfg.vec_envs / _timed(lambda: [sync_env.step(np_actions[t]) for t in range(cfg.sync_steps)])
    return {"torch_vec_sps": torch_sps, "sync_vec_sps": sync_sps}


def bench_multi_turn(cfg: BenchConfig, device: torch.device) -> dict[str, float]:
    """Random token steps per second of MultiTurn-v0 on Mastermind: the vector env against
    SyncVectorEnv of the single token env, both over the same text game."""
    env_id, n = "textgym/Mastermind-v0", cfg.vec_envs
    vec = gym.make_vec(env_id, num_envs=n, device=device)
    vec.reset(seed=0)
    g = torch.Generator(device=device).manual_seed(0)
    actions = torch.randint(0, vec.single_action_space.n, (cfg.turn_steps, n), device=device, generator=g)

    def run_torch():
        for t in range(cfg.turn_steps):
            vec.step(actions[t])
        sync(device)

    torch_sps = cfg.turn_steps * n / _timed(run_torch)
    sync_env = gym.vector.SyncVectorEnv([lambda: gym.make(env_id) for _ in range(n)])
    sync_env.reset(seed=0)
    np_actions = actions.cpu().numpy()
    sync_sps = cfg.turn_steps * n / _timed(lambda: [sync_env.step(np_actions[t]) for t in range(cfg.turn_steps)])
    return {"turns_vec_sps": torch_sps, "turns_sync_sps": sync_sps}


def _no_cache_generation(policy: Policy, prompt: torch.Tensor, tokens: int) -> None:
    """Generation without a cache: a full forward pass over the whole prefix for every token."""
    seq = prompt
    for _ in range(tokens):
        logits, _ = policy(seq)
        seq = torch.cat([seq, logits[:, -1].argmax(-1, keepdim=True)], dim=1)


def gpt2_for(view: SequenceView, eos: int, pad: int, n_layer: int = 2, n_embd: int = 64, n_head: int = 4,
             positions: int | None = None):
    """A random GPT-2 sized like textgym's policy, for the env of ``view``, without dropout."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=view.vocab_size, n_positions=positions or view.max_len, n_embd=n_embd, n_layer=n_layer,
                     n_head=n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, eos_token_id=eos,
                     bos_token_id=eos, pad_token_id=pad)
    return GPT2LMHeadModel(cfg)


def _hf_generate_seconds(policy: Policy, view: SequenceView, cfg: BenchConfig, device: torch.device, tokens: int) -> float:
    """Seconds (median of ``repeats``) of ``model.generate`` with its KV cache, for a GPT-2 of the
    policy's width, depth and heads (random weights), at the same batch and lengths: how a
    transformer's cached generation scales outside textgym."""
    p, tok = policy.cfg, view.envs.tokenizer
    lm = gpt2_for(view, tok.eos_id, tok.pad_id, p.n_layers, p.d_model, p.n_heads, positions=tokens + 8).to(device).eval()
    lm.generation_config.eos_token_id = None  # no eos: every sequence writes all `tokens`
    prompt = torch.full((cfg.gen_batch, 4), 2, device=device)

    def generate():
        with torch.no_grad():
            lm.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=tokens)
        sync(device)

    generate()  # warm-up
    return float(np.median([_timed(generate) for _ in range(cfg.repeats)]))


def _generation(cfg: BenchConfig, device: torch.device, tokens: int) -> dict[str, float]:
    """Rollout seconds for ``tokens`` generated tokens (eos forbidden), and without a cache."""
    task = [("abc=", ["a" * tokens])]
    envs = make_envs("textgym/TokenGeneration-v0", cfg.gen_batch, device, task=task, reward="token_accuracy",
                     max_new_tokens=tokens)
    view = SequenceView(envs)
    policy = make_policy(**view.policy_spec()).to(device).eval()
    eos = torch.tensor([envs.tokenizer.eos_id], device=device)

    def no_eos(logits):
        return logits.index_fill(1, eos, float("-inf"))

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    collect(envs, view, policy, seed=0, logits_fn=no_eos)  # warm-up
    times = []
    for _ in range(cfg.repeats):
        start = time.perf_counter()
        rollout = collect(envs, view, policy, seed=0, logits_fn=no_eos)
        sync(device)
        times.append(time.perf_counter() - start)
    out = {"seconds": float(np.median(times))}
    assert int(rollout.lengths.min()) == tokens  # every episode really wrote `tokens` tokens
    prompt = torch.full((cfg.gen_batch, 4), 2, device=device)
    with torch.no_grad():
        start = time.perf_counter()
        _no_cache_generation(policy, prompt, tokens)
        sync(device)
    out["no_cache_seconds"] = time.perf_counter() - start
    out["hf_generate_seconds"] = _hf_generate_seconds(policy, view, cfg, device, tokens)
    out["kv_cache_mib"] = 2 * policy.cfg.n_layers * cfg.gen_batch * (policy.cfg.max_len + 1) * policy.cfg.d_model * 4 / 2**20
    if device.type == "cuda":
        out["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def bench_generation(cfg: BenchConfig, device: torch.device) -> dict[str, float]:
    """Rollouts of ``short`` and ``long`` generated tokens, with the KV cache and without."""
    out = {f"{name}_{k}": v for name, tokens in (("short", cfg.short), ("long", cfg.long))
           for k, v in _generation(cfg, device, tokens).items()}
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def bench_cli(cfg: BenchConfig) -> dict[str, float]:
    """Seconds of ``textgym --help``, and a PPO run's seconds outside its loop: the wall time of
    ``textgym train ppo`` for one iteration less the loop time its last metrics line records."""
    command = [sys.executable, "-m", "textgym"]
    help_seconds = _timed(lambda: subprocess.run([*command, "--help"], check=True, capture_output=True))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        train = [*command, "train", "ppo", "--env", "textgym/Reverse-v0", "--total-steps", "1",
                 "--num-envs", str(cfg.num_envs), "--device", cfg.device, "--out", str(out), "--quiet"]
        wall = _timed(lambda: subprocess.run(train, check=True, capture_output=True))
        loop = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["time"]
    return {"cli_help_seconds": help_seconds, "cli_train_seconds": wall, "cli_outside_loop_seconds": wall - loop}


def run(cfg: BenchConfig) -> dict[str, float]:
    """Run the four benchmarks; returns every figure and ratio."""
    device = resolve_device(cfg.device)
    torch.manual_seed(0)
    cli = bench_cli(cfg)  # first: fresh processes on a machine this one has not yet filled
    results = {**bench_ppo(cfg, device), **bench_vector_env(cfg, device), **bench_multi_turn(cfg, device),
               **bench_generation(cfg, device), **cli}
    results["ppo_ratio"] = results["textgym_ppo_sps"] / results["sb3_ppo_sps"]
    results["vec_ratio"] = results["torch_vec_sps"] / results["sync_vec_sps"]
    results["turns_ratio"] = results["turns_vec_sps"] / results["turns_sync_sps"]
    results["long_over_short"] = results["long_seconds"] / results["short_seconds"]
    results["no_cache_long_over_short"] = results["long_no_cache_seconds"] / results["short_no_cache_seconds"]
    results["hf_generate_long_over_short"] = results["long_hf_generate_seconds"] / results["short_hf_generate_seconds"]
    return results


def report(cfg: BenchConfig, r: dict[str, float]) -> str:
    """The results as a table, with the targets."""
    device = resolve_device(cfg.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    rows = [
        ("PPO env steps/s, Reverse-v0", f"{r['textgym_ppo_sps']:,.0f}", f"SB3 PPO: {r['sb3_ppo_sps']:,.0f}", f"{r['ppo_ratio']:.1f}x", ">= 10x"),
        (f"vector env steps/s, {cfg.vec_envs} envs", f"{r['torch_vec_sps']:,.0f}", f"SyncVectorEnv: {r['sync_vec_sps']:,.0f}", f"{r['vec_ratio']:.1f}x", ">= 50x"),
        (f"Mastermind-v0 token steps/s, {cfg.vec_envs} envs", f"{r['turns_vec_sps']:,.0f}",
         f"SyncVectorEnv: {r['turns_sync_sps']:,.0f}", f"{r['turns_ratio']:.1f}x", "report"),
        (f"rollout s, {cfg.long} vs {cfg.short} tokens (KV cache)", f"{r['long_seconds']:.3f}", f"{cfg.short} tokens: {r['short_seconds']:.3f}",
         f"{r['long_over_short']:.1f}x", f"<= 9x (linear {cfg.long / cfg.short:.0f}x)"),
        (f"HF generate s, same-size GPT-2, {cfg.long} vs {cfg.short} tokens (KV cache)", f"{r['long_hf_generate_seconds']:.3f}",
         f"{cfg.short} tokens: {r['short_hf_generate_seconds']:.3f}", f"{r['hf_generate_long_over_short']:.1f}x", "for contrast"),
        (f"generation s, {cfg.long} vs {cfg.short} tokens (no cache)", f"{r['long_no_cache_seconds']:.3f}",
         f"{cfg.short} tokens: {r['short_no_cache_seconds']:.3f}", f"{r['no_cache_long_over_short']:.1f}x", "for contrast"),
        ("textgym --help, s", f"{r['cli_help_seconds']:.2f}", "", "", "<= 1 s"),
        ("textgym train ppo: s outside the training loop", f"{r['cli_outside_loop_seconds']:.2f}",
         f"whole run, 1 iteration: {r['cli_train_seconds']:.2f}", "", "<= 2 s"),
    ]
    table = text_table(("measurement", "textgym", "baseline", "ratio", "target"), rows)
    mem = f"KV cache {r['long_kv_cache_mib']:.2f} MiB for {cfg.long} tokens x {cfg.gen_batch} episodes; peak RSS {r['peak_rss_mib']:.0f} MiB"
    if "long_peak_cuda_mib" in r:
        mem += f"; peak CUDA memory {r['long_peak_cuda_mib']:.0f} MiB"
    return "\n".join([f"device: {name}", table, mem])
