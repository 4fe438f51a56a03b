"""The settings every trainer shares: :class:`TrainConfig` (env, budget, device, model) and
:class:`KLConfig` (the penalty to a frozen reference). Each trainer's config extends them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from textgym.config import NON_NEGATIVE, POSITIVE, POSITIVE_INT, Check, check_fields
from textgym.policies import tokenizer_dir
from textgym.transformer import check_heads


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
    curriculum: dict | None = None
    """Move the env's difficulty to keep the training success in a band, from its easiest level up
    to the difficulty it was made with: ``{"low": 0.2, "high": 0.8, "episodes": 256, "window": 1}``
    (any of them, ``{}`` for these defaults; see :mod:`textgym.envs.curriculum`). Needs an env with a
    difficulty knob; the log's ``difficulty`` column follows it. None: no curriculum."""

    RULES: ClassVar[dict[str, Check]] = {
        "env_id": Check(str), "env_kwargs": Check(dict), "num_envs": POSITIVE_INT, "total_steps": POSITIVE_INT,
        "learning_rate": POSITIVE, "anneal_lr": Check(bool), "max_grad_norm": POSITIVE, "seed": Check(int), "device": Check(str),
        "n_layers": POSITIVE_INT, "n_heads": POSITIVE_INT, "d_model": POSITIVE_INT, "eval_episodes": POSITIVE_INT,
        "init": Check(str, optional=True), "value_model": Check(str, choices=("shared", "separate")),
        "lora_r": Check(int, 0), "lora_alpha": POSITIVE, "lora_dropout": Check(float, 0, 1, high_open=True),
        "dtype": Check(str, choices=("auto", "float32", "bfloat16", "float16")),
        "dist_backend": Check(str, choices=("auto", "gloo", "nccl")), "bf16": Check(bool), "compile": Check(bool),
        "curriculum": Check(dict, optional=True),
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

    def check_group_minibatches(self, num_minibatches: int, group_size: int, name: str) -> None:
        """A ValueError unless ``num_minibatches`` divides the number of groups of ``group_size``
        (the field ``name``), for minibatches that keep each group whole."""
        groups = self.num_envs // group_size
        if groups % num_minibatches:
            raise ValueError(f"group_minibatches=True keeps groups whole, so num_minibatches must divide the number of "
                             f"groups (num_envs / {name} = {groups}), got num_minibatches={num_minibatches}")

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


