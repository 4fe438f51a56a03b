"""Kill -9 at random moments, resume, and check that the run ends as the one never killed.

    python benchmarks/kill_resume.py                       # PPO, GRPO and SFT, 5 kills each, one process
    python benchmarks/kill_resume.py --ranks 2 --kills 3   # the same under torchrun with 2 ranks
    python benchmarks/kill_resume.py --ranks 2 --kills 2 --one-rank   # one rank killed, torchrun --max-restarts=1
    python benchmarks/kill_resume.py --quick               # one kill of one PPO run, to check that it runs

For each trainer it trains a small run on Reverse-v0 to the end once (the reference), then, for
each kill, starts the same command with ``--auto-resume --save-every 1``, sends SIGKILL to the
whole process group at a random moment between its first iteration and its end (seeded:
``--seed``; a save, the final evaluation or the plot may be under way: the moment is counted in
the reference's iterations, so it does not depend on how fast this run goes), and runs the same
command again until it exits 0. The killed-and-resumed run must end with the reference's ``metrics.jsonl``
(time aside) and bit-identical weights. Prints one line per kill and the count that matched.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from textgym.agents.state import run_history as metrics
from textgym.agents.state import same_weights

SETTINGS = {
    "ppo": ["--set", "kl_coef=0.05"],
    "grpo": ["--set", "group_size=4"],
    "sft": [],
}


def command(algo: str, out: Path, ranks: int, steps: int, restarts: int = 0) -> list[str]:
    launch = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}",
               f"--max-restarts={restarts}"] if ranks > 1 else [sys.executable])
    return [*launch, "-m", "textgym", "train", algo, "--env", "textgym/Reverse-v0", "--out", str(out), "--auto-resume",
            "--save-every", "1", "--num-envs", "64", "--total-steps", str(steps), "--recipe", "none", "--device", "cpu",
            "--threads", "1", "--quiet", "--set", "eval_episodes=8", "--set", "n_layers=1", "--set", "d_model=32",
            *SETTINGS[algo]]


def lines(out: Path) -> int:
    try:
        return (out / "metrics.jsonl").read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def wait_for_lines(out: Path, proc: subprocess.Popen, n: int) -> float:
    """Wait until the run has logged ``n`` iterations (or ends); returns when, by ``time.monotonic()``."""
    while proc.poll() is None and lines(out) < n:
        time.sleep(0.005)
    return time.monotonic()


def run_to_end(cmd: list[str], tries: int = 5) -> None:
    for _ in range(tries):
        if subprocess.run(cmd, capture_output=True).returncode == 0:
            return
    raise RuntimeError(f"{' '.join(cmd)} did not finish in {tries} tries")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--kills", type=int, default=5, help="kills per trainer")
    parser.add_argument("--ranks", type=int, default=1, help="processes (torchrun) per run")
    parser.add_argument("--steps", type=int, default=12_000, help="env steps per run")
    parser.add_argument("--seed", type=int, default=0, help="seeds the moments of the kills")
    parser.add_argument("--one-rank", action="store_true", help="with --ranks > 1: kill one rank (chosen at random), "
                        "and let torchrun --max-restarts=1 restart the run, instead of killing the whole run")
    parser.add_argument("--quick", action="store_true", help="one kill of one PPO run")
    args = parser.parse_args()
    if args.quick:
        args.algos, args.kills, args.steps = ["ppo"], 1, 6_000
    rng = random.Random(args.seed)
    matched = total = kills = 0
    with tempfile.TemporaryDirectory() as tmp:
        for algo in args.algos:
            reference = Path(tmp) / f"{algo}-reference"
            proc = subprocess.Popen(command(algo, reference, args.ranks, args.steps), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            first = wait_for_lines(reference, proc, 1)
            n = lines(reference)
            while proc.poll() is None:  # the iterations, then the last save, evaluation and plot
                last = wait_for_lines(reference, proc, n + 1)
                n = lines(reference)
            if proc.wait() != 0:
                raise RuntimeError(f"the reference {algo} run failed")
            iteration, ending = (last - first) / max(1, n - 1), time.monotonic() - last
            for k in range(args.kills):
                out = Path(tmp) / f"{algo}-{k}"
                cmd = command(algo, out, args.ranks, args.steps, restarts=1 if args.one_rank else 0)
                # a moment of the run: after iteration `at` is logged, a fraction of the next one
                # (or of the final save, evaluation and plot, after the last)
                at = rng.uniform(1, n + 1)
                proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
                wait_for_lines(out, proc, int(at))
                time.sleep((at - int(at)) * (ending if int(at) >= n else iteration))
                killed = proc.poll() is None
                kills += killed
                iterations = lines(out)
                if killed and args.one_rank:  # one worker dies; torchrun restarts the run, which resumes
                    import psutil  # pip install psutil: to find torchrun's workers

                    workers = [p for p in psutil.Process(proc.pid).children(recursive=True) if "textgym" in " ".join(p.cmdline())]
                    rng.choice(workers).send_signal(signal.SIGKILL)
                elif killed:
                    os.killpg(proc.pid, signal.SIGKILL)  # every rank and the launcher, with no handler run
                proc.wait()
                run_to_end(cmd)
                same = metrics(out) == metrics(reference) and same_weights(out, reference)
                matched += same
                total += 1
                print(f"{algo} kill {k + 1}: at iteration {at:5.2f} of {n} "
                      f"({'killed' if killed else 'had ended'} with {iterations} iterations logged) -> "
                      f"{'bit-identical' if same else 'DIFFERENT'}", flush=True)
    print(f"{matched} of {total} runs ({kills} killed before their end) resumed to the reference's metrics and "
          f"bit-identical weights ({args.ranks} rank{'s' if args.ranks > 1 else ''} per run)")
    if matched != total:
        sys.exit(1)


if __name__ == "__main__":
    main()
