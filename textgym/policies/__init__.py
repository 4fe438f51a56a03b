"""Policies: what a trainer asks of a policy, textgym's own transformer, and Hugging Face causal LMs.

**The trainer -> policy protocol.** textgym's trainers (``textgym.agents``) never name a model
class; they use any ``torch.nn.Module`` that has:

* ``vocab_size``, ``n_actions``, ``max_len``, ``n_features``: what it reads and writes. A policy
  fits an env when its actions and vocabulary are the env's, it reads the env's kind of positions
  (ids, or feature vectors of ``n_features``) and the env's longest observation fits in ``max_len``.
  Optionally ``eos_ids``: the ids that end a message for the model; the env's must be one of them.
* ``forward(inputs) -> (logits (B, L, n_actions), values (B, L))``: every position of right-padded
  whole sequences, ids ``(B, L)`` or features ``(B, L, F)`` (for the updates). Optionally
  ``forward(inputs, at=(B, T))``: at those positions only, ``(B, T, ...)``, which the updates ask
  for (the positions actions were read from: a prompt's are not projected onto the vocabulary).
  Optionally ``forward(inputs, at=, prefix=P)``: the first ``P`` positions of the rows are prompts
  that several rows may repeat (GRPO's groups); a policy may compute each distinct one once, with
  the same outputs and gradients.
* ``new_cache(batch, slack)`` and ``step(inputs, pos, cache, upto=None) -> (logits (B, W, n_actions),
  values (B, W))``: append a chunk of ``W`` positions to a KV cache, each sequence at its own
  positions ``pos (B, W)``; a position past a sequence's real end may hold anything, and is
  written again, with the real token, before any later position attends to it (for the rollouts).
  Optionally ``step(..., last=(B,))``: the logits and values at one chunk index per sequence only,
  ``(B, 1, ...)``: a rollout's prefill asks for each prompt's last position, and a large
  vocabulary is then projected once per prompt rather than once per prompt token.
* ``frozen_reference()``: a frozen policy that scores sequences as this one does now, the KL
  reference of a run (a copy, or for LoRA the same model with its adapters off).
* ``save(directory)``, read back by :func:`load_policy`.
* Optionally ``value_parameters()``: the value function's own parameters, which PPO's critic
  warm-up (``critic_warmup``) trains alone.
* Optionally ``select_cache(cache, index) -> cache``: the cache of the sequences ``index (B,)``
  picks from ``cache``'s (rows may repeat). A rollout whose prompts repeat (GRPO's groups,
  pass@k's samples) then reads each distinct prompt once and copies its cache to every sequence
  that starts with it.

Two classes implement it: :class:`Policy`, textgym's own small transformer, and :class:`HFPolicy`,
any ``transformers`` causal LM with a value head (optionally LoRA through ``peft``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from textgym.policies.native import Policy, PolicyConfig

POLICY_KINDS = ("textgym", "hf")
"""What a ``policy.json`` may name: textgym's own policy, or a Hugging Face causal LM."""


def make_policy(vocab_size: int, n_actions: int, max_len: int, n_features: int = 0, *, value_model: str = "shared",
                **kwargs: Any) -> Policy:
    """A new textgym :class:`Policy` for an env of this size (``SequenceView(envs).policy_spec()``);
    ``value_model="separate"`` gives the values their own trunk, ``kwargs`` set the rest of its
    :class:`PolicyConfig` (``n_layers``, ``n_heads``, ``d_model``, ...)."""
    kwargs.setdefault("separate_value", value_model == "separate")
    cfg = PolicyConfig(vocab_size=vocab_size, n_actions=n_actions, max_len=max_len, n_features=n_features, **kwargs)
    check_fits_in_memory(cfg)
    return Policy(cfg)


