"""textgym's own policy/value network: a small decoder-only transformer with a KV cache.

It reads an episode as a sequence that only grows (the prompt, then what the agent and the env
write; for GuessNumber-v0 one feature vector per guess) and predicts, at every position, the
logits of the next action and the value of the state. Generation with the KV cache appends the
new positions of each step, so an episode of ``T`` tokens costs ``T`` single-step forwards.

The trunk is :class:`textgym.transformer.Transformer` (nanoGPT's structure); the policy head is
tied to the input embeddings, as in GPT-2. It implements the trainer -> policy protocol (see
:mod:`textgym.policies`).
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from textgym.checkpoints import checkpoint_files, load_checked
from textgym.files import replacing, write_json
from textgym.transformer import (
    KVCache,
    Transformer,
    TransformerConfig,
    cache_mask,
    init_weights,
)


@dataclass(frozen=True, kw_only=True)
class PolicyConfig(TransformerConfig):
    """Hyperparameters of :class:`Policy`: its trunk's :class:`~textgym.transformer.TransformerConfig`
    (``vocab_size``, ``max_len``, ``n_layers``, ``n_heads``, ``d_model``, ``n_features``,
    ``dropout``) and its heads."""

    n_actions: int
    """Size of the policy head: the vocabulary for token envs, the numbers for GuessNumber-v0."""
    separate_value: bool = False
    """Give the value head its own trunk (default False: one shared trunk, two heads)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.n_actions, bool) or not isinstance(self.n_actions, int) or self.n_actions < 1:
            raise ValueError(f"n_actions must be a positive integer, got {self.n_actions!r}")


