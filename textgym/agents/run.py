"""A training run from start to finish, and the folder it writes.

* :func:`start_run`: the run's checkpointer (restored with ``resume``), where it stands and its
  logger; the folder made to stand on its own (:func:`describe_run`: ``config.json`` and the
  tokenizer).
* :class:`RunLogger`: ``metrics.jsonl``, TensorBoard, the progress bar and the learning curve.
* :func:`save_and_evaluate`: the final save and the greedy evaluation.

The run folder's files, their writing and its one-writer lock are :mod:`textgym.files`' and
:mod:`textgym.agents.state`'s.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

import textgym
from textgym.agents.configs import TrainConfig
from textgym.agents.evaluate import TrainResult, evaluate_policy
from textgym.agents.optim import Adam
from textgym.agents.state import Checkpointer, Progress
from textgym.files import read_jsonl, replacing, write_json, write_jsonl
from textgym.tokenizers import TOKENIZER_DIR, save_tokenizer


class RunStart(NamedTuple):
    """A run's checkpointer, where it stands, and its logger (see :func:`start_run`)."""

    checkpointer: Checkpointer
    run: Progress
    logger: RunLogger


def start_run(name: str, cfg: TrainConfig, policy: nn.Module, optimizer: Adam | torch.optim.Optimizer,
              generator: torch.Generator, envs, ranks, out: str | os.PathLike | None, progress: bool, save_every: int,
              resume: bool, reference: Any = None) -> RunStart:
    """A run's checkpointer, where it stands (restored from ``out`` with ``resume``) and its logger
    (rank 0 alone writes and shows progress)."""
    checkpointer = Checkpointer(out, save_every, policy, optimizer, generator, envs, reference, ranks=ranks)
    if out is not None and ranks.is_main:
        Path(out).mkdir(parents=True, exist_ok=True)
        checkpointer.lock()  # one writer: a second process writing this folder is refused
        describe_run(Path(out), name, cfg, envs, resume)
    run = checkpointer.restore() if resume else Progress()
    logger = RunLogger(out if ranks.is_main else None, cfg.total_steps, name, progress and ranks.is_main,
                       resume_at=run.iteration if resume else None, title=f"{name} on {cfg.env_id}")
    return RunStart(checkpointer, run, logger)


