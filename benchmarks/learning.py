"""The learning table: every env x algorithm at its recipe, 3 seeds, greedy on held-out episodes.

    python benchmarks/learning.py                         # every cell, 3 seeds: about 6.5 hours of one-thread runs
    python benchmarks/learning.py --seeds 0 2 --threads 1 & python benchmarks/learning.py --seeds 1 --threads 1
                                                          # as the README's table was measured: two runs at a time
    python benchmarks/learning.py --only Reverse-v0:grpo --seeds 0 1 2
    python benchmarks/learning.py --readme README.md --plots benchmarks/curves --recipes textgym/recipes.json
                                                          # the table, the PNGs and the recipes' results
    python benchmarks/learning.py --quick                 # tiny budgets, to check that it runs

Each cell trains a new policy from its seed with the shipped recipe (``textgym recipes``), or, for
"sft+ppo", the SFT recipe and then PPO from the SFT policy (``SFT_THEN_PPO``). The trained policy then
plays 1,024 held-out episodes greedily, without shaping. Results go to a JSON file (one row per
cell and seed); a cell and seed already there is not trained again, so the run can stop and go on,
and a few cells can be refreshed with ``--only ... --force``. ``--readme`` rewrites the table
between the README's ``learning-table`` markers from that file, and ``--plots`` draws each env's
learning curves (the training episodes' success, mean over seeds).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

from textgym.agents import evaluate_policy, grpo, ppo, reinforce, sft
from textgym.files import write_json
from textgym.recipes import find_recipe
from textgym.threads import set_threads

TRAINERS = {"ppo": (ppo, ppo.PPOConfig), "reinforce": (reinforce, reinforce.ReinforceConfig),
            "grpo": (grpo, grpo.GRPOConfig), "sft": (sft, sft.SFTConfig)}
ALGO_NAMES = {"ppo": "PPO", "reinforce": "REINFORCE (RLOO)", "grpo": "GRPO", "sft": "SFT", "sft+ppo": "SFT then PPO",
              "ppo-no-curriculum": "PPO without its curriculum"}
NO_CURRICULUM = "ppo-no-curriculum"
"""PPO's recipe with its curriculum turned off: the same budget from the hardest level on."""
SFT_THEN_PPO = {"kl_coef": 0.05, "learning_rate": 1e-5, "critic_warmup": 10, "ent_coef": 0.0, "total_steps": 400_000,
                "curriculum": None}
"""PPO's settings after SFT, over the env's PPO recipe, on the env SFT trained on (the SFT recipe's
``env_kwargs``): a KL leash to the SFT policy, a step size a thirtieth of training from scratch, the
new value head trained alone for 10 iterations first, no entropy bonus to pull the SFT policy's
choices apart, 400,000 steps, and no curriculum (the SFT policy already plays the hardest level)."""

# Cells in the order they run: cheap and most telling first. (env, algorithm)
CELLS = [
    ("Copy-v0", "sft"), ("Reverse-v0", "sft"), ("Sort-v0", "sft"), ("GuessNumber-v0", "sft"),
    ("Reverse-v0", "ppo"), ("Reverse-v0", "reinforce"), ("Reverse-v0", "grpo"),
    ("GuessNumber-v0", "reinforce"), ("GuessNumber-v0", "grpo"),
    ("Copy-v0", "ppo"), ("Copy-v0", "reinforce"), ("Copy-v0", "grpo"),
    ("GuessNumberText-v0", "sft"), ("GuessNumberText-v0", "sft+ppo"), ("Addition-v0", "sft"),
    ("GuessNumber-v0", "ppo"), ("Sort-v0", "ppo"), ("Sort-v0", "reinforce"), ("Sort-v0", "grpo"),
    ("GuessNumberText-v0", "ppo"),
    ("Review-v0", "sft"), ("Mastermind-v0", "sft"), ("BullsAndCows-v0", "sft"),
    ("Hanoi-v0", "sft"), ("Sudoku-v0", "sft"), ("Maze-v0", "sft"), ("LightsOut-v0", "sft"), ("Countdown-v0", "sft"),
    ("Sudoku-v0", "ppo"), ("Sudoku-v0", NO_CURRICULUM), ("Maze-v0", "ppo"),
    ("LightsOut-v0", "ppo"), ("Hanoi-v0", "ppo"), ("Countdown-v0", "ppo"),
]
PUZZLES = ("Countdown-v0", "Hanoi-v0", "Sudoku-v0", "Maze-v0", "LightsOut-v0")
"""Their expert scores 1 on every puzzle (``tests/test_puzzles.py``): the reference line of their rows."""
# The env's headline result and its own metric: (key, label) each.
RESULTS = {
    "GuessNumber-v0": (("success_rate", "success"), ("mean_guesses", "mean guesses")),
    "GuessNumberText-v0": (("success_rate", "success"), ("mean_guesses", "mean guesses")),
    "Mastermind-v0": (("success_rate", "success"), ("mean_guesses", "mean guesses")),
    "BullsAndCows-v0": (("success_rate", "success"), ("mean_guesses", "mean guesses")),
    "Review-v0": (("grammatical", "grammatical"), ("mean_return", "rule's reward")),
    **{env: (("success_rate", "optimal (expert: 1.000)"), ("solved", "solved")) for env in PUZZLES},
}
TOKEN_RESULT = (("exact_match", "exact match"), ("mean_return", "token accuracy"))
TARGETS = {"GuessNumber-v0": (0.99, 5.9), "GuessNumberText-v0": (0.99, 6.0), "Mastermind-v0": (0.99, 4.6),
           "BullsAndCows-v0": (0.99, 5.6), "Review-v0": None}
