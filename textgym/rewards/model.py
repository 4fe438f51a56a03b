"""A learned reward model: a transformer that scores ``(prompt, completion)`` with one number.

It is a scalar head on textgym's transformer (:class:`textgym.transformer.Transformer`, the policy's trunk too)
on the last real token. It learns from preference pairs, with the Bradley–Terry loss
``-log σ(r_chosen - r_rejected - margin)`` and an optional reward-centering term, or from scored
examples (MSE; BCE when every score is 0 or 1). A trained model is saved as safetensors, a JSON
config and its tokenizer, and becomes a reward with
``textgym.rewards.make("reward_model", path=DIR)``.

Data files are JSONL, one object per line:

* preferences: ``{"prompt": ..., "chosen": ..., "rejected": ..., "margin": 0.5}`` (margin optional);
* scores: ``{"prompt": ..., "completion": ..., "score": 0.7}``.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from textgym.checkpoints import checkpoint_files, load_checked
from textgym.config import NON_NEGATIVE, POSITIVE, POSITIVE_INT, Check, check_fields
from textgym.distributed import init_ranks, rank_device
from textgym.files import replacing, write_json
from textgym.rewards.core import EpisodeBatch, Reward
from textgym.tasks import iter_jsonl
from textgym.tokenizers import CharTokenizer, HFTokenizer, Tokenizer, alphabet_of
from textgym.transformer import (
    Transformer,
    TransformerConfig,
    check_heads,
    init_weights,
)

# -- data ---------------------------------------------------------------------------------------


@dataclass
class RewardData:
    """Preference pairs or scored examples read from a JSONL file.

    Attributes:
        kind: ``"preferences"`` or ``"scores"``.
        rows: dicts with ``prompt`` and ``chosen``/``rejected``/``margin``, or ``completion``/``score``.
        skipped_identical: pairs whose chosen and rejected texts were the same (skipped).
        too_long: line numbers of rows longer than the context (skipped, see :func:`encode_rows`).
    """

    kind: str
    rows: list[dict[str, Any]]
    lines: list[int]
    skipped_identical: int = 0
    too_long: list[int] = field(default_factory=list)


def load_reward_data(path: str | os.PathLike) -> RewardData:
    """Read a preference or score JSONL file.

    Raises:
        ValueError: an empty file, a line that is not JSON or lacks a field, a NaN or non-number
            score, or a file mixing the two kinds; the message names the file and line.
    """
    rows, lines, kind, identical = [], [], None, 0
    for lineno, where, item in iter_jsonl(path):
        if not isinstance(item, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(item).__name__}")
        this = "preferences" if "chosen" in item or "rejected" in item else "scores"
        need = ("prompt", "chosen", "rejected") if this == "preferences" else ("prompt", "completion", "score")
        missing = [k for k in need if k not in item]
        if missing:
            raise ValueError(f"{where}: missing {missing}; expected keys {list(need)}")
        if kind is not None and this != kind:
            raise ValueError(f"{where}: a {this[:-1]} line in a file of {kind}; one file holds one kind")
        kind = this
        texts = [item[k] for k in need if k != "score"]
        if not all(isinstance(t, str) for t in texts):
            raise ValueError(f"{where}: {', '.join(k for k in need if k != 'score')} must be strings")
        for key in ("score", "margin"):
            if key in item:
                v = item[key]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise ValueError(f"{where}: {key} must be a finite number, got {v!r}")
        if this == "preferences" and item["chosen"] == item["rejected"]:
            identical += 1
            continue
        rows.append(item)
        lines.append(lineno)
    if kind is None:
        raise ValueError(f"{path}: no examples (the file is empty)")
    if identical:
        warnings.warn(f"{path}: skipped {identical} pairs whose chosen and rejected texts are identical", stacklevel=2)
    if not rows:
        raise ValueError(f"{path}: no usable pairs (all {identical} had identical chosen and rejected texts)")
    return RewardData(kind, rows, lines, identical)


def encode_rows(data: RewardData, tokenizer: Tokenizer, max_len: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Token ids of the data as padded tensors; rows longer than ``max_len`` are reported and skipped.

    Returns a dict with ``ids``/``lengths`` (scores) or ``chosen``/``chosen_len``/``rejected``/
    ``rejected_len``/``margin`` (preferences), and ``score`` for scores.
    """
    sides = ("chosen", "rejected") if data.kind == "preferences" else ("completion",)
    encoded: dict[str, list[list[int]]] = {s: [] for s in sides}
    keep, data.too_long = [], []
    for row, lineno in zip(data.rows, data.lines):
        prompt = tokenizer.encode(row["prompt"])
        seqs = [prompt + tokenizer.encode(row[s]) + [tokenizer.eos_id] for s in sides]
        if max(len(s) for s in seqs) > max_len:
            data.too_long.append(lineno)
            continue
        keep.append(row)
        for s, seq in zip(sides, seqs):
            encoded[s].append(seq)
    if data.too_long:
        warnings.warn(f"{len(data.too_long)} examples are longer than the context of {max_len} tokens and were "
                      f"skipped (lines {data.too_long[:10]}{'...' if len(data.too_long) > 10 else ''})", stacklevel=2)
    if not keep:
        raise ValueError(f"every example is longer than the context of {max_len} tokens")
    out: dict[str, torch.Tensor] = {}
    for s in sides:
        name = "ids" if s == "completion" else s
        ids = torch.full((len(keep), max_len), tokenizer.pad_id, dtype=torch.int64)
        for i, seq in enumerate(encoded[s]):
            ids[i, : len(seq)] = torch.tensor(seq)
        out[name] = ids.to(device)
        out[("lengths" if s == "completion" else f"{s}_len")] = torch.tensor([len(x) for x in encoded[s]], device=device)
    if data.kind == "preferences":
        out["margin"] = torch.tensor([float(r.get("margin", 0.0)) for r in keep], device=device)
    else:
        out["score"] = torch.tensor([float(r["score"]) for r in keep], device=device)
    return out


