"""Side-by-side evaluation of saved policies on the same held-out episodes.

Every policy plays the same examples (same env, same seed), greedily or by sampling at
temperature 1 from a generator seeded the same for each. One table reports, per policy: the env's
reward and success; for token envs, exact match, F1, BLEU and ROUGE-L of the completions against
the references, the task's own metrics, mean length, and distinct-1/distinct-2 (unique token
n-grams over all n-grams, Li et al., 2016); the learned reward when a reward model is given; and
the KL to a reference policy when one is given, computed exactly from both distributions at every
position the policy visited, summed over the episode.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from textgym.agents.evaluate import EVAL_CHUNK, combine_metrics, episode_metrics, sampled_metrics
from textgym.agents.rollout import Rollout, SequenceView, collect, make_envs
from textgym.files import replacing, write_json, write_text
from textgym.policies import load_policy
from textgym.rewards import EpisodeBatch
from textgym.rewards import metrics as text_metrics
from textgym.rewards.model import LearnedReward
from textgym.tables import text_table


def distinct_n(sequences: list[list[int]], n: int) -> float:
    """Unique n-grams over all n-grams of ``sequences`` (0 when there is none)."""
    grams = NGrams(n)
    grams.add(sequences)
    return grams.distinct()


@torch.no_grad()
def kl_to_reference(policy: nn.Module, reference: nn.Module, rollout: Rollout) -> float:
    """Mean over episodes of ``Σ_t KL(π(·|s_t) ‖ π_ref(·|s_t))`` at the positions the policy visited."""
    idx = rollout.positions[..., None]
    logp = F.log_softmax(policy(rollout.inputs)[0], -1)
    ref = F.log_softmax(reference(rollout.inputs)[0], -1)
    logp = logp.gather(1, idx.expand(-1, -1, logp.shape[-1]))  # (B, T, A)
    ref = ref.gather(1, idx.expand(-1, -1, ref.shape[-1]))
    kl = (logp.exp() * (logp - ref)).sum(-1) * rollout.mask  # (B, T)
    return float(kl.sum(1).mean())


def compare_policies(
    runs: list[str | os.PathLike],
    env_id: str,
    env_kwargs: dict | None = None,
    episodes: int = 256,
    seed: int = 12345,
    reference: str | os.PathLike | None = None,
    reward_model: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    sample: bool = False,
    show: int = 0,
    samples: int | None = None,
) -> list[dict]:
    """One row of metrics per run directory (see the module docstring).

    ``sample=True`` evaluates what a policy generates rather than its single most likely text: the
    right view after RL against a reward model, whose KL penalty is on the sampling distribution.
    ``show=N`` adds, for token envs, the first N episodes as ``row["samples"]``: a list of
    ``{"prompt", "completion"}``, the same prompts for every policy. ``samples=N`` adds pass@1 ...
    pass@N and the best-of-N return, N samples of each of the ``episodes`` examples (see
    :func:`textgym.agents.evaluate.sampled_metrics`).

    Raises:
        FileNotFoundError, ValueError: a missing or corrupt checkpoint, or one that does not fit the env.
    """
    if show < 0:
        raise ValueError(f"show must be 0 or more episodes to print, got {show}")
    device = torch.device(device)
    ref_policy = load_policy(reference, device).eval() if reference is not None else None
    learned = None
    if reward_model is not None:
        learned = LearnedReward(reward_model, device=device)
    rows = []
    for run in runs:
        policy = load_policy(run, device).eval()
        parts, grams = [], (NGrams(1), NGrams(2))
        for lo in range(0, episodes, EVAL_CHUNK):  # in chunks: memory stays flat in the number of episodes
            part = _compare_chunk(policy, env_id, env_kwargs, min(EVAL_CHUNK, episodes - lo), seed + lo, device, sample,
                                  ref_policy, learned, grams, show if lo == 0 else 0)
            parts.append(part)
        row = {"run": str(run), **combine_metrics([{k: v for k, v in p.items() if k != "samples"} for p in parts])}
        if "bleu" in row:
            row.update({f"distinct_{g.n}": g.distinct() for g in grams})
        if samples is not None:
            row.update(sampled_metrics(policy, env_id, env_kwargs, episodes, samples, device, seed))
        if "samples" in parts[0]:
            row["samples"] = parts[0]["samples"]
        rows.append(row)
    return rows


class NGrams:
    """The n-grams of sequences seen so far, for :func:`distinct_n` over several chunks."""

    def __init__(self, n: int) -> None:
        self.n, self.unique, self.total = n, set(), 0

    def add(self, sequences: list[list[int]]) -> None:
        for s in sequences:
            grams = [tuple(s[i : i + self.n]) for i in range(len(s) - self.n + 1)]
            self.unique.update(grams)
            self.total += len(grams)

    def distinct(self) -> float:
        return len(self.unique) / self.total if self.total else 0.0


def _compare_chunk(policy, env_id, env_kwargs, episodes, seed, device, sample, ref_policy, learned, grams, show) -> dict:
    """The metrics of one chunk of :func:`compare_policies` (means over its episodes)."""
    envs = make_envs(env_id, episodes, device, **(env_kwargs or {}))
    view = SequenceView(envs)
    view.check(policy)
    generator = torch.Generator(device=device).manual_seed(seed)
    rollout = collect(envs, view, policy, seed=seed, greedy=not sample, generator=generator)
    row = episode_metrics(envs, rollout)
    if hasattr(envs, "episode_texts"):  # token envs: text metrics against the references
        pairs = envs.episode_texts()
        examples, texts = [ex for ex, _ in pairs], [t for _, t in pairs]
        refs = [ex.references for ex in examples]
        for name, fn in (("bleu", text_metrics.bleu_score), ("rouge_l", text_metrics.rouge_l_score)):
            row[name] = sum(fn(c, r) for c, r in zip(texts, refs)) / len(texts)
        ids = [envs.tokenizer.encode(t) for t in texts]
        for g in grams:
            g.add(ids)
            row[f"distinct_{g.n}"] = 0.0  # over every chunk: set by compare_policies
        if learned is not None:
            prompts = [ex.prompt for ex in examples]
            batch = EpisodeBatch.from_texts(prompts, texts, [list(r) for r in refs], envs.tokenizer)
            row["learned_reward"] = float(learned(batch).mean())
        if show:
            row["samples"] = [{"prompt": ex.prompt, "completion": t} for ex, t in zip(examples[:show], texts)]
    if ref_policy is not None:
        view.check(ref_policy)
        row["kl_to_reference"] = kl_to_reference(policy, ref_policy, rollout)
    return row


def format_comparison(rows: list[dict], keys: Sequence[str] | None = None) -> str:
    """The rows as a text table, one line per run, then each run's ``samples`` if it has any.

    Args:
        rows: from :func:`compare_policies`.
        keys: the metrics to show, in order; default: every metric of the rows.
    """
    if keys is None:
        keys = [k for k in dict.fromkeys(k for row in rows for k in row) if k not in ("run", "episodes", "samples")]
    lines = [text_table(["run", *keys], [[row["run"], *(f"{row[k]:.4f}" if k in row else "-" for k in keys)] for row in rows])]
    for row in rows:
        if row.get("samples"):
            lines += [f"\n{row['run']}:", *(f"  {s['prompt']!r} -> {s['completion']!r}" for s in row["samples"])]
    return "\n".join(lines)


def write_comparison(rows: list[dict], out: str | os.PathLike) -> None:
    """``comparison.csv``, ``comparison.json`` and a bar chart ``comparison.png`` in ``out``.

    The CSV holds the metrics; the JSON also holds the ``samples`` when there are any.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    keys = [k for k in dict.fromkeys(k for row in rows for k in row) if k != "samples"]
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=keys, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text(out / "comparison.csv", table.getvalue())  # a link there is replaced, not written through
    write_json(out / "comparison.json", rows)
    from matplotlib.figure import Figure  # not pyplot: no global backend, no GUI

    shown = [k for k in ("success_rate", "exact_match", "f1", "bleu", "rouge_l", "grammatical", "distinct_1", "distinct_2")
             if k in keys]
    fig = Figure(figsize=(1.2 * len(shown) * max(1, len(rows)) / 2 + 3, 3.5))
    ax = fig.subplots()
    width = 0.8 / len(rows)
    for i, row in enumerate(rows):
        ax.bar([j + i * width for j in range(len(shown))], [row.get(k, 0.0) for k in shown], width,
               label=Path(row["run"]).name)
    ax.set_xticks([j + width * (len(rows) - 1) / 2 for j in range(len(shown))], shown)
    ax.set_ylim(0, 1.05)
    ax.legend()
    fig.tight_layout()
    with replacing(out / "comparison.png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