"""The issue's targets: (the least mean result, the most mean guesses or None); None: report only."""
CELL_TARGETS = {("Sudoku-v0", "ppo"): (0.95, None), ("Sudoku-v0", NO_CURRICULUM): None,
                **{(env, "ppo"): None for env in ("Maze-v0", "LightsOut-v0", "Hanoi-v0", "Countdown-v0")}}
"""Targets of single cells: RL with a curriculum on a new env, the same without it, and the other
new envs' RL rows (report only)."""
EVAL_SEED = 2024
EVAL_KWARGS = ("action_mask",)
"""The env arguments a cell's evaluation keeps from its recipe: those that shape what the policy may write, not what it is paid."""


def stages(env: str, algo: str, seed: int, quick: bool) -> list[tuple[object, object]]:
    """``(trainer module, config)`` for each stage of a cell, each starting from the last one's policy."""
    env_id = f"textgym/{env}"
    algos = {"sft+ppo": ["sft", "ppo"], NO_CURRICULUM: ["ppo"]}.get(algo, [algo])
    out, env_kwargs = [], None
    for stage in algos:
        recipe = find_recipe(env_id, stage, required=True)
        module, cls = TRAINERS[stage]
        fields = {**recipe.config, **(SFT_THEN_PPO if algo == "sft+ppo" and stage == "ppo" else {})}
        if algo == NO_CURRICULUM:
            fields.pop("curriculum")
        env_kwargs = recipe.env_kwargs if env_kwargs is None else env_kwargs  # later stages: the first one's env
        cfg = cls(env_id=env_id, env_kwargs=env_kwargs, seed=seed, **fields)
        if quick:
            cfg = replace(cfg, total_steps=400, num_envs=16, eval_episodes=8)
        out.append((module, cfg))
    return out


