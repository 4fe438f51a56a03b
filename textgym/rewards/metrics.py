"""Text metrics: ``(prediction, references) -> float`` in ``[0, 1]``, the best over the references.

BLEU and chrF come from sacrebleu and ROUGE-L from rouge-score; exact match and F1 follow the
SQuAD v1.1 evaluation script.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lowercase, drop punctuation, drop the articles a/an/the, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _check_references(references: Sequence[str]) -> None:
    if isinstance(references, str) or not references:
        raise ValueError(f"references must be a non-empty list of strings, got {references!r}")


def exact_match_score(prediction: str, references: Sequence[str], normalize: bool = False) -> float:
    """1.0 if ``prediction`` equals a reference, else 0.0.

    Surrounding whitespace is always stripped; ``normalize=True`` compares after
    :func:`normalize_answer` instead. Range: {0, 1}.
    """
    _check_references(references)
    clean = normalize_answer if normalize else str.strip
    pred = clean(prediction)
    return float(any(pred == clean(ref) for ref in references))


def f1_score(prediction: str, references: Sequence[str]) -> float:
    """Token F1 of SQuAD v1.1: whitespace tokens after :func:`normalize_answer`, multiset overlap.

    As in the SQuAD v1.1 script, a prediction with no token in common with a reference scores 0,
    also when both are empty. Range: [0, 1].
    """
    _check_references(references)
    pred_tokens = normalize_answer(prediction).split()
    best = 0.0
    for ref in references:
        ref_tokens = normalize_answer(ref).split()
        same = sum((Counter(pred_tokens) & Counter(ref_tokens)).values())
        if same == 0:
            continue
        precision, recall = same / len(pred_tokens), same / len(ref_tokens)
        best = max(best, 2 * precision * recall / (precision + recall))
    return best


def bleu_score(prediction: str, references: Sequence[str], multi_reference: bool = True) -> float:
    """sacrebleu's sentence BLEU (default exponential smoothing) / 100. Range: [0, 1].

    With several references, BLEU counts each n-gram against all of them at once (clipped by the
    most any reference has) and takes the closest reference length, as sacrebleu and the BLEU
    paper do. ``multi_reference=False`` gives the best score against one reference at a time.
    """
    import sacrebleu

    _check_references(references)
    if multi_reference:
        score = sacrebleu.sentence_bleu(prediction, list(references)).score
    else:
        score = max(sacrebleu.sentence_bleu(prediction, [ref]).score for ref in references)
    return min(1.0, score / 100.0)  # sacrebleu can give 100.00000000000004


def chrf_score(prediction: str, references: Sequence[str]) -> float:
    """sacrebleu's sentence chrF (character n-gram F-score, β=2) / 100, best single reference. Range: [0, 1]."""
    import sacrebleu

    _check_references(references)
    return max(sacrebleu.sentence_chrf(prediction, [ref]).score for ref in references) / 100.0


@lru_cache(maxsize=1)
def _rouge_l_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"])


def rouge_l_score(prediction: str, references: Sequence[str]) -> float:
    """rouge-score's ROUGE-L F-measure (longest common subsequence of words), best reference. Range: [0, 1].

    rouge-score's tokenizer lowercases and keeps only letters and digits.
    """
    _check_references(references)
    scorer = _rouge_l_scorer()
    return max(scorer.score(ref, prediction)["rougeL"].fmeasure for ref in references)
