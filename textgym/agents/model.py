"""The policy/value network: a small decoder-only transformer with a KV cache.

It reads an episode as a sequence that only grows (the prompt, then what the agent and the env
write; for GuessNumber-v0 one feature vector per guess) and predicts, at every position, the
logits of the next action and the value of the state. Generation with the KV cache appends the
new positions of each step, so an episode of ``T`` tokens costs ``T`` single-step forwards.

The structure follows nanoGPT's ``model.py``: pre-norm blocks, fused attention
(``scaled_dot_product_attention``), learned positions, tied input/output embeddings.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class PolicyConfig:
    """Hyperparameters of :class:`Policy`."""

    vocab_size: int
    """Token ids the model reads (0 when it reads feature vectors)."""
    n_actions: int
    """Size of the policy head: the vocabulary for token envs, the numbers for GuessNumber-v0."""
    max_len: int
    """Longest sequence: the env's observation length."""
    n_features: int = 0
    """When > 0, each position is a feature vector of this size, projected instead of embedded."""
    n_layers: int = 2
    """Transformer blocks."""
    n_heads: int = 4
    """Attention heads; ``d_model`` must be divisible by it."""
    d_model: int = 64
    """Width of the residual stream."""
    dropout: float = 0.0
    """Dropout on attention and residual outputs (0 for RL: log-probs must be reproducible)."""
    separate_value: bool = False
    """Give the value head its own trunk (default False: one shared trunk, two heads)."""

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_features", "n_actions", "max_len", "n_layers", "n_heads", "d_model"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name in ("vocab_size", "n_features") else 1):
                raise ValueError(f"{name} must be a {'non-negative' if name in ('vocab_size', 'n_features') else 'positive'} "
                                 f"integer, got {value!r}")
        if not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be a number in [0, 1), got {self.dropout!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if self.n_features == 0 and self.vocab_size < 1:
            raise ValueError("vocab_size must be positive when the model reads tokens")


class KVCache:
    """Keys and values of every layer for a batch: ``(B, H, slots, head_dim)`` each, allocated once."""

    def __init__(self, batch: int, n_layers: int, n_heads: int, head_dim: int, slots: int, device, dtype) -> None:
        shape = (batch, n_heads, slots, head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.slots = slots


class SelfAttention(nn.Module):
    def __init__(self, cfg: PolicyConfig) -> None:
        super().__init__()
        self.n_heads, self.dropout = cfg.n_heads, cfg.dropout
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor] | None = None,
                pos: torch.Tensor | None = None, upto: int | None = None) -> torch.Tensor:
        B, W, C = x.shape
        q, k, v = self.qkv(x).view(B, W, 3, self.n_heads, C // self.n_heads).permute(2, 0, 3, 1, 4)  # 3 x (B, H, W, hd)
        if cache is None:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        else:  # write this chunk at its positions, attend to the slots filled so far
            K, V = cache
            index = pos[:, None, :, None].expand_as(k)
            K.scatter_(2, index, k)
            V.scatter_(2, index, v)
            # Written out rather than fused: for a few queries against a strided slice of the
            # cache, batched matmuls cost what the sequence costs, where the fused kernel copies.
            att = (q @ K[:, :, :upto].transpose(-2, -1)) * (1.0 / math.sqrt(k.shape[-1]))  # (B, H, W, upto)
            att = (att + mask).softmax(dim=-1)  # mask: additive, 0 or -inf
            y = att @ V[:, :, :upto]  # (B, H, W, hd)
        return self.proj(y.transpose(1, 2).reshape(B, W, C))  # (B, W, C)


class Block(nn.Module):
    def __init__(self, cfg: PolicyConfig) -> None:
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.attn = SelfAttention(cfg)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, 4 * cfg.d_model), nn.GELU(), nn.Linear(4 * cfg.d_model, cfg.d_model))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, mask, cache=None, pos=None, upto=None):
        x = x + self.drop(self.attn(self.ln_1(x), mask, cache, pos, upto))
        return x + self.drop(self.mlp(self.ln_2(x)))