class Policy(nn.Module):
    """Policy and value heads on a causal transformer.

    * :meth:`forward` scores every position of whole sequences (for the updates);
    * :meth:`new_cache` and :meth:`step` generate with a KV cache (for the rollouts).

    Args:
        cfg: the :class:`PolicyConfig`.
    """

    def __init__(self, cfg: PolicyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        # The sizes the trainer -> policy protocol reads: token ids read (0 when it reads feature
        # vectors), actions, longest sequence, features per position (0: it reads token ids).
        self.vocab_size, self.n_actions, self.max_len = cfg.vocab_size, cfg.n_actions, cfg.max_len
        self.n_features = cfg.n_features
        self.trunk = Transformer(cfg)
        self.value_trunk = Transformer(cfg) if cfg.separate_value else None
        self.policy_head = nn.Linear(cfg.d_model, cfg.n_actions, bias=False)
        self.value_head = nn.Linear(cfg.d_model, 1)
        if not cfg.n_features and cfg.n_actions == cfg.vocab_size:
            self.policy_head.weight = self.trunk.embed.weight  # tied embeddings, as in GPT-2
        init_weights(self, cfg.n_layers)
        nn.init.zeros_(self.value_head.weight)

    # -- what the trainers read (the trainer -> policy protocol) --------------------------------
    def value_parameters(self) -> list[nn.Parameter]:
        """The value function's own parameters: the value head, and the value trunk when it has one
        (a critic warm-up trains these alone)."""
        return [*self.value_head.parameters(), *(self.value_trunk.parameters() if self.value_trunk is not None else ())]

    def frozen_reference(self) -> Policy:
        """A frozen copy: the KL reference of a run that starts from this policy."""
        return copy.deepcopy(self).eval().requires_grad_(False)

    def _heads(self, h: torch.Tensor, hv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.policy_head(h), self.value_head(hv).squeeze(-1)

    def forward(self, inputs: torch.Tensor, at: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(B, L, n_actions)`` and values ``(B, L)`` at every position of ``inputs``, or with
        ``at (B, T)`` at those positions only, ``(B, T, ...)``.

        ``inputs`` are ids ``(B, L)`` or features ``(B, L, F)``, right-padded: causal attention
        never lets a real position see the padding after it.
        """
        L = inputs.shape[1]
        pos = torch.arange(L, device=inputs.device).expand(inputs.shape[0], L)
        h = self.trunk(inputs, pos)
        hv = h if self.value_trunk is None else self.value_trunk(inputs, pos)
        if at is not None:
            h, hv = at_positions(h, at), at_positions(hv, at)
        return self._heads(h, hv)

    def new_cache(self, batch: int, slack: int = 1) -> tuple[KVCache, KVCache | None]:
        """Empty caches for ``batch`` sequences; ``slack`` spare slots take chunk positions past the end."""
        p = next(self.parameters())
        make = lambda: self.trunk.new_cache(batch, self.cfg.max_len + slack, p.device, p.dtype)  # noqa: E731
        return make(), (make() if self.value_trunk is not None else None)

    def select_cache(self, cache: tuple[KVCache, KVCache | None], index: torch.Tensor) -> tuple[KVCache, KVCache | None]:
        """The caches of the sequences ``index`` picks from ``cache`` (see the protocol)."""
        for kv in cache:
            if kv is not None:
                kv.k = [k[index] for k in kv.k]
                kv.v = [v[index] for v in kv.v]
        return cache

    def step(self, inputs: torch.Tensor, pos: torch.Tensor, cache: tuple[KVCache, KVCache | None],
             upto: int | None = None, last: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Append a chunk of positions to the cache; logits and values at those positions.

        Args:
            inputs: ``(B, W)`` ids or ``(B, W, F)`` features, the new positions of each sequence.
            pos: ``(B, W)`` their positions in the sequence. A position past a sequence's real end
                may hold anything: it is overwritten by the real token before any later position
                attends to it.
            cache: from :meth:`new_cache`.
            upto: attend only to the first ``upto`` slots (a bound on every real position + 1,
                known to the caller without a device sync), so a step costs attention over the
                sequence so far rather than over the whole context.
            last: ``(B,)`` one chunk index per sequence: the logits and values there only, as
                ``(B, 1, ...)`` (a prefill needs those of each prompt's last position).

        Returns:
            ``(logits (B, W, n_actions), values (B, W))``.
        """
        kv, kv_value = cache
        upto = kv.slots if upto is None else min(upto, kv.slots)
        pos = pos.clamp(max=kv.slots - 1)
        mask = cache_mask(pos, upto)  # (B, 1, W, upto), made once per step for every layer
        h = self.trunk(inputs, pos, mask, kv, upto)
        hv = h if self.value_trunk is None else self.value_trunk(inputs, pos, mask, kv_value, upto)
        if last is not None:
            h, hv = at_positions(h, last[:, None]), at_positions(hv, last[:, None])
        return self._heads(h, hv)

    # -- checkpoints ---------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike, extra: dict | None = None) -> None:
        """Write ``policy.safetensors`` and ``policy.json`` (the config) into ``directory``;
        :func:`textgym.policies.load_policy` (or :meth:`load`) reads them back.

        Each file is written to a temporary file first and moved into place, so an interrupted
        save never leaves a half-written checkpoint where a good one was.
        """
        from safetensors.torch import save_model

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"kind": "textgym", "policy": asdict(self.cfg), **(extra or {})}
        write_json(directory / "policy.json", meta)
        with replacing(directory / "policy.safetensors") as tmp:
            save_model(self, tmp)

    @classmethod
    def load(cls, directory: str | os.PathLike, device: str | torch.device = "cpu") -> Policy:
        """Load a policy saved by :meth:`save`.

        Raises:
            FileNotFoundError: no checkpoint in ``directory``.
            ValueError: the config is invalid, the file's shapes do not match it (checked before
                anything is built), or a weight is not finite.
        """
        config, weights = checkpoint_files(directory, ("policy.json", "policy.safetensors"), "checkpoint")
        try:
            cfg = PolicyConfig(**json.loads(config.read_text())["policy"])
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{config} is not a valid policy config: {e}") from None
        return load_checked(lambda: cls(cfg), weights, device)


def at_positions(h: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``h (B, L, C)`` at the positions ``index (B, T)`` of each sequence: ``(B, T, C)``."""
    return h.gather(1, index[..., None].expand(-1, -1, h.shape[-1]))