def config_dict(cfg: TrainConfig) -> dict[str, Any]:
    """A trainer's config as plain JSON data, as a run's ``config.json`` holds it."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def write_run_config(out: Path, algo: str, cfg: TrainConfig, **extra: Any) -> None:
    """Write ``out/config.json``: the algorithm, the env and the whole config (what ``textgym eval``
    and ``textgym train --resume`` read back), the textgym version, the folder the run was started
    in (``cwd``: relative paths in the config are read from there) and ``extra`` (the CLI adds the
    recipe and the torch threads)."""
    write_json(out / "config.json", {"algo": algo, "env_id": cfg.env_id, "env_kwargs": cfg.env_kwargs,
                                     "init": cfg.init, "config": config_dict(cfg), "version": textgym.__version__,
                                     "cwd": os.getcwd(), **extra})


def describe_run(out: Path, algo: str, cfg: TrainConfig, envs, resume: bool) -> None:
    """Make ``out`` stand on its own, however the run was started (CLI or Python): its
    ``config.json`` (kept when the CLI already wrote this run's, with its extra fields) and the
    env's tokenizer in ``out/tokenizer/``, so the run can be evaluated from any folder and on other
    data with the ids it was trained on."""
    out.mkdir(parents=True, exist_ok=True)
    try:
        saved = json.loads((out / "config.json").read_text())
        # the CLI names a user's trainer "module:name", which the trainer knows as "name"
        same = str(saved.get("algo")).rpartition(":")[2] == algo and saved.get("config") == config_dict(cfg)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        same = False
    if not same and not resume:
        write_run_config(out, algo, cfg)
    tokenizer = getattr(envs, "tokenizer", None)
    if tokenizer is not None and not (out / TOKENIZER_DIR).exists():
        save_tokenizer(tokenizer, out / TOKENIZER_DIR)


class RunLogger:
    """Writes ``metrics.jsonl`` (one line per iteration), TensorBoard events when tensorboard is
    installed, a progress bar with the running mean return, and at the end a learning curve PNG.

    Args:
        out: run directory, or None to only show progress.
        total: total env steps, for the progress bar.
        desc: progress bar label.
        progress: show the bar.
    """

    def __init__(self, out: str | os.PathLike | None, total: int, desc: str, progress: bool = True,
                 resume_at: int | None = None, title: str | None = None) -> None:
        from tqdm.auto import tqdm

        self.out = Path(out) if out is not None else None
        self.title = title or desc
        self.history: list[dict[str, Any]] = []
        self.file = None
        self.tb = None
        if self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
            metrics = self.out / "metrics.jsonl"
            if resume_at is not None:  # keep the lines up to the saved iteration, drop any written after it
                rows = read_jsonl(metrics)
                for n, row in enumerate(rows, 1):
                    if not all(isinstance(row.get(k), int) and not isinstance(row.get(k), bool)
                               for k in ("iteration", "env_steps")):
                        raise ValueError(f"{metrics}: line {n} has no whole-number 'iteration' and 'env_steps': "
                                         "it is not a textgym metrics line; mend or remove it")
                self.history = [row for row in rows if row["iteration"] <= resume_at]
                write_jsonl(metrics, self.history)
            else:
                metrics.unlink(missing_ok=True)  # a symlink is replaced, never followed
            self.file = open(metrics, "a" if resume_at is not None else "x")
            try:
                from torch.utils.tensorboard import SummaryWriter

                purge = self.history[-1]["env_steps"] + 1 if self.history else None  # events after the state: dropped
                self.tb = SummaryWriter(str(self.out), purge_step=purge)
            except ImportError:  # tensorboard is optional
                self.tb = None
        self.bar = tqdm(total=total, desc=desc, disable=not progress, unit="step", dynamic_ncols=True)
        if self.history:
            self.bar.update(min(self.history[-1]["env_steps"], total))

    def log(self, metrics: dict[str, float]) -> None:
        """Record one iteration; ``metrics`` must hold ``env_steps`` and ``mean_return``."""
        metrics = {k: (float(v) if not isinstance(v, (int, str)) else v) for k, v in metrics.items()}
        self.history.append(metrics)
        if self.file is not None:
            self.file.write(json.dumps(metrics) + "\n")
            self.file.flush()
        if self.tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and k != "env_steps" and math.isfinite(v):
                    self.tb.add_scalar(k, v, metrics["env_steps"])
        self.bar.update(min(metrics["env_steps"], self.bar.total) - self.bar.n)  # the last batch may overrun the budget
        self.bar.set_postfix(mean_return=f"{metrics['mean_return']:.3f}")

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.bar.close()
        if self.file is not None:
            self.file.close()
        if self.tb is not None:
            self.tb.close()
        if self.out is not None and self.history:
            plot_learning_curve(self.history, self.out / "learning_curve.png", self.title)


def plot_learning_curve(history: list[dict[str, Any]], path: Path, title: str = "") -> None:
    """The learning curve as a PNG: mean return against env steps, and beside it the success rate
    where the env reports one (the two have different scales, so each has its own axes)."""
    try:
        from matplotlib.figure import Figure  # not pyplot: no global backend and no GUI toolkit
    except ImportError:
        print("textgym: matplotlib is not installed, so no learning curve PNG: pip install matplotlib")
        return
    steps = [h["env_steps"] for h in history]
    panels = [("mean_return", "mean return per episode")]
    if "success_rate" in history[0]:
        panels.append(("success_rate", "success rate"))
    fig = Figure(figsize=(5 * len(panels), 3.5))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels):
        ax.plot(steps, [h.get(key, float("nan")) for h in history])
        ax.set_xlabel("env steps")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if key == "success_rate":
            ax.set_ylim(-0.02, 1.02)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with replacing(path) as tmp:  # replaces a symlink at ``path`` rather than writing through it
        fig.savefig(tmp, dpi=100, format="png")


def iteration_metrics(run: Progress, rollout: Any, stats: Any) -> dict[str, float]:
    """What every RL trainer logs of an iteration: where the run stands (``time``: seconds trained),
    how the rollout's episodes went, and the mean over the minibatches of each statistic in ``stats``
    (an :class:`~textgym.agents.common.UpdateStats`)."""
    return {"iteration": run.iteration, "env_steps": run.env_steps, "time": run.seconds(),
            "mean_return": float(rollout.returns.mean()), "success_rate": float(rollout.success.float().mean()),
            "episode_length": float(rollout.lengths.float().mean()),
            **stats.means()}


def env_metrics(envs: Any) -> dict[str, float]:
    """The env's own metrics of the episodes just played (the protocol's ``episode_metrics``), and
    when a curriculum moves the difficulty, the current ``difficulty`` and ``level_success``: the
    success rate of the current level's episodes at the curriculum's last decision (NaN before the
    first), which is what it compares with its band."""
    curriculum = getattr(envs, "curriculum", None)
    level = {} if curriculum is None else {"difficulty": float(envs.difficulty), "level_success": curriculum.rate}
    return {**envs.episode_metrics(), **level}


def save_and_evaluate(cfg: TrainConfig, policy: nn.Module, logger: RunLogger, checkpointer: Checkpointer,
                      run: Progress, device: torch.device) -> TrainResult:
    """Save the final policy and training state (when there is a run directory) and evaluate greedily."""
    checkpointer.save(run)
    checkpointer.unlock()
    evaluation = evaluate_policy(policy, cfg.env_id, cfg.env_kwargs, cfg.eval_episodes, device, seed=cfg.seed + 1)
    return TrainResult(policy, logger.history, evaluation)
