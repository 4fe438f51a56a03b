"""The puzzles' vector envs against a SyncVectorEnv of their single envs, at 1,024 envs.

    python benchmarks/puzzles.py [--threads 1] [--quick]

Random actions, the same for both (see ``textgym.bench.bench_vector_env``): every episode's
prompt is drawn and encoded, every finished one judged by the puzzle's rules, on tensors, a batch
of the vector env's episodes at once (a batch of one in a single env). The vector env steps the
tokens of all envs as one tensor operation.
"""

import argparse
from dataclasses import replace

import torch

from textgym.bench import BenchConfig, bench_vector_env
from textgym.tables import text_table
from textgym.threads import set_threads

PUZZLES = ["textgym/Countdown-v0", "textgym/Hanoi-v0", "textgym/Sudoku-v0", "textgym/Maze-v0", "textgym/LightsOut-v0"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="32 envs, a few steps: to check that it runs")
    args = parser.parse_args()
    set_threads(args.threads)
    cfg = BenchConfig(vec_steps=100, sync_steps=10)
    if args.quick:
        cfg = replace(cfg, vec_envs=32, vec_steps=5, sync_steps=2)
    rows = []
    for env_id in PUZZLES:
        r = bench_vector_env(cfg, torch.device("cpu"), env_id)
        rows.append((env_id, f"{r['torch_vec_sps']:,.0f}", f"{r['sync_vec_sps']:,.0f}",
                     f"{r['torch_vec_sps'] / r['sync_vec_sps']:.1f}x"))
    print(f"random-action steps/s, {cfg.vec_envs} envs, CPU, {torch.get_num_threads()} thread(s)")
    print(text_table(("env", "vector env", "SyncVectorEnv", "ratio"), rows))


if __name__ == "__main__":
    main()
