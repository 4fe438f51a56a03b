"""What the trainers share: the base config, devices, seeding, logging and run directories."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from torch import nn

from textgym.agents.losses import kl_penalty
from textgym.agents.rollout import Rollout, SequenceView, evaluate_logprobs, make_envs
from textgym.agents.state import Checkpointer, Progress
from textgym.config import NON_NEGATIVE, POSITIVE, POSITIVE_INT, Check, check_fields
from textgym.distributed import Ranks, init_ranks, rank_device
from textgym.files import read_jsonl, replacing, write_json, write_jsonl  # noqa: F401  (re-exported)
from textgym.policies import load_policy, make_policy, tokenizer_dir
from textgym.tokenizers import save_tokenizer
from textgym.transformer import check_heads


class TrainingError(RuntimeError):
    """Training stopped (a NaN loss); the last good checkpoint is kept."""


@dataclass(frozen=True)
class TrainConfig:
    """Settings every trainer has."""

    env_id: str = "textgym/Reverse-v0"
    """The env to train on."""
    env_kwargs: dict = field(default_factory=dict)
    """Its arguments (e.g. ``{"shaping": True}``)."""
    num_envs: int = 256
    """Episodes played in parallel per iteration."""
    total_steps: int = 200_000
    """Env steps to train for (the sum of the episodes' lengths)."""
    learning_rate: float = 3e-4
    """Adam's step size."""
    anneal_lr: bool = False
    """Decay the step size linearly from ``learning_rate`` to 0 over ``total_steps`` (CleanRL's
    ``anneal_lr``): the last iterations take small steps, so a policy that has learned the task
    does not oscillate around it at the end of the run."""
    max_grad_norm: float = 1.0
    """Gradients are clipped to this global norm."""
    seed: int = 0
    """Seeds torch, the envs and the sampling."""
    device: str = "auto"
    """``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``."""
    n_layers: int = 2
    """Transformer blocks of a new policy."""
    n_heads: int = 4
    """Attention heads of a new policy."""
    d_model: int = 64
    """Width of a new policy."""
    eval_episodes: int = 256
    """Greedy episodes for the final evaluation."""
    init: str | None = None
    """A policy to start from: a textgym run, or a Hugging Face causal LM's directory (a
    ``config.json`` and weights). The env then tokenizes with the tokenizer saved there, unless
    ``env_kwargs`` names another. None: a new textgym policy of ``n_layers`` x ``d_model``."""
    value_model: str = "shared"
    """``"shared"``: the value head sits on the policy's last hidden states; ``"separate"``: on its own
    copy of the trunk (new policies and Hugging Face models)."""
    lora_r: int = 0
    """LoRA rank for a Hugging Face model (needs peft); 0 trains every weight."""
    lora_alpha: float = 16.0
    """LoRA's scaling numerator (the update is scaled by ``lora_alpha / lora_r``)."""
    lora_dropout: float = 0.0
    """Dropout on LoRA's input."""
    compile: bool = False
    """``torch.compile`` the policy's cached decode step (the rollouts) and its forward pass (the
    updates). Off by default: the first iterations pay the compilation (about 30 s on a CPU), and a
    CPU needs a C++ compiler."""
    bf16: bool = False
    """Run the policy's forward passes (rollouts and updates) under bfloat16 autocast; losses,
    log-probs and optimizer state stay float32. Off by default: not yet measured on a GPU."""
    dist_backend: str = "auto"
    """With torchrun: ``"auto"`` (NCCL on CUDA, gloo on CPU), ``"gloo"`` or ``"nccl"``."""
    dtype: str = "auto"
    """Weights of a Hugging Face model: ``"auto"`` (bfloat16 on a CUDA device that supports it, else
    float32), ``"float32"``, ``"bfloat16"`` or ``"float16"``."""

    RULES: ClassVar[dict[str, Check]] = {
        "env_id": Check(str), "env_kwargs": Check(dict), "num_envs": POSITIVE_INT, "total_steps": POSITIVE_INT,
        "learning_rate": POSITIVE, "anneal_lr": Check(bool), "max_grad_norm": POSITIVE, "seed": Check(int), "device": Check(str),
        "n_layers": POSITIVE_INT, "n_heads": POSITIVE_INT, "d_model": POSITIVE_INT, "eval_episodes": POSITIVE_INT,
        "init": Check(str, optional=True), "value_model": Check(str, choices=("shared", "separate")),
        "lora_r": Check(int, 0), "lora_alpha": POSITIVE, "lora_dropout": Check(float, 0, 1, high_open=True),
        "dtype": Check(str, choices=("auto", "float32", "bfloat16", "float16")),
        "dist_backend": Check(str, choices=("auto", "gloo", "nccl")), "bf16": Check(bool), "compile": Check(bool),
    }
    """Every field's type and range (see :mod:`textgym.config`); subclasses add theirs."""

    def __post_init__(self) -> None:
        check_fields(self)
        check_heads(self.n_heads, self.d_model)
        if self.lora_r and self.init is None:
            raise ValueError("lora_r > 0 trains LoRA adapters on a Hugging Face model: set init to its directory "
                             "(textgym train ... --init DIR)")
        if self.init is not None and "tokenizer" not in self.env_kwargs:
            tokenizer = tokenizer_dir(self.init)  # a model's env tokenizes with the model's tokenizer
            if tokenizer is not None:
                object.__setattr__(self, "env_kwargs", {**self.env_kwargs, "tokenizer": str(tokenizer)})

    def check_minibatches(self, num_minibatches: int) -> None:
        """A ValueError unless ``num_minibatches`` divides ``num_envs`` (for trainers whose
        minibatches must hold the same number of whole episodes)."""
        if self.num_envs % num_minibatches:
            raise ValueError(f"num_minibatches={num_minibatches} must divide num_envs={self.num_envs} "
                             "(every minibatch holds the same number of whole episodes)")

    def policy_options(self) -> dict[str, Any]:
        """The options of :func:`textgym.policies.load_policy` for the model in ``init``."""
        return {"value_model": self.value_model, "lora_r": self.lora_r, "lora_alpha": self.lora_alpha,
                "lora_dropout": self.lora_dropout, "dtype": self.dtype}


@dataclass(frozen=True)
class KLConfig:
    """The KL penalty to a frozen reference policy, shared by PPO, REINFORCE and GRPO.

    The reference is the policy a run starts from (after SFT, the SFT policy), frozen. Each step's
    ``kl_penalty(logprob, ref_logprob)`` (see :func:`textgym.agents.losses.kl_penalty`) is
    subtracted from the reward by PPO and REINFORCE (Ziegler et al., 2019) and added to the loss by
    GRPO (Shao et al., 2024), each times ``kl_coef``.
    """

    kl_coef: float = 0.0
    """Weight of the penalty; 0 turns the reference off (no copy of the policy is kept)."""
    kl_estimator: str = "k1"
    """``"k1"`` or ``"k3"`` (see :func:`textgym.agents.losses.kl_penalty`)."""

    RULES: ClassVar[dict[str, Check]] = {"kl_coef": NON_NEGATIVE, "kl_estimator": Check(str, choices=("k1", "k3"))}


def frozen_reference(policy: nn.Module, cfg: KLConfig) -> nn.Module | None:
    """The KL reference: ``policy`` as it is now, frozen (``policy.frozen_reference()``: a copy, or
    for LoRA the model with its adapters off), or None when ``cfg.kl_coef`` is 0."""
    return policy.frozen_reference() if cfg.kl_coef > 0 else None


@torch.no_grad()
def reference_logprobs(reference: nn.Module, rollout: Rollout, temperature: float = 1.0) -> torch.Tensor:
    """The reference's log-probs ``(B, T)`` of a rollout's actions at the rollout's sampling
    ``temperature``, one forward pass per episode."""
    return evaluate_logprobs(reference, rollout, temperature)[0]


def kl_to_reference(reference: nn.Module | None, rollout: Rollout, cfg: KLConfig) -> torch.Tensor:
    """The per-step KL estimate ``(B, T)`` of the acting policy to the reference (0 without one),
    both at the rollout's sampling temperature (``cfg.temperature``)."""
    if reference is None:
        return torch.zeros_like(rollout.rewards)
    ref = reference_logprobs(reference, rollout, getattr(cfg, "temperature", 1.0))
    return kl_penalty(rollout.logprobs, ref, cfg.kl_estimator) * rollout.mask


def critic_parameters(policy: nn.Module) -> set[int]:
    """The ids of the parameters of ``policy``'s value function (``policy.value_parameters()``:
    the value head, and the value trunk of a separate value model), for a critic warm-up.

    Raises:
        TypeError: the policy does not say which parameters are its value function's.
    """
    if not hasattr(policy, "value_parameters"):
        raise TypeError(f"critic_warmup needs the policy to say which parameters are its value function's: "
                        f"{type(policy).__name__} has no value_parameters() method")
    return {id(p) for p in policy.value_parameters()}


def resolve_device(name: str) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; a clear error for an unavailable or unknown device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ValueError(f"unknown device {name!r}: expected 'auto', 'cpu' or 'cuda'")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but CUDA is not available; use 'auto' or 'cpu'")
    return torch.device(name)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, numpy and torch; return a generator for sampling actions."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def initial_policy(cfg: TrainConfig, view: SequenceView, device: torch.device) -> nn.Module:
    """The policy a run starts from: loaded from ``cfg.init``, or a new textgym policy sized for the env."""
    if cfg.init is not None:
        return load_policy(cfg.init, device, **cfg.policy_options())
    return make_policy(**view.policy_spec(), n_layers=cfg.n_layers, n_heads=cfg.n_heads, d_model=cfg.d_model,
                       value_model=cfg.value_model)


class Setup(NamedTuple):
    """What a trainer starts from (see :func:`setup`)."""

    device: torch.device
    envs: Any
    """This rank's vector env (a textgym ``TorchVectorEnv``)."""
    view: SequenceView
    """How the policy reads the envs' observations."""
    policy: nn.Module
    generator: torch.Generator
    """The sampling generator of the rollouts."""
    ranks: Ranks
    """This process's place in a torchrun group (one rank without torchrun)."""


def setup(cfg: TrainConfig, policy: nn.Module | None) -> Setup:
    """Device, envs, view, policy (given, else :func:`initial_policy`; moved to the device), the
    sampling generator and this process's :class:`~textgym.distributed.Ranks` (one rank
    without torchrun; with it, this rank's share of the envs and rank 0's weights)."""
    device = resolve_device(cfg.device)
    ranks = init_ranks(cfg.dist_backend, cfg.num_envs, device)
    device = rank_device(device, ranks)
    seed_everything(cfg.seed)  # the same on every rank: the same new policy, the same minibatch order
    sampling_seed = cfg.seed + 1_000_003 * ranks.rank
    generator = torch.Generator(device=device if device.type == "cuda" else "cpu").manual_seed(sampling_seed)
    envs = make_envs(cfg.env_id, ranks.envs_per_rank(cfg.num_envs), device, **cfg.env_kwargs)
    view = SequenceView(envs)
    if policy is None:
        policy = initial_policy(cfg, view, device)
    view.check(policy)
    policy = policy.to(device)
    ranks.broadcast_parameters(policy)
    return Setup(device, envs, view, policy, generator, ranks)


def compiled(cfg: TrainConfig, policy: nn.Module) -> tuple[Any, Any]:
    """``(score, step)``: what the updates call to score whole episodes and what the rollouts call
    to step the KV cache; with ``cfg.compile`` their ``torch.compile``'d forms (the same
    parameters: the policy itself is what is saved)."""
    if not cfg.compile:
        return policy, policy.step
    return torch.compile(policy), torch.compile(policy.step, dynamic=True)  # the cache's fill level varies


def precision(cfg: TrainConfig, device: torch.device):
    """The autocast context of a run: bfloat16 forward passes with ``cfg.bf16``, else nothing changes."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16)


class RunStart(NamedTuple):
    """A run's checkpointer, where it stands, and its logger (see :func:`start_run`)."""

    checkpointer: Checkpointer
    run: Progress
    logger: RunLogger


def start_run(name: str, cfg: TrainConfig, policy: nn.Module, optimizer: torch.optim.Optimizer,
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
    import textgym

    write_json(out / "config.json", {"algo": algo, "env_id": cfg.env_id, "env_kwargs": cfg.env_kwargs,
                                     "init": cfg.init, "config": config_dict(cfg), "version": textgym.__version__,
                                     "cwd": os.getcwd(), **extra})


TOKENIZER_DIR = "tokenizer"
"""Where a run keeps its env's tokenizer (see :func:`textgym.tokenizers.save_tokenizer`)."""


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


def anneal(optimizer: torch.optim.Optimizer, cfg: TrainConfig, env_steps: int) -> None:
    """With ``cfg.anneal_lr``, set the step size for the iteration that starts after ``env_steps``:
    ``learning_rate * (1 - env_steps / total_steps)``. A function of the run's progress alone, so a
    resumed run takes the same steps."""
    if cfg.anneal_lr:
        for group in optimizer.param_groups:
            group["lr"] = cfg.learning_rate * max(0.0, 1.0 - env_steps / cfg.total_steps)


def minibatches(num_envs: int, num_minibatches: int, device: torch.device) -> Iterator[torch.Tensor | slice]:
    """The episodes of each minibatch of one pass over a batch: a fresh random split into
    ``num_minibatches`` parts of ``num_envs // num_minibatches`` (the whole batch when there is one)."""
    if num_minibatches == 1:
        yield slice(None)
        return
    perm = torch.randperm(num_envs, device=device)
    size = max(1, num_envs // num_minibatches)
    for lo in range(0, num_envs, size):
        yield perm[lo : lo + size]


def gradient_step(loss: torch.Tensor, policy: nn.Module, optimizer: torch.optim.Optimizer, ranks, max_grad_norm: float,
                  only: set[int] | None = None) -> None:
    """One optimizer step on ``loss``: the gradients averaged over the ranks (one all-reduce when
    there are several) and clipped to ``max_grad_norm``. With ``only`` (ids of parameters), every
    other parameter is left without a gradient, which Adam skips: it stays exactly as it is."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    ranks.average_gradients(policy)
    if only is not None:
        for p in policy.parameters():
            if id(p) not in only:
                p.grad = None
    torch.nn.utils.clip_grad_norm_(policy.parameters(), max_grad_norm)
    optimizer.step()


def check_finite(iteration: int, **values: torch.Tensor) -> None:
    """Raise :class:`TrainingError` naming the iteration and every value that is NaN or infinite (one device sync)."""
    finite = torch.stack([torch.isfinite(v).all() for v in values.values()]).tolist()
    bad = [name for name, ok in zip(values, finite) if not ok]
    if bad:
        raise TrainingError(f"iteration {iteration}: {', '.join(bad)} became NaN or infinite; training stopped")


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
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("textgym: matplotlib is not installed, so no learning curve PNG: pip install matplotlib")
        return
    steps = [h["env_steps"] for h in history]
    panels = [("mean_return", "mean return per episode")]
    if "success_rate" in history[0]:
        panels.append(("success_rate", "success rate"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5), squeeze=False)
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
    plt.close(fig)


def finish(cfg: TrainConfig, policy: nn.Module, logger: RunLogger, checkpointer: Checkpointer, run: Progress,
           device: torch.device):
    """Save the final policy and training state (when there is a run directory) and evaluate greedily."""
    from textgym.agents.evaluate import TrainResult, evaluate_policy

    checkpointer.save(run)
    checkpointer.unlock()
    evaluation = evaluate_policy(policy, cfg.env_id, cfg.env_kwargs, cfg.eval_episodes, device, seed=cfg.seed + 1)
    return TrainResult(policy, logger.history, evaluation)