def run_cell(env: str, algo: str, seed: int, quick: bool, episodes: int) -> dict:
    """Train one cell from ``seed`` and evaluate it greedily: one row of the results file."""
    policy, curve, start, cpu, steps = None, [], time.time(), time.process_time(), 0
    for module, cfg in stages(env, algo, seed, quick):
        result = module.train(cfg, policy=policy, progress=False)
        policy = result.policy
        curve += [(steps + h["env_steps"], h["success_rate"]) for h in result.history]
        steps += cfg.total_steps
    seconds, cpu_seconds = time.time() - start, time.process_time() - cpu
    # The env's defaults (no shaping), with the action mask the policy was trained under, if any.
    played = {k: v for k, v in cfg.env_kwargs.items() if k in EVAL_KWARGS}
    evaluation = evaluate_policy(policy, f"textgym/{env}", played, episodes, next(policy.parameters()).device, seed=EVAL_SEED)
    return {"env": env, "algo": algo, "seed": seed, "env_steps": steps, "train_seconds": round(seconds, 1),
            "cpu_seconds": round(cpu_seconds, 1), "eval": evaluation, "curve": curve[:: max(1, len(curve) // 100)]}


def algo_name(env: str, algo: str) -> str:
    """The algorithm's name in the table; "with a curriculum" where its recipe has one."""
    recipe = find_recipe(f"textgym/{env}", algo) if algo in TRAINERS else None
    return ALGO_NAMES[algo] + (" with a curriculum" if recipe and recipe.config.get("curriculum") is not None else "")


def cell_key(row: dict) -> str:
    return f"{row['env']}:{row['algo']}:{row['seed']}"


def load_rows(results: Path) -> list[dict]:
    return json.loads(results.read_text()) if results.exists() else []


def save_row(results: Path, row: dict) -> list[dict]:
    """Add ``row`` to the results file (replacing its cell and seed) and return every row.

    Several processes may share the file (say, one per seed): each writes under a lock and re-reads
    the file first, and the file is replaced whole, so a stopped run never leaves half of it."""
    results.parent.mkdir(parents=True, exist_ok=True)
    with open(results.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows = [r for r in load_rows(results) if cell_key(r) != cell_key(row)] + [row]
        write_json(results, rows)
    return rows


def mean_std(values: list[float], fmt: str) -> str:
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(statistics.mean(values), fmt)} ± {format(statistics.stdev(values), fmt)}"


def budget(env: str, algo: str) -> int:
    """The env steps of a cell's recipe, all its stages together."""
    return sum(cfg.total_steps for _, cfg in stages(env, algo, 0, quick=False))


def grouped(rows: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """The rows of each (env, algorithm), in the table's order, each group sorted by seed.

    Where some seeds of a cell ran its recipe's budget and others an older one, only the former
    count: a row never averages two recipes."""
    cells: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        cells.setdefault((row["env"], row["algo"]), []).append(row)
    envs = list(dict.fromkeys(env for env, _ in CELLS))  # in the order of their first cell
    order = sorted(cells, key=lambda c: (envs.index(c[0]), CELLS.index(c)))
    out = {}
    for c in order:
        current = [r for r in cells[c] if r["env_steps"] == budget(*c)]
        out[c] = sorted(current or cells[c], key=lambda r: r["seed"])
    return out


def summary(env: str, group: list[dict]) -> tuple[str, str]:
    """The cell's result and the env's own metric, as "label mean ± std" over its seeds."""
    (key, label), (key2, label2) = RESULTS.get(env, TOKEN_RESULT)
    return (f"{label} {mean_std([r['eval'][key] for r in group], '.3f')}",
            f"{label2} {mean_std([r['eval'][key2] for r in group], '.2f' if key2 == 'mean_guesses' else '.3f')}")


def target_text(env: str, group: list[dict]) -> str:
    """The env's target, and whether the cell's mean over seeds meets it."""
    target = CELL_TARGETS.get((env, group[0]["algo"]), TARGETS.get(env, (0.99, None)))
    if target is None:
        return "report"
    (key, _), (key2, _) = RESULTS.get(env, TOKEN_RESULT)
    least, most = target
    met = statistics.mean(r["eval"][key] for r in group) >= least
    text = f"≥ {least}"
    if most is not None:
        met = met and statistics.mean(r["eval"][key2] for r in group) <= most
        text += f", ≤ {most} guesses"
    return f"{text}: {'met' if met else '**missed**'}"


def table(rows: list[dict]) -> str:
    """The README's markdown table: one line per env and algorithm, mean ± std over its seeds."""
    lines = ["| env | algorithm | env steps | wall time | CPU time | seeds | result (greedy, held out) | env's metric | target |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (env, algo), group in grouped(rows).items():
        result, metric = summary(env, group)
        seconds = statistics.mean(r["train_seconds"] for r in group)
        cpu = statistics.mean(r["cpu_seconds"] for r in group)
        target = target_text(env, group)
        lines.append(f"| {env} | {algo_name(env, algo)} | {group[0]['env_steps']:,} | {seconds:,.0f} s | {cpu:,.0f} s | "
                     f"{len(group)} | {result} | {metric} | {target} |")
    return "\n".join(lines)


def write_recipe_results(path: Path, rows: list[dict]) -> None:
    """Set each recipe's ``result`` in ``recipes.json`` to its cell of the table."""
    recipes = json.loads(path.read_text())
    for (env, algo), group in grouped(rows).items():
        if algo in recipes.get(f"textgym/{env}", {}):
            result, metric = summary(env, group)
            seconds = statistics.mean(r["train_seconds"] for r in group)
            recipes[f"textgym/{env}"][algo]["result"] = (
                f"{result}, {metric} over {len(group)} seed{'s' * (len(group) > 1)}, {seconds:.0f} s each "
                f"(python benchmarks/learning.py --only {env}:{algo})")
    path.write_text(json.dumps(recipes, indent=2, ensure_ascii=False) + "\n")


def write_readme(path: Path, rows: list[dict]) -> None:
    """Replace the text between the README's learning-table markers with :func:`table`."""
    begin, end = "<!-- learning-table:begin -->", "<!-- learning-table:end -->"
    text = path.read_text()
    if begin not in text or end not in text:
        raise ValueError(f"{path} has no {begin} ... {end} markers to write the table between")
    head, rest = text.split(begin, 1)
    path.write_text(f"{head}{begin}\n{table(rows)}\n{end}{rest.split(end, 1)[1]}")


def plot(rows: list[dict], folder: Path) -> list[Path]:
    """One PNG per env: the training episodes' success against env steps, mean over seeds, per algorithm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for env in dict.fromkeys(r["env"] for r in rows):
        fig, ax = plt.subplots(figsize=(5, 3.2))
        for algo in dict.fromkeys(r["algo"] for r in rows if r["env"] == env):
            curves = [r["curve"] for r in rows if (r["env"], r["algo"]) == (env, algo)]
            n = min(len(c) for c in curves)
            steps = [curves[0][i][0] for i in range(n)]
            ax.plot(steps, [statistics.mean(c[i][1] for c in curves) for i in range(n)],
                    label=f"{algo_name(env, algo)} ({len(curves)} seeds)")
        ax.set(title=env, xlabel="env steps", ylabel="success while training", ylim=(-0.02, 1.02))
        ax.legend(fontsize=7)
        fig.tight_layout()
        written.append(folder / f"{env}.png")
        fig.savefig(written[-1], dpi=80)
        plt.close(fig)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", metavar="ENV:ALGO",
                        help=f"run only these cells (repeatable), e.g. Reverse-v0:grpo; the cells: "
                             f"{', '.join(f'{e}:{a}' for e, a in CELLS)}")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--results", default="benchmarks/results/learning.json", help="the results file (JSON)")
    parser.add_argument("--force", action="store_true", help="train cells again that the results file has")
    parser.add_argument("--quick", action="store_true", help="tiny budgets, to check that it runs")
    parser.add_argument("--episodes", type=int, default=1024, help="greedy evaluation episodes")
    parser.add_argument("--readme", help="rewrite this README's table from the results (no training)")
    parser.add_argument("--plots", help="write learning-curve PNGs into this folder (no training)")
    parser.add_argument("--recipes", help="set the results in this recipes.json from the results (no training)")
    parser.add_argument("--threads", type=int, help="torch threads (default: textgym's choice, as `textgym train`'s)")
    args = parser.parse_args()
    results = Path(args.results)
    rows = load_rows(results)
    if args.readme or args.plots or args.recipes:
        if args.readme:
            write_readme(Path(args.readme), rows)
        if args.recipes:
            write_recipe_results(Path(args.recipes), rows)
        for path in plot(rows, Path(args.plots)) if args.plots else []:
            print(f"wrote {path}")
        return
    cells = CELLS
    if args.only:
        wanted = [tuple(item.split(":", 1)) for item in args.only]
        unknown = [":".join(c) for c in wanted if c not in CELLS]
        if unknown:
            parser.error(f"unknown cells {unknown}; the cells are {', '.join(f'{e}:{a}' for e, a in CELLS)}")
        cells = [c for c in CELLS if c in wanted]
    print(f"torch threads: {set_threads(args.threads)}", flush=True)
    for env, algo in cells:
        for seed in args.seeds:
            key = f"{env}:{algo}:{seed}"
            if not args.force and any(cell_key(r) == key for r in load_rows(results)):
                continue
            row = run_cell(env, algo, seed, args.quick, args.episodes)
            rows = save_row(results, row)
            result, metric = summary(env, [row])
            print(f"{key:<28} {row['env_steps']:>10,} steps {row['train_seconds']:>7.1f} s ({row['cpu_seconds']:.0f} s CPU)   "
                  f"{result}, {metric}", flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
