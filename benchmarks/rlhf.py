"""The README's RLHF pipeline on textgym/Review-v0, command by command, timed and checked against the targets.

    python benchmarks/rlhf.py                  # about 8 minutes on a 2-core CPU
    python benchmarks/rlhf.py --quick          # tiny budgets, to check that it runs
    python benchmarks/rlhf.py --workdir runs   # keep the runs (default: a temporary directory)

It runs exactly the commands of ``PIPELINE`` (the README shows the same ones, and a test checks
that they agree), prints each one's wall time, then the comparison table and the targets:

- the reward model's held-out pairwise accuracy against the true rule >= 97%, and against the
  noisy labels (ceiling 90%);
- PPO with the KL penalty beats SFT on the true reward (the hidden rule) by at least 0.2;
- the whole pipeline in under 15 minutes.
"""

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from textgym.agents.compare import format_comparison

LEARNED = '\'{"reward": "reward_model", "reward_kwargs": {"path": "runs/review/rm", "normalize": true}}\''
PIPELINE = [
    "textgym train sft --env textgym/Review-v0 --total-steps 3000000 --out runs/review/sft",
    "textgym preferences --pairs 20000 --noise 0.1 --seed 0 --out runs/review/prefs.jsonl",
    "textgym preferences --pairs 2000 --noise 0 --seed 1 --out runs/review/test_clean.jsonl",
    "textgym preferences --pairs 2000 --noise 0.1 --seed 1 --out runs/review/test_noisy.jsonl",
    "textgym train-rm --data runs/review/prefs.jsonl --env textgym/Review-v0 --epochs 10 --out runs/review/rm",
    "textgym eval-rm runs/review/rm --data runs/review/test_clean.jsonl",
    "textgym eval-rm runs/review/rm --data runs/review/test_noisy.jsonl",
    f"textgym train ppo --env textgym/Review-v0 --env-kwargs {LEARNED} --init runs/review/sft --set kl_coef=0.05 "
    "--total-steps 500000 --out runs/review/ppo_kl",
    f"textgym train ppo --env textgym/Review-v0 --env-kwargs {LEARNED} --init runs/review/sft --set kl_coef=0 "
    "--total-steps 500000 --out runs/review/ppo_no_kl",
    "textgym compare runs/review/sft runs/review/ppo_kl runs/review/ppo_no_kl --env textgym/Review-v0 "
    "--reference runs/review/sft --reward-model runs/review/rm --sample --episodes 1000 --show 3 --out runs/review/compare",
]

TINY_MODEL = "--set n_layers=1 --set d_model=32 --set n_heads=2"
QUICK = {  # what --quick replaces, in every command where it appears
    "--total-steps 3000000": f"--total-steps 2000 --num-envs 16 --set eval_episodes=16 {TINY_MODEL}",
    "--total-steps 500000": "--total-steps 1000 --num-envs 16 --set eval_episodes=16",
    "--pairs 20000": "--pairs 200",
    "--pairs 2000": "--pairs 50",
    "--epochs 10": f"--epochs 1 {TINY_MODEL}",
    "--episodes 1000": "--episodes 32",
}
TARGETS = {"rm_accuracy_true": 0.97, "true_reward_gain": 0.2, "pipeline_seconds": 15 * 60}


def run_pipeline(workdir: Path, quick: bool) -> tuple[list[tuple[str, float]], list[dict], list[dict]]:
    """Run every command in ``workdir``; return (command, seconds) pairs, eval-rm's metrics, compare's rows."""
    timings, rm_metrics = [], []
    for command in PIPELINE:
        if quick:
            for full, small in QUICK.items():
                command = command.replace(full, small)
        argv = shlex.split(command)
        argv = [sys.executable, "-m", "textgym.cli", *argv[1:], *(["--quiet"] if argv[1] == "train" else [])]
        if argv[3] == "eval-rm":
            argv.append("--json")
        start = time.time()
        done = subprocess.run(argv, cwd=workdir, capture_output=True, text=True)
        seconds = time.time() - start
        if done.returncode != 0:
            sys.exit(f"failed ({done.returncode}): {command}\n{done.stdout}{done.stderr}")
        if argv[3] == "eval-rm":
            rm_metrics.append(json.loads(done.stdout))
        timings.append((command, seconds))
        print(f"{seconds:7.1f} s  {command}", flush=True)
    rows = json.loads((workdir / "runs/review/compare/comparison.json").read_text())
    return timings, rm_metrics, rows


def report(timings: list[tuple[str, float]], rm_metrics: list[dict], rows: list[dict]) -> dict:
    """Print the comparison and the targets; return the figures."""
    print("\n" + format_comparison(rows, ("mean_return", "learned_reward", "kl_to_reference", "grammatical",
                                          "positive_words", "mean_length", "distinct_2")))
    by_name = {Path(row["run"]).name: row for row in rows}
    figures = {
        "rm_accuracy_true": rm_metrics[0]["accuracy"],
        "rm_accuracy_noisy": rm_metrics[1]["accuracy"],
        "true_reward_sft": by_name["sft"]["mean_return"],
        "true_reward_ppo_kl": by_name["ppo_kl"]["mean_return"],
        "true_reward_ppo_no_kl": by_name["ppo_no_kl"]["mean_return"],
        "true_reward_gain": by_name["ppo_kl"]["mean_return"] - by_name["sft"]["mean_return"],
        "kl_ppo_kl": by_name["ppo_kl"]["kl_to_reference"],
        "kl_ppo_no_kl": by_name["ppo_no_kl"]["kl_to_reference"],
        "pipeline_seconds": sum(s for _, s in timings),
    }
    checks = [
        ("reward model, accuracy vs the true rule", f"{figures['rm_accuracy_true']:.2%}", ">= 97%",
         figures["rm_accuracy_true"] >= TARGETS["rm_accuracy_true"]),
        ("reward model, accuracy vs noisy labels", f"{figures['rm_accuracy_noisy']:.2%}", "report (ceiling 90%)", None),
        ("true reward, PPO with KL minus SFT", f"{figures['true_reward_gain']:+.3f}", ">= +0.2",
         figures["true_reward_gain"] >= TARGETS["true_reward_gain"]),
        ("KL to SFT: PPO with KL / without", f"{figures['kl_ppo_kl']:.2f} / {figures['kl_ppo_no_kl']:.2f}", "report", None),
        ("whole pipeline", f"{figures['pipeline_seconds']:.0f} s", "< 900 s",
         figures["pipeline_seconds"] < TARGETS["pipeline_seconds"]),
    ]
    print()
    for what, value, target, ok in checks:
        verdict = "" if ok is None else ("met" if ok else "MISSED")
        print(f"{what:<42} {value:>16}   target {target:<22} {verdict}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny budgets (the targets will be missed)")
    parser.add_argument("--workdir", help="run here and keep the runs (default: a temporary directory)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        figures = report(*run_pipeline(workdir, args.quick))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
