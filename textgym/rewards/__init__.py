"""Rewards: score a batch of finished episodes, return a float tensor ``(B,)``.

Build one with :func:`make` from a name (``"exact_match"``, ``"f1"``, ``"bleu"``, ``"chrf"``,
``"rouge_l"``, ``"token_accuracy"``, ``"task"``, ``"format"``, ``"reward_model"``, ``"review_rule"``, ``"hf_classifier"``), a list of ``(reward, weight)`` pairs, a :class:`Reward`, or
your own function ``(prompts, completions, references) -> list[float]``. The text metrics in
:mod:`textgym.rewards.metrics` score one prediction against its references.
"""

from textgym.rewards.core import (
    REWARDS,
    EpisodeBatch,
    FormatReward,
    FunctionReward,
    Reward,
    TaskScore,
    TextReward,
    TokenAccuracy,
    WeightedSum,
    make,
)
from textgym.rewards.metrics import (
    bleu_score,
    chrf_score,
    exact_match_score,
    f1_score,
    normalize_answer,
    rouge_l_score,
)

__all__ = [
    "REWARDS",
    "EpisodeBatch",
    "FormatReward",
    "FunctionReward",
    "Reward",
    "TaskScore",
    "TextReward",
    "TokenAccuracy",
    "WeightedSum",
    "make",
    "bleu_score",
    "chrf_score",
    "exact_match_score",
    "f1_score",
    "normalize_answer",
    "rouge_l_score",
]
