"""textgym on one device, in one script: the vector env, the rollout against ``generate``, a PPO
iteration's split, bf16 and ``torch.compile``, and two-process NCCL when there are two GPUs.

    python benchmarks/gpu.py                     # on the GPU when there is one (under 5 minutes), else the CPU sizes
    python benchmarks/gpu.py --device cpu        # the CPU sizes, each figure's counterpart to a GPU run
    python benchmarks/gpu.py --quick             # tiny sizes, to check that it runs (CI runs this)
    python benchmarks/gpu.py --json results.jsonl
    python benchmarks/gpu.py --only rollout      # one section (vector_env, rollout, ppo or nccl); repeatable
    python benchmarks/gpu.py --only ppo --ppo-envs 8192 --ppo-steps 2000000   # PPO at another size

Each line it prints is one measurement as JSON (``--json FILE`` appends them to FILE too):

1. ``vector_env``: random-action steps/s of Reverse-v0's torch vector env at 1k, 16k, 64k and 256k
   envs (CPU: 1k and 4k).
2. ``rollout``: tokens/s of textgym's rollout (with the env, KV cache, sampling) for the default
   policy, for textgym's ``Policy`` of GPT-2 small's size (12 layers, width 768; on a GPU also with
   its cached step ``torch.compile``'d, ``default`` and ``reduce-overhead``) and for a GPT-2 small
   as ``HFPolicy``, and of ``model.generate`` for the same GPT-2 on the same prompts, batch and
   length (eos forbidden, so every sequence writes every token). GPU batches 256 and 1,024, CPU 32
   (and a 4-layer, 256-wide GPT-2).
3. ``ppo``: a PPO run's env steps/s on Reverse-v0 and the share of its time in the rollouts, with
   bf16 autocast and ``torch.compile`` each off and on (compile on the CPU needs a C++ compiler;
   a failure is reported, not raised).
4. ``nccl``: on a machine with two or more GPUs, ``torchrun --nproc-per-node 2`` of the same PPO run
   against one process; skipped otherwise.

A section that fails prints its error as a row and the script goes on to the next.
Run it alone: on a shared CPU torch's threads slow down badly beside another busy process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from hf_policy import throughput  # this folder's: python benchmarks/gpu.py puts it on the path

import textgym  # noqa: F401  (registers the envs)
from textgym.agents import ppo
from textgym.agents.common import resolve_device
from textgym.bench import error_text, sync, vector_env_sps

SECTIONS = ("vector_env", "rollout", "ppo", "nccl")
SIZES = {  # per device kind: vector env sizes, rollout batches, GPT-2 layers/width/heads, tokens, PPO steps and
    # envs, and the modes the GPT-2-sized Policy's step is compiled in
    "cuda": {"vec": (1024, 16384, 65536, 262144), "batch": (256, 1024), "gpt2": (12, 768, 12), "tokens": 32, "ppo_steps": 400_000,
             "ppo_envs": 1024, "compile": ("default", "reduce-overhead")},
    "cpu": {"vec": (1024, 4096), "batch": (32,), "gpt2": (4, 256, 4), "tokens": 16, "ppo_steps": 60_000, "ppo_envs": 256,
            "compile": ()},
    "quick": {"vec": (64,), "batch": (4,), "gpt2": (1, 32, 2), "tokens": 4, "ppo_steps": 600, "ppo_envs": 16,
              "compile": ()},
}


def vector_env(device: torch.device, sizes: tuple[int, ...], steps: int) -> list[dict]:
    return [{"benchmark": "vector_env", "env": "textgym/Reverse-v0", "num_envs": n,
             "steps_per_s": round(vector_env_sps("textgym/Reverse-v0", n, steps, device))} for n in sizes]


def rollout(device: torch.device, batch: int, tokens: int, gpt2: tuple[int, int, int], repeats: int,
            compile_modes: tuple[str, ...] = ()) -> list[dict]:
    """Tokens/s of the rollout (default policy; textgym's Policy and an HF GPT-2 of GPT-2's size) and
    of ``generate`` (the GPT-2), eos forbidden: ``benchmarks/hf_policy.py``'s measurement at this
    device's sizes; ``compile_modes`` add the Policy with its step compiled in each mode."""
    shape = "x".join(map(str, gpt2))
    return [{"benchmark": "rollout", "batch": batch, "gpt2": shape, **row}
            for row in throughput(False, device, batch, tokens, gpt2, repeats, compile_modes)]