def physical_memory() -> int | None:
    """This machine's memory in bytes (None where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits_in_memory(cfg: PolicyConfig) -> None:
    """Refuse, before anything is built, a policy whose training would not fit in this machine's
    memory: about 16 bytes per parameter (float32 weights, gradients and Adam's two moments).

    Raises:
        ValueError: naming the sizes, the estimate and the memory.
    """
    d, trunks = cfg.d_model, 2 if cfg.separate_value else 1
    params = trunks * (cfg.n_layers * (12 * d * d + 13 * d) + (cfg.vocab_size + cfg.max_len + cfg.n_features) * d)
    params += d * (cfg.n_actions + 1)
    memory = physical_memory()
    if memory is not None and 16 * params > memory:
        raise ValueError(f"a policy of n_layers={cfg.n_layers}, d_model={d} for {cfg.max_len} positions has about "
                         f"{params / 1e6:,.0f}M parameters, and training it needs about {16 * params / 2**30:,.1f} GiB "
                         f"(weights, gradients and Adam's moments); this machine has {memory / 2**30:,.1f} GiB: "
                         "choose a smaller n_layers or d_model")


def is_hf_model_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a directory a ``transformers`` model was saved in (a ``config.json`` with a ``model_type``)."""
    config = Path(path) / "config.json"
    try:
        return config.is_file() and "model_type" in json.loads(config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError, TypeError):
        return False


def _kind(path: Path) -> str | None:
    """``"textgym"`` or ``"hf"`` for a saved policy in ``path``, ``"hf_model"`` for a bare HF model, else None."""
    meta = path / "policy.json"
    if meta.is_file():
        try:
            kind = json.loads(meta.read_text()).get("kind", "textgym")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
            raise ValueError(f"{meta} is not a textgym policy file: {e}") from None
        if kind not in POLICY_KINDS:
            raise ValueError(f"{meta} names policy kind {kind!r}: expected one of {list(POLICY_KINDS)}")
        return kind
    return "hf_model" if is_hf_model_dir(path) else None


def tokenizer_dir(path: str | os.PathLike) -> Path | None:
    """The directory of the ``transformers`` tokenizer that belongs with the policy in ``path``
    (a model directory, or a run of a Hugging Face policy), or None when there is none."""
    path = Path(path)
    for where in (path, path / "hf_model"):
        if (where / "tokenizer_config.json").is_file() or (where / "tokenizer.json").is_file():
            return where
    return None


def load_policy(path: str | os.PathLike, device: str | torch.device = "cpu", **options: Any) -> torch.nn.Module:
    """The policy saved in ``path``: a textgym run (either kind of policy) or a Hugging Face model directory.

    Args:
        path: a directory written by a policy's ``save`` (every ``textgym train`` run), or one that
            ``transformers.AutoModelForCausalLM.from_pretrained`` loads (a ``config.json`` and
            weights); a new value head is added to the latter.
        device: where to put it.
        **options: for Hugging Face models, :class:`HFPolicy`'s (``value_model``, ``lora_r``,
            ``lora_alpha``, ``lora_dropout``, ``lora_target_modules``, ``dtype``, ``n_actions``).

    Raises:
        FileNotFoundError: ``path`` holds neither a textgym run nor a Hugging Face model.
        ValueError: a corrupt or invalid checkpoint, or options that do not apply to it.
    """
    path = Path(path)
    if path.suffix.lower() == ".gguf" and path.is_file():
        raise ValueError(f"{path} is a GGUF file: turn it into a model directory once with textgym import-gguf {path} "
                         "--out DIR (textgym.policies.gguf.import_gguf), then load or --init DIR")
    kind = _kind(path) if path.is_dir() else None
    if kind is None:
        raise FileNotFoundError(
            f"{path} holds neither a textgym run (policy.json and policy.safetensors) nor a Hugging Face model "
            "(config.json and weights, as save_pretrained writes them)"
        )
    if kind == "textgym":
        if options.get("lora_r"):
            raise ValueError(f"lora_r={options['lora_r']} applies to Hugging Face models, but {path} holds a textgym "
                             "policy: LoRA needs --init DIR of a transformers model")
        return Policy.load(path, device)
    # here, not above: textgym.policies.hf imports this module, and needs transformers
    from textgym.policies.hf import HFPolicy

    if kind == "hf":
        return HFPolicy.load(path, device, **options)
    return HFPolicy.from_pretrained(path, device=device, **options)


def __getattr__(name: str) -> Any:
    if name == "HFPolicy":  # imported on first use: it needs transformers
        from textgym.policies.hf import HFPolicy

        return HFPolicy
    raise AttributeError(f"module 'textgym.policies' has no attribute {name!r}")


__all__ = ["HFPolicy", "Policy", "PolicyConfig", "is_hf_model_dir", "load_policy", "make_policy", "tokenizer_dir"]
