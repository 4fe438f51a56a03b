"""Beyond one process: the CPU thread policy beside busy neighbours, and PPO on 1 and 2 torchrun ranks.

    python benchmarks/scaling.py threads      # PPO steps/s alone and beside 1 and 2 busy processes (~4 min)
    python benchmarks/scaling.py ddp          # PPO on 1 process (2 threads) and on 1 and 2 ranks (1 thread each) (~10 min)
    python benchmarks/scaling.py efficiency   # FLOP/s of PPO's update passes against a dense matmul (~1 min)
    python benchmarks/scaling.py profile      # where a PPO and an SFT iteration spend their time: torch.profiler (~1 min)
    python benchmarks/scaling.py compile      # PPO's Reverse-v0 recipe, eager and with --set compile=true (~5 min)
    python benchmarks/scaling.py all --quick  # tiny versions, to check that it runs

Each run is a fresh ``python -m textgym train ppo`` on Reverse-v0 with shaping; steps/s is read
from its ``metrics.jsonl`` (env steps over time, from the end of the first iteration, so start-up
and the final evaluation are left out). The busy neighbours are ``python -c "while True: pass"``.
Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]


def ppo_command(out: Path, steps: int, *more: str) -> list[str]:
    return ["-m", "textgym", "train", "ppo", "--env", "textgym/Reverse-v0", "--total-steps", str(steps),
            "--out", str(out), "--quiet", "--json", "--device", "cpu", "--force", *more]


def measure(cmd: list[str], out: Path) -> dict:
    """Run ``cmd``; steps/s after its first iteration, and its final greedy evaluation."""
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    first, last = rows[0], rows[-1]
    final = json.loads(done.stdout.strip().splitlines()[-1])
    threads = json.loads((out / "config.json").read_text()).get("threads")
    return {"steps_per_s": round((last["env_steps"] - first["env_steps"]) / (last["time"] - first["time"])),
            "threads": threads, "token_accuracy": round(final["mean_return"], 4), "exact_match": round(final["exact_match"], 4)}


def with_neighbours(n: int, fn):
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        time.sleep(0.5 if n else 0)
        return fn()
    finally:
        for p in spinners:
            p.kill()


def threads(quick: bool) -> list[dict]:
    """The old default (torch's: one thread per core of the machine) against textgym's policy."""
    import os

    steps = 3_000 if quick else 40_000
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        for neighbours in (0, 1) if quick else (0, 1, 2):
            for name, more in (("torch default", ["--threads", str(os.cpu_count())]), ("textgym policy", [])):
                row = with_neighbours(neighbours, lambda m=more: measure([sys.executable, *ppo_command(out, steps, *m)], out))
                rows.append({"neighbours": neighbours, "policy": name, **row})
    return rows


def ddp(quick: bool) -> list[dict]:
    """The same PPO run (budget, global batch of 256 envs, seed) on 1 process and on 1 and 2 ranks."""
    steps = 5_000 if quick else 600_000
    shaping = ["--env-kwargs", '{"shaping": true}']
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        runs = (("1 process, 2 threads", [sys.executable, *ppo_command(out, steps, *shaping, "--threads", "2")]),
                ("torchrun, 1 rank, 1 thread", [*TORCHRUN, "--nproc-per-node=1", *ppo_command(out, steps, *shaping, "--threads", "1")]),
                ("torchrun, 2 ranks, 1 thread each", [*TORCHRUN, "--nproc-per-node=2", *ppo_command(out, steps, *shaping, "--threads", "1")]))
        for name, cmd in runs:
            rows.append({"run": name, "env_steps": steps, **measure(cmd, out)})
    return rows


def ppo_compile(quick: bool) -> list[dict]:
    """PPO's Reverse-v0 recipe, eager and with ``--set compile=true``, in fresh processes."""
    steps = 5_000 if quick else 600_000
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        for name, more in (("eager", []), ("compile=true", ["--set", "compile=true"])):
            cmd = [sys.executable, *ppo_command(out, steps, "--env-kwargs", '{"shaping": true}', "--threads", "2", *more)]
            rows.append({"run": name, "env_steps": steps, **measure(cmd, out)})
    return rows


def _own_shapes(policy, tokens: int, reps: int, matmul: float) -> dict:
    """FLOP/s of the update's own matrix products alone: every linear layer of ``policy`` as a
    forward matmul of ``tokens`` rows (what a ``tokens x d_model`` batch can reach at this width)."""
    import torch

    shapes = [(m.in_features, m.out_features) for m in policy.modules() if isinstance(m, torch.nn.Linear)]
    inputs = {k: torch.randn(tokens, k) for k, _ in shapes}
    weights = [torch.randn(k, n) for k, n in shapes]

    def products() -> None:
        for (k, _), w in zip(shapes, weights):
            inputs[k] @ w

    products()
    start = time.perf_counter()
    for _ in range(reps * 10):
        products()
    seconds = (time.perf_counter() - start) / (reps * 10)
    flops = sum(2 * tokens * k * n for k, n in shapes) / seconds
    return {"what": f"the policy's linear layers alone, {tokens} tokens", "ms": round(seconds * 1e3, 3),
            "gflop_per_s": round(flops / 1e9, 1), "of_matmul": round(flops / matmul, 3)}


def efficiency(quick: bool) -> list[dict]:
    """FLOP/s of PPO's update passes (forward and backward of a minibatch of whole episodes, counted
    by ``torch.utils.flop_counter``) against a dense 1024 x 1024 matmul, in the same process."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from textgym.agents.losses import masked_mean
    from textgym.agents.rollout import SequenceView, collect, evaluate_logprobs, make_envs
    from textgym.policies import make_policy

    torch.manual_seed(0)
    reps = 3 if quick else 20
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    matmul = 2 * 1024**3 * reps / (time.perf_counter() - start)
    rows = [{"what": "dense matmul 1024x1024", "gflop_per_s": round(matmul / 1e9, 1), "of_matmul": 1.0}]
    for episodes, compiled in ((64, False), (256, False), (64, True)):
        envs = make_envs("textgym/Reverse-v0", episodes, torch.device("cpu"), shaping=True)
        view = SequenceView(envs)
        policy = make_policy(**view.policy_spec())
        rollout = collect(envs, view, policy.eval(), seed=0, generator=torch.Generator().manual_seed(0))
        if episodes == 64 and not compiled:
            rows.append(_own_shapes(policy, rollout.trimmed().inputs.shape[:2].numel(), reps, matmul))  # the tokens an update scores
        policy.train()
        model = torch.compile(policy) if compiled else policy

        def update(model=model, rollout=rollout) -> None:
            logprobs, entropy, values = evaluate_logprobs(model, rollout)
            loss = -masked_mean(logprobs, rollout.mask) + masked_mean(values**2, rollout.mask)
            loss.backward()

        try:
            update()
        except Exception as e:  # torch.compile needs a C++ compiler on the CPU
            rows.append({"what": f"update, {episodes} episodes, torch.compile", "error": str(e).splitlines()[0][:120]})
            continue
        with FlopCounterMode(display=False) as counter:
            update()
        start = time.perf_counter()
        for _ in range(reps):
            update()
        seconds = (time.perf_counter() - start) / reps
        flops = counter.get_total_flops() / seconds
        rows.append({"what": f"update, {episodes} episodes{', torch.compile' if compiled else ''}",
                     "ms": round(seconds * 1e3, 2), "gflop_per_s": round(flops / 1e9, 1),
                     "of_matmul": round(flops / matmul, 3)})
    return rows


# Where the profiler puts the time of a matrix product and of attention (self time: an op's own,
# not that of the ops it calls, so nothing is counted twice).
MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")
ATTENTION_OPS = ("aten::_scaled_dot_product_flash_attention_for_cpu",
                 "aten::_scaled_dot_product_flash_attention_for_cpu_backward", "aten::_softmax",
                 "aten::_softmax_backward_data")


def profile(quick: bool) -> list[dict]:
    """One PPO and one SFT iteration on Reverse-v0 at the default sizes under ``torch.profiler``
    (CPU): the share of their wall time in matrix products, in attention, in other ops, and
    outside any op (Python between ops, and the profiler's own cost per op), and the ops that
    take the most. Iterations 3 to 6 of a run are profiled (the first two warm up), the clock read
    when the trainer logs each one."""
    import torch
    from torch.profiler import ProfilerActivity, schedule
    from torch.profiler import profile as torch_profile

    from textgym.agents import ppo, sft
    from textgym.agents.run import RunLogger

    active = 1 if quick else 4
    steps = 8_000 if quick else 40_000
    runs = (("PPO", ppo.train, ppo.PPOConfig(env_id="textgym/Reverse-v0", env_kwargs={"shaping": True},
                                            total_steps=steps, eval_episodes=16)),
            ("SFT", sft.train, sft.SFTConfig(env_id="textgym/Reverse-v0", total_steps=steps, eval_episodes=16)))
    rows = []
    for name, train, cfg in runs:
        ends: list[float] = []
        with torch_profile(activities=[ProfilerActivity.CPU], schedule=schedule(wait=1, warmup=1, active=active, repeat=1)) as prof:
            log = RunLogger.log

            def logged(self, metrics, _log=log, _prof=prof, _ends=ends):  # an iteration ends: the profiler steps
                _log(self, metrics)
                _ends.append(time.perf_counter())
                _prof.step()

            RunLogger.log = logged
            try:
                torch.manual_seed(0)
                train(cfg, progress=False)
            finally:
                RunLogger.log = log
        if len(ends) < 2 + active:
            raise RuntimeError(f"{name}: {len(ends)} iterations in {steps} steps, fewer than the {2 + active} profiled")
        wall = (ends[1 + active] - ends[1]) * 1e6  # microseconds, as the profiler counts
        ops = {e.key: e.self_cpu_time_total for e in prof.key_averages() if not e.key.startswith("ProfilerStep")}
        total = sum(ops.values())
        matmul = sum(ops.get(k, 0.0) for k in MATMUL_OPS)
        attention = sum(ops.get(k, 0.0) for k in ATTENTION_OPS)
        top = sorted(ops.items(), key=lambda kv: -kv[1])[:8]
        rows.append({"what": f"{name} iteration, Reverse-v0", "ms": round(wall / active / 1e3, 1),
                     "matmul": round(matmul / wall, 3), "attention": round(attention / wall, 3),
                     "other_ops": round((total - matmul - attention) / wall, 3),
                     "outside_ops": round(1 - total / wall, 3),
                     "top": [[k, round(v / wall, 3)] for k, v in top]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["threads", "ddp", "efficiency", "compile", "profile", "all"])
    parser.add_argument("--quick", action="store_true", help="tiny budgets, to check that it runs")
    args = parser.parse_args()
    for name, fn in (("threads", threads), ("ddp", ddp), ("efficiency", efficiency), ("compile", ppo_compile),
                     ("profile", profile)):
        if args.what in (name, "all"):
            for row in fn(args.quick):
                print(json.dumps({"benchmark": name, **row}), flush=True)


if __name__ == "__main__":
    main()