class Trunk(nn.Module):
    """Input embedding, positions, blocks, final norm: ``(B, W)`` ids or ``(B, W, F)`` features → ``(B, W, C)``."""

    def __init__(self, cfg: PolicyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Linear(cfg.n_features, cfg.d_model) if cfg.n_features else nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.wpe = nn.Embedding(cfg.max_len, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)

    def forward(self, inputs, pos, mask, cache: KVCache | None = None, upto: int | None = None):
        x = self.embed(inputs) + self.wpe(pos.clamp(max=self.cfg.max_len - 1))  # (B, W, C)
        for i, block in enumerate(self.blocks):
            x = block(x, mask, None if cache is None else (cache.k[i], cache.v[i]), pos, upto)
        return self.ln_f(x)


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
        self.trunk = Trunk(cfg)
        self.value_trunk = Trunk(cfg) if cfg.separate_value else None
        self.policy_head = nn.Linear(cfg.d_model, cfg.n_actions, bias=False)
        self.value_head = nn.Linear(cfg.d_model, 1)
        if not cfg.n_features and cfg.n_actions == cfg.vocab_size:
            self.policy_head.weight = self.trunk.embed.weight  # tied embeddings, as in GPT-2
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # scaled init of residual projections (GPT-2)
            if name.endswith("proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layers))
        nn.init.zeros_(self.value_head.weight)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def _heads(self, h: torch.Tensor, hv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.policy_head(h), self.value_head(hv).squeeze(-1)

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(B, L, n_actions)`` and values ``(B, L)`` at every position of ``inputs``.

        ``inputs`` are ids ``(B, L)`` or features ``(B, L, F)``, right-padded: causal attention
        never lets a real position see the padding after it.
        """
        L = inputs.shape[1]
        pos = torch.arange(L, device=inputs.device).expand(inputs.shape[0], L)
        mask = torch.ones(L, L, dtype=torch.bool, device=inputs.device).tril()  # (L, L) causal
        h = self.trunk(inputs, pos, mask)
        hv = h if self.value_trunk is None else self.value_trunk(inputs, pos, mask)
        return self._heads(h, hv)

    def new_cache(self, batch: int, slack: int = 1) -> tuple[KVCache, KVCache | None]:
        """Empty caches for ``batch`` sequences; ``slack`` spare slots take chunk positions past the end."""
        cfg, p = self.cfg, next(self.parameters())
        make = lambda: KVCache(batch, cfg.n_layers, cfg.n_heads, cfg.d_model // cfg.n_heads,  # noqa: E731
                               cfg.max_len + slack, p.device, p.dtype)
        return make(), (make() if self.value_trunk is not None else None)

    def step(self, inputs: torch.Tensor, pos: torch.Tensor, cache: tuple[KVCache, KVCache | None],
             upto: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
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

        Returns:
            ``(logits (B, W, n_actions), values (B, W))``.
        """
        kv, kv_value = cache
        upto = kv.slots if upto is None else min(upto, kv.slots)
        pos = pos.clamp(max=kv.slots - 1)
        slots = torch.arange(upto, device=pos.device)
        visible = (slots <= pos[:, :, None])[:, None]  # (B, 1, W, upto): causal over the cached slots
        mask = torch.zeros(visible.shape, device=pos.device).masked_fill_(~visible, float("-inf"))  # additive, once per step
        h = self.trunk(inputs, pos, mask, kv, upto)
        hv = h if self.value_trunk is None else self.value_trunk(inputs, pos, mask, kv_value, upto)
        return self._heads(h, hv)

    # -- checkpoints ---------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike, extra: dict | None = None) -> None:
        """Write ``policy.safetensors`` and ``policy.json`` (the config) into ``directory``.

        Each file is written to a temporary file first and moved into place, so an interrupted
        save never leaves a half-written checkpoint where a good one was.
        """
        from safetensors.torch import save_model

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"policy": asdict(self.cfg), **(extra or {})}
        with tempfile.NamedTemporaryFile("w", dir=directory, suffix=".tmp", delete=False) as f:
            json.dump(meta, f, indent=2)
        os.replace(f.name, directory / "policy.json")
        fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
        os.close(fd)
        save_model(self, tmp)
        os.replace(tmp, directory / "policy.safetensors")

    @classmethod
    def load(cls, directory: str | os.PathLike, device: str | torch.device = "cpu") -> Policy:
        """Load a policy saved by :meth:`save`.

        Raises:
            FileNotFoundError: no checkpoint in ``directory``.
            ValueError: the config is invalid, the file's shapes do not match it (checked before
                anything is built), or a weight is not finite.
        """
        from textgym.checkpoints import load_checked

        directory = Path(directory)
        weights, config = directory / "policy.safetensors", directory / "policy.json"
        for path in (config, weights):
            if not path.is_file():
                raise FileNotFoundError(f"no checkpoint in {directory}: {path.name} is missing")
        try:
            cfg = PolicyConfig(**json.loads(config.read_text())["policy"])
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{config} is not a valid policy config: {e}") from None
        return load_checked(lambda: cls(cfg), weights, device)


def sample(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, greedy: bool = False,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Actions from logits ``(B, A)``: greedy, or sampled at ``temperature`` from the ``top_k`` best."""
    if greedy:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator).squeeze(-1)