def ppo_split(device: torch.device, steps: int, num_envs: int, bf16: bool, compile: bool) -> dict:
    """A PPO run's env steps/s and the share of its time in the rollouts (``collect_batch`` timed in place)."""
    spent = [0.0]
    real = ppo.collect_batch

    def timed_collect(*args, **kwargs):
        sync(device)
        start = time.perf_counter()
        out = real(*args, **kwargs)
        sync(device)
        spent[0] += time.perf_counter() - start
        return out

    cfg = ppo.PPOConfig(env_id="textgym/Reverse-v0", num_envs=num_envs, total_steps=steps, device=str(device),
                        eval_episodes=1, bf16=bf16, compile=compile)
    row = {"benchmark": "ppo", "env": cfg.env_id, "num_envs": num_envs, "bf16": bf16, "compile": compile}
    ppo.collect_batch = timed_collect
    try:
        history = ppo.train(cfg, progress=False).history
    except Exception as e:  # e.g. compile on a CPU without a C++ compiler
        return {**row, "error": error_text(e, 200)}
    finally:
        ppo.collect_batch = real
    last = history[-1]
    return {**row, "env_steps": last["env_steps"], "steps_per_s": round(last["env_steps"] / last["time"]),
            "rollout_share": round(spent[0] / last["time"], 3)}


def nccl(steps: int, num_envs: int) -> dict:
    """Two processes (torchrun, NCCL) against one, the same PPO run per process."""
    if torch.cuda.device_count() < 2:
        return {"benchmark": "nccl", "skipped": f"{torch.cuda.device_count()} GPU(s): two are needed"}
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for procs in (1, 2):
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(procs), "-m", "textgym",
                   "train", "ppo", "--env", "textgym/Reverse-v0", "--num-envs", str(num_envs), "--total-steps",
                   str(steps * procs), "--device", "cuda", "--out", str(Path(tmp) / f"p{procs}"), "--quiet"]
            start = time.perf_counter()
            subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
            rows[procs] = steps * procs / (time.perf_counter() - start)
    return {"benchmark": "nccl", "steps_per_s_1_process": round(rows[1]), "steps_per_s_2_processes": round(rows[2]),
            "speedup": round(rows[2] / rows[1], 2)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="cuda, cpu or auto (the GPU when there is one)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, to check that it runs")
    p.add_argument("--json", help="append every measurement to this JSONL file")
    p.add_argument("--only", action="append", choices=SECTIONS, help="run this section only (repeatable)")
    p.add_argument("--ppo-envs", type=int, help="the PPO runs' number of envs (default: the device's size)")
    p.add_argument("--ppo-steps", type=int, help="the PPO runs' env steps (default: the device's size)")
    args = p.parse_args(argv)
    run = set(args.only or SECTIONS)
    device = resolve_device(args.device)
    size = dict(SIZES["quick" if args.quick else "cuda" if device.type == "cuda" else "cpu"])
    size["ppo_envs"], size["ppo_steps"] = args.ppo_envs or size["ppo_envs"], args.ppo_steps or size["ppo_steps"]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"

    def emit(*rows: dict) -> None:  # as soon as measured: a run cut short keeps what it has
        for row in rows:
            print(json.dumps(row), flush=True)
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps(row) + "\n")

    def guarded(benchmark: str, measure, **row) -> None:  # one failing section costs only its own rows
        try:
            emit(*measure())
        except Exception as e:
            emit({"benchmark": benchmark, **row, "error": error_text(e)})

    emit({"benchmark": "device", "device": name, "torch": torch.__version__, "quick": args.quick})
    if "vector_env" in run:
        guarded("vector_env", lambda: vector_env(device, size["vec"], 5 if args.quick else 100))
    for batch in size["batch"] if "rollout" in run else ():
        guarded("rollout", lambda b=batch: rollout(device, b, size["tokens"], size["gpt2"], 1 if args.quick else 3,
                                                    size["compile"]), batch=batch)
    for bf16, compile in ((False, False), (True, False), (False, True)) if "ppo" in run else ():
        if compile and args.quick:
            emit({"benchmark": "ppo", "compile": True, "skipped": "--quick (compiling takes minutes)"})
            continue
        emit(ppo_split(device, size["ppo_steps"], size["ppo_envs"], bf16, compile))
    if device.type == "cuda" and "nccl" in run:
        guarded("nccl", lambda: [nccl(size["ppo_steps"], size["ppo_envs"])])


if __name__ == "__main__":
    main()
