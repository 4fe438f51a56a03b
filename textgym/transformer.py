"""A small decoder-only transformer with a KV cache, in one file with no textgym imports.

textgym's policy (:class:`textgym.policies.Policy`) and its learned reward model
(:class:`textgym.rewards.model.RewardModel`) are both heads on this trunk. It follows nanoGPT's
``model.py``: pre-norm blocks, fused attention (``scaled_dot_product_attention``), learned
positions, GPT-2's initialisation.

It reads right-padded sequences of token ids ``(B, L)``, or of feature vectors ``(B, L, F)``
when ``n_features > 0``, and returns the final hidden states ``(B, L, d_model)``. Two ways to run:

* :meth:`Transformer.forward` without a cache scores whole sequences with causal attention
  (``scaled_dot_product_attention``'s own causal kernel, which needs no mask tensor);
* with a :class:`KVCache`, a chunk of new positions is written into the cache at each sequence's
  own positions (:func:`cache_mask` lets it attend to the slots filled so far), so generating
  ``T`` tokens costs ``T`` single-position forwards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def check_heads(n_heads: int, d_model: int) -> None:
    """The width must split evenly into the heads: a ValueError naming both otherwise."""
    if d_model % n_heads:
        raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")


@dataclass(frozen=True)
class TransformerConfig:
    """The shape of a :class:`Transformer` (nanoGPT's ``GPTConfig``), checked once here; the policy's
    and the reward model's configs extend it."""

    vocab_size: int
    """Token ids it reads (0 when it reads feature vectors)."""
    max_len: int
    """Positions it has embeddings for; later positions reuse the last one."""
    n_layers: int = 2
    """Transformer blocks."""
    n_heads: int = 4
    """Attention heads; ``d_model`` must be divisible by it."""
    d_model: int = 64
    """Width of the residual stream."""
    n_features: int = 0
    """When > 0, each position is a feature vector of this size, projected instead of embedded."""
    dropout: float = 0.0
    """Dropout on attention and residual outputs (0 for RL: log-probs must be reproducible)."""

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_features", "max_len", "n_layers", "n_heads", "d_model"):
            value, least = getattr(self, name), 0 if name in ("vocab_size", "n_features") else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be a {'non-negative' if least == 0 else 'positive'} integer, got {value!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be a number in [0, 1), got {self.dropout!r}")
        check_heads(self.n_heads, self.d_model)
        if self.n_features == 0 and self.vocab_size < 1:
            raise ValueError("vocab_size must be positive when the model reads tokens")


class KVCache:
    """Keys and values of every layer for a batch: ``(B, H, slots, head_dim)`` each, allocated once."""

    def __init__(self, batch: int, n_layers: int, n_heads: int, head_dim: int, slots: int, device, dtype) -> None:
        shape = (batch, n_heads, slots, head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.slots = slots


def cache_mask(pos: torch.Tensor, upto: int) -> torch.Tensor:
    """Additive mask ``(B, 1, W, upto)`` for a chunk at positions ``pos (B, W)``: each position sees
    the cache slots at or before it (0), and nothing after (-inf)."""
    slots = torch.arange(upto, device=pos.device)
    visible = (slots <= pos[:, :, None])[:, None]
    return torch.zeros(visible.shape, device=pos.device).masked_fill_(~visible, float("-inf"))


class SelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.proj.residual = True  # GPT-2 scales the init of the projections into the residual stream

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, cache: tuple[torch.Tensor, torch.Tensor] | None = None,
                pos: torch.Tensor | None = None, upto: int | None = None) -> torch.Tensor:
        B, W, C = x.shape
        q, k, v = self.qkv(x).view(B, W, 3, self.n_heads, C // self.n_heads).permute(2, 0, 3, 1, 4)  # 3 x (B, H, W, hd)
        if cache is None:  # whole sequences: position i sees positions <= i
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        else:  # write this chunk at its positions, attend to the slots filled so far
            K, V = cache
            index = pos[:, None, :, None].expand_as(k)
            K.scatter_(2, index, k.to(K.dtype))  # under autocast the chunk may be bfloat16
            V.scatter_(2, index, v.to(V.dtype))
            # Written out rather than fused: for a few queries against a strided slice of the
            # cache, batched matmuls cost what the sequence costs, where the fused kernel copies.
            att = (q @ K[:, :, :upto].transpose(-2, -1)) * (1.0 / math.sqrt(k.shape[-1]))  # (B, H, W, upto)
            att = (att + mask).softmax(dim=-1)  # mask: additive, 0 or -inf
            y = att @ V[:, :, :upto]  # (B, H, W, hd)
        return self.proj(y.transpose(1, 2).reshape(B, W, C))  # (B, W, C)


class Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, n_heads, dropout)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))
        self.mlp[2].residual = True
        self.drop = nn.Dropout(dropout)

    def forward(self, x, mask=None, cache=None, pos=None, upto=None):
        x = x + self.drop(self.attn(self.ln_1(x), mask, cache, pos, upto))
        return x + self.drop(self.mlp(self.ln_2(x)))


class Transformer(nn.Module):
    """Input embedding, positions, blocks, final norm: ``(B, W)`` ids or ``(B, W, F)`` features → ``(B, W, C)``.

    Args:
        cfg: its :class:`TransformerConfig` (or a config that extends it).
    """

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.max_len, self.n_layers, self.n_heads, self.d_model = cfg.max_len, cfg.n_layers, cfg.n_heads, cfg.d_model
        d_model = cfg.d_model
        self.embed = nn.Linear(cfg.n_features, d_model) if cfg.n_features else nn.Embedding(cfg.vocab_size, d_model)
        self.wpe = nn.Embedding(cfg.max_len, d_model)
        self.blocks = nn.ModuleList(Block(d_model, cfg.n_heads, cfg.dropout) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(d_model)

    def forward(self, inputs: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor | None = None, cache: KVCache | None = None,
                upto: int | None = None) -> torch.Tensor:
        """Hidden states ``(B, W, C)``. Without ``cache``, ``inputs`` are whole sequences and attention
        is causal; with one, they are a chunk at positions ``pos``, and ``mask`` (from
        :func:`cache_mask`) says which of the first ``upto`` cache slots each position sees."""
        x = self.embed(inputs) + self.wpe(pos.clamp(max=self.max_len - 1))  # (B, W, C)
        for i, block in enumerate(self.blocks):
            x = block(x, mask, None if cache is None else (cache.k[i], cache.v[i]), pos, upto)
        return self.ln_f(x)

    def new_cache(self, batch: int, slots: int, device, dtype) -> KVCache:
        """An empty :class:`KVCache` of ``slots`` positions for ``batch`` sequences."""
        return KVCache(batch, self.n_layers, self.n_heads, self.d_model // self.n_heads, slots, device, dtype)


def _init_module(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)


def init_weights(model: nn.Module, n_layers: int | None = None) -> None:
    """GPT-2's initialisation: normal(0, 0.02) weights, zero biases and, when ``n_layers`` is given,
    residual projections scaled by ``1 / sqrt(2 * n_layers)``."""
    model.apply(_init_module)
    if n_layers is None:
        return
    for module in model.modules():
        if getattr(module, "residual", False):  # marked by the blocks that own them
            nn.init.normal_(module.weight, mean=0.0, std=0.02 / math.sqrt(2 * n_layers))