# -- the model ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RewardModelConfig(TransformerConfig):
    """Hyperparameters of :class:`RewardModel`: its trunk's (``max_len`` is the longest prompt +
    completion + eos, in tokens)."""


class RewardModel(nn.Module):
    """``r(prompt, completion)``: a causal transformer and a scalar head on the last real token."""

    def __init__(self, cfg: RewardModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.trunk = Transformer(cfg)
        self.head = nn.Linear(cfg.d_model, 1)
        init_weights(self)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Scores ``(B,)`` of right-padded sequences ``ids (B, L)`` of real lengths ``lengths``."""
        L = ids.shape[1]
        pos = torch.arange(L, device=ids.device).expand_as(ids)
        h = self.trunk(ids, pos)  # (B, L, C), causal
        last = h[torch.arange(len(ids), device=ids.device), lengths - 1]  # (B, C)
        return self.head(last).squeeze(-1)


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor, margin: torch.Tensor | None = None,
                       center_coef: float = 0.0) -> torch.Tensor:
    """``mean(-log σ(r_chosen - r_rejected - margin)) + center_coef * mean((r_chosen + r_rejected)^2)``.

    The centering term (Eisenstein et al., 2023; TRL's ``center_rewards_coefficient``) keeps the
    rewards near zero, which the preference loss alone leaves free.
    """
    diff = chosen - rejected - (margin if margin is not None else 0.0)
    loss = -F.logsigmoid(diff).mean()
    if center_coef:
        loss = loss + center_coef * ((chosen + rejected) ** 2).mean()
    return loss


# -- training and evaluation --------------------------------------------------------------------


@dataclass(frozen=True)
class RewardModelTrainConfig:
    """How to train a reward model."""

    epochs: int = 10
    """Passes over the training data."""
    batch_size: int = 64
    """Pairs (or scored examples) per step."""
    learning_rate: float = 3e-3
    """AdamW's peak step size: reached after ``warmup_steps``, then decayed to 0 on a cosine."""
    warmup_steps: int = 200
    """Steps of linear warmup."""
    center_coef: float = 0.0
    """Weight of the reward-centering term (preferences)."""
    eval_fraction: float = 0.1
    """Fraction of the data held out for evaluation."""
    seed: int = 0
    """Seeds the initialisation, the held-out split and the batches."""
    n_layers: int = 2
    """Transformer blocks."""
    n_heads: int = 4
    """Attention heads."""
    d_model: int = 64
    """Width."""
    max_len: int | None = None
    """Context; default: the longest example. ``textgym train-rm --env`` sets it to what the env lets a policy write."""

    RULES: ClassVar[dict[str, Check]] = {
        "epochs": POSITIVE_INT, "batch_size": POSITIVE_INT, "learning_rate": POSITIVE, "warmup_steps": Check(int, 0),
        "center_coef": NON_NEGATIVE, "eval_fraction": Check(float, 0, 1, high_open=True), "seed": Check(int),
        "n_layers": POSITIVE_INT, "n_heads": POSITIVE_INT, "d_model": POSITIVE_INT, "max_len": Check(int, 2, optional=True),
    }

    def __post_init__(self) -> None:
        check_fields(self)
        check_heads(self.n_heads, self.d_model)


def _scores(model: RewardModel, enc: dict[str, torch.Tensor], idx: torch.Tensor, kind: str) -> tuple[torch.Tensor, ...]:
    def score(ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        width = int(lengths.max())  # the batch's longest sequence; the padding after it is never read
        return model(ids[:, :width], lengths)

    if kind == "preferences":
        return score(enc["chosen"][idx], enc["chosen_len"][idx]), score(enc["rejected"][idx], enc["rejected_len"][idx])
    return (score(enc["ids"][idx], enc["lengths"][idx]),)


@torch.no_grad()
def evaluate_reward_model(model: RewardModel, enc: dict[str, torch.Tensor], kind: str) -> dict[str, float]:
    """Pairwise accuracy (preferences) or MSE and Pearson correlation (scores)."""
    model.eval()
    idx = torch.arange(len(next(iter(enc.values()))), device=next(model.parameters()).device)
    if kind == "preferences":
        rc, rr = _scores(model, enc, idx, kind)
        return {"pairs": float(len(idx)), "accuracy": float((rc > rr).float().mean()),
                "loss": float(bradley_terry_loss(rc, rr, enc["margin"]))}
    (r,) = _scores(model, enc, idx, kind)
    y = enc["score"]
    corr = torch.corrcoef(torch.stack([r, y]))[0, 1] if len(y) > 1 else torch.tensor(float("nan"))
    return {"examples": float(len(y)), "mse": float(((r - y) ** 2).mean()), "correlation": float(corr)}


def train_reward_model(data: RewardData, cfg: RewardModelTrainConfig = RewardModelTrainConfig(),
                       tokenizer: Tokenizer | None = None, device: str | torch.device = "cpu",
                       out: str | os.PathLike | None = None):
    """Train a reward model on ``data``; returns ``(model, tokenizer, metrics)`` with held-out metrics.

    With ``out``, the model is saved there (atomically) after every epoch, so an interrupted run
    keeps its last finished epoch. Under torchrun, each rank scores its share of every minibatch,
    the gradients are averaged, and rank 0 saves (see :mod:`textgym.distributed`).
    """
    device = torch.device(device)
    ranks = init_ranks("auto", None, device)
    device = rank_device(device, ranks)
    torch.manual_seed(cfg.seed)  # the same model, split and order on every rank
    texts = [r[k] for r in data.rows for k in ("prompt", "chosen", "rejected", "completion") if k in r]
    tokenizer = tokenizer or CharTokenizer(alphabet_of(texts) or " ")
    sides = ("chosen", "rejected") if data.kind == "preferences" else ("completion",)
    longest = max(len(tokenizer.encode(r["prompt"])) + len(tokenizer.encode(r[s])) + 1 for r in data.rows for s in sides)
    max_len = cfg.max_len or longest
    enc = encode_rows(data, tokenizer, max_len, device)
    n = len(next(iter(enc.values())))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed)).to(device)
    n_eval = int(n * cfg.eval_fraction) if n >= 10 else 0
    train_idx, eval_idx = perm[n_eval:], perm[:n_eval]
    binary = data.kind == "scores" and bool(((enc["score"] == 0) | (enc["score"] == 1)).all())
    model = RewardModel(RewardModelConfig(tokenizer.vocab_size, max_len, cfg.n_layers, cfg.n_heads, cfg.d_model)).to(device)
    ranks.broadcast_parameters(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=0.01)
    total = cfg.epochs * math.ceil(len(train_idx) / cfg.batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(  # linear warmup, then cosine decay to 0
        optimizer, lambda step: min(1.0, (step + 1) / max(1, cfg.warmup_steps)) * 0.5 * (1 + math.cos(math.pi * step / total)))
    for _epoch in range(cfg.epochs):
        model.train()
        order = train_idx[torch.randperm(len(train_idx), device=device)]
        for lo in range(0, len(order), cfg.batch_size):
            idx = order[lo : lo + cfg.batch_size][ranks.rank :: ranks.world]  # this rank's share
            if len(idx) == 0:  # a last minibatch smaller than the world: nothing to score here
                loss = sum(p.sum() for p in model.parameters()) * 0.0
            elif data.kind == "preferences":
                rc, rr = _scores(model, enc, idx, data.kind)
                loss = bradley_terry_loss(rc, rr, enc["margin"][idx], cfg.center_coef)
            else:
                (r,) = _scores(model, enc, idx, data.kind)
                y = enc["score"][idx]
                loss = F.binary_cross_entropy_with_logits(r, y) if binary else F.mse_loss(r, y)
            if not torch.isfinite(loss):
                raise ValueError(f"the reward model's loss became {loss.item()} in epoch {_epoch + 1}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            ranks.average_gradients(model)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
        if out is not None and ranks.is_main:
            save_reward_model(model, tokenizer, out)
    held_out = {k: v[eval_idx] for k, v in enc.items()} if n_eval else None
    metrics = {"train": evaluate_reward_model(model, {k: v[train_idx] for k, v in enc.items()}, data.kind),
               "eval": evaluate_reward_model(model, held_out, data.kind) if held_out else {},
               "skipped_identical": data.skipped_identical, "too_long": len(data.too_long)}
    return model, tokenizer, metrics


# -- checkpoints --------------------------------------------------------------------------------


def save_reward_model(model: RewardModel, tokenizer: Tokenizer, directory: str | os.PathLike) -> None:
    """Write ``reward_model.safetensors``, ``reward_model.json`` (config and tokenizer), each atomically."""
    from safetensors.torch import save_model

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if isinstance(tokenizer, CharTokenizer):
        tok = tokenizer.to_dict()
    else:  # a transformers tokenizer, saved beside the model (local files, no download to load)
        hf = getattr(tokenizer, "tokenizer", tokenizer)
        hf.save_pretrained(directory / "tokenizer")
        tok = {"type": "hf", "path": "tokenizer"}
    write_json(directory / "reward_model.json", {"reward_model": asdict(model.cfg), "tokenizer": tok})
    with replacing(directory / "reward_model.safetensors") as tmp:
        save_model(model, tmp)


def load_reward_model(directory: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[RewardModel, Tokenizer]:
    """Load what :func:`save_reward_model` wrote.

    Raises:
        FileNotFoundError: a file is missing. ValueError: a corrupt file.
    """
    directory = Path(directory)
    config, weights = checkpoint_files(directory, ("reward_model.json", "reward_model.safetensors"), "reward model")
    try:
        meta = json.loads(config.read_text())
        tok_meta, model_cfg = meta["tokenizer"], RewardModelConfig(**meta["reward_model"])
        kind = tok_meta["type"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{config} is not a valid reward model config: {type(e).__name__} {e}") from None
    if kind == "char":
        tokenizer: Tokenizer = CharTokenizer.from_dict(tok_meta)
    elif kind == "hf":
        # Only a tokenizer saved inside the run directory, and never the network.
        path = (directory / str(tok_meta.get("path", ""))).resolve()
        if not path.is_dir() or directory.resolve() not in (path, *path.parents):
            raise ValueError(f"{config}: the tokenizer path {tok_meta.get('path')!r} is not a folder inside {directory}")
        from transformers import AutoTokenizer

        tokenizer = HFTokenizer(AutoTokenizer.from_pretrained(str(path), local_files_only=True))
    else:
        raise ValueError(f"{config}: unknown tokenizer type {kind!r}: expected 'char' or 'hf'")
    model = load_checked(lambda: RewardModel(model_cfg), weights, device)
    return model.eval(), tokenizer


# -- the reward ---------------------------------------------------------------------------------


def _vocabulary(tokenizer: Tokenizer) -> list[str] | None:
    """Every token of ``tokenizer`` in id order, where it can say (a char or transformers tokenizer)."""
    if isinstance(tokenizer, CharTokenizer):
        return [tokenizer.id_to_token(i) for i in range(tokenizer.vocab_size)]
    inner = getattr(tokenizer, "tokenizer", None)
    if inner is not None and hasattr(inner, "get_vocab"):
        by_id = {i: t for t, i in inner.get_vocab().items()}
        return [by_id.get(i, "") for i in range(tokenizer.vocab_size)]
    return None


class LearnedReward(Reward):
    """A trained :class:`RewardModel` as a textgym reward.

    Each episode is scored as ``prompt + completion + eos`` under the model's own tokenizer.
    With ``normalize=True`` scores are standardised by a running mean and standard deviation
    (Welford) over every episode scored so far. Range: unbounded (or about N(0, 1) normalised).

    Args:
        path: a directory written by :func:`save_reward_model` (``textgym train-rm``).
        normalize: standardise the scores.
        device: where the model runs.
        chunk: episodes scored per forward pass, so memory stays bounded for any batch.
    """

    name = "reward_model"

    def __init__(self, path: str | os.PathLike, normalize: bool = False, device: str | torch.device = "cpu",
                 chunk: int = 1024) -> None:
        if not isinstance(normalize, bool):
            raise ValueError(f"normalize must be true or false, got {normalize!r}")
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
        self.model, self.tokenizer = load_reward_model(path, device)
        self.device = torch.device(device)
        self.normalize, self.chunk = normalize, chunk
        self._checked: Tokenizer | None = None  # the last tokenizer check_tokenizer passed
        self.count, self.mean, self.m2 = 0, 0.0, 0.0

    def check_tokenizer(self, tokenizer: Tokenizer, max_len: int | None = None) -> None:
        """Raise when the env's tokenizer is not the reward model's, token for token, or when the
        env's episodes (``max_len`` tokens of prompt and completion, then eos) do not fit its context."""
        if tokenizer.vocab_size != self.tokenizer.vocab_size:
            raise ValueError(
                f"the reward model's vocabulary has {self.tokenizer.vocab_size} tokens but the env's tokenizer "
                f"has {tokenizer.vocab_size}: train the reward model with the env's tokenizer (textgym train-rm --env)"
            )
        mine, theirs = _vocabulary(self.tokenizer), _vocabulary(tokenizer)
        if mine is not None and theirs is not None and mine != theirs:
            i = next(i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b)
            raise ValueError(
                f"the reward model's tokenizer differs from the env's: token id {i} is {mine[i]!r} for the reward "
                f"model and {theirs[i]!r} for the env; train the reward model with the env's tokenizer "
                "(textgym train-rm --env)"
            )
        if (tokenizer.pad_id, tokenizer.eos_id) != (self.tokenizer.pad_id, self.tokenizer.eos_id):
            raise ValueError("the reward model's pad and eos ids differ from the env's tokenizer's")
        if max_len is not None and max_len + 1 > self.model.cfg.max_len:
            raise ValueError(
                f"the reward model reads at most {self.model.cfg.max_len} tokens, but the env's episodes reach "
                f"{max_len + 1} (prompt, completion and eos), so longer ones would be cut: retrain it with "
                "textgym train-rm --env ENV, which sizes its context to the env"
            )

    def state_dict(self) -> dict[str, Any]:
        """The running normalisation (``normalize=True``): scores seen, their mean and sum of squares."""
        return {"count": self.count, "mean": self.mean, "m2": self.m2} if self.normalize else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not self.normalize:
            return super().load_state_dict(state)
        self.count, self.mean, self.m2 = int(state["count"]), float(state["mean"]), float(state["m2"])

    @torch.no_grad()
    def score(self, batch: EpisodeBatch) -> torch.Tensor:
        if batch.tokenizer is not self._checked:  # the token-by-token check once per tokenizer, not per batch
            self.check_tokenizer(batch.tokenizer)
            self._checked = batch.tokenizer
        tok, L = self.tokenizer, self.model.cfg.max_len
        texts = list(zip(batch.prompts, batch.completions))
        out = []
        for lo in range(0, len(texts), self.chunk):  # bounded memory, whatever the batch
            seqs = [(tok.encode(p) + tok.encode(c) + [tok.eos_id])[:L] for p, c in texts[lo : lo + self.chunk]]
            width = max(len(x) for x in seqs)
            ids = torch.full((len(seqs), width), tok.pad_id, dtype=torch.int64)
            for i, x in enumerate(seqs):
                ids[i, : len(x)] = torch.tensor(x)
            lengths = torch.tensor([len(x) for x in seqs])
            out.append(self.model(ids.to(self.device), lengths.to(self.device)).float().cpu())
        r = torch.cat(out) if out else torch.zeros(0)
        if self.normalize:
            for x in r.tolist():  # Welford's running mean and variance
                self.count += 1
                delta = x - self.mean
                self.mean += delta / self.count
                self.m2 += delta * (x - self.mean)
            std = math.sqrt(self.m2 / self.count) if self.count > 1 else 1.0
            r = (r - self.mean) / (std + 1e-8)
        return r.to(batch.device)
