"""Review-v0, the RLHF teaching task, in one module: its grammar and task, its hidden rule (a reward),
and the preference pairs the rule labels.

``textgym/Review-v0`` is the RLHF teaching env. Its "human" prefers reviews that use more positive
words while staying grammatical; textgym computes that preference exactly
(:func:`review_score`), so every stage of RLHF can be checked against the truth:

1. SFT on the task's references, which carry no preference (mean true score 0);
2. a reward model trained on pairs from :func:`preference_pairs`, labelled by the rule with a
   fraction of the labels flipped (noisy annotators);
3. PPO against the reward model, with a KL penalty to the SFT policy;
4. evaluation by the true rule (the env's default reward), by the reward model, and by the KL.

The pairs show the reward model what the SFT policy writes, reviews of one or two phrases, and a
share of reviews with a word dropped or two words swapped. They never show the other ways to
break the grammar: the wrong item, an adjective used twice, a misspelling, a third phrase. The
reward model has no reason to punish those, and a policy optimised against it without the KL
penalty is free to find them.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import torch

from textgym.rewards.core import EpisodeBatch, Reward
from textgym.seeding import draws
from textgym.tasks.core import Example, Task
from textgym.tokenizers import Tokenizer, alphabet_of

REVIEW_ITEMS = ("tea", "soup", "cake", "film", "book", "song", "room", "game")
"""What the prompts ask to review."""
POSITIVE_WORDS = ("good", "great", "nice")
NEUTRAL_WORDS = ("okay", "fine", "plain")
NEGATIVE_WORDS = ("bad", "poor", "dull")
ADJECTIVES = POSITIVE_WORDS + NEUTRAL_WORDS + NEGATIVE_WORDS
INTENSIFIER = "very"


def parse_review(prompt: str, completion: str) -> list[tuple[bool, str]] | None:
    """The phrases ``(intensified, adjective)`` of a grammatical review, or ``None``.

    The grammar: ``ITEM " is " PHRASE [" and " PHRASE]`` with ``PHRASE = ["very "] ADJECTIVE``,
    where ``ITEM`` is the item the prompt (``"ITEM:"``) names, words are separated by single
    spaces, and the two adjectives differ.

    Example:
        >>> parse_review("tea:", "tea is very good and fine")
        [(True, 'good'), (False, 'fine')]
        >>> parse_review("tea:", "soup is good") is None  # the wrong item
        True
    """
    words = completion.split(" ")
    if not prompt.endswith(":") or words[:2] != [prompt[:-1], "is"]:
        return None
    phrases: list[tuple[bool, str]] = []
    rest = words[2:]
    while True:
        very = rest[:1] == [INTENSIFIER]
        rest = rest[1:] if very else rest
        if not rest or rest[0] not in ADJECTIVES:
            return None
        phrases.append((very, rest[0]))
        rest = rest[1:]
        if not rest:
            break
        if rest[0] != "and" or len(phrases) == 2:
            return None
        rest = rest[1:]
    if len(phrases) == 2 and phrases[0][1] == phrases[1][1]:
        return None
    return phrases


def review_text(item: str, phrases: Sequence[tuple[bool, str]]) -> str:
    """``"ITEM is [very ]ADJ[ and [very ]ADJ]"``: the inverse of :func:`parse_review`."""
    return f"{item} is " + " and ".join(f"{INTENSIFIER} {adj}" if very else adj for very, adj in phrases)


class ReviewTask(Task):
    """Review the item the prompt names: ``"tea:"`` → ``"tea is very good and fine"``.

    The reference is a random grammatical review (see :func:`parse_review`): one or two phrases
    with equal odds, each adjective drawn uniformly from :data:`ADJECTIVES` (three positive, three
    neutral, three negative; two phrases never repeat one) and intensified by ``"very"`` with odds
    one half. The references carry no preference: their mean score under the hidden rule of
    :class:`textgym.review.ReviewRule` is zero, which makes them the SFT data of the RLHF
    pipeline.
    """

    name = "review"

    def example(self, key: int) -> Example:
        return self.examples_for([key])[0]

    def examples_for(self, keys: Sequence[int]) -> list[Example]:
        out = []
        for r in draws(torch.tensor(list(keys), dtype=torch.int64), 6).tolist():  # one batch of draws
            item = REVIEW_ITEMS[r[0] % len(REVIEW_ITEMS)]
            first = r[2] % len(ADJECTIVES)
            second = (first + 1 + r[4] % (len(ADJECTIVES) - 1)) % len(ADJECTIVES)  # never the same
            phrases = [(bool(r[3] % 2), ADJECTIVES[first]), (bool(r[5] % 2), ADJECTIVES[second])][: 1 + r[1] % 2]
            out.append(Example(f"{item}:", (review_text(item, phrases),)))
        return out

    def alphabet(self) -> str:
        return alphabet_of([*REVIEW_ITEMS, *ADJECTIVES, INTENSIFIER, "is and :"])

    def max_prompt_tokens(self, tokenizer: Tokenizer) -> int:
        return max(len(tokenizer.encode(f"{item}:")) for item in REVIEW_ITEMS)

    def max_reference_tokens(self, tokenizer: Tokenizer) -> int:
        longest = max(ADJECTIVES, key=len)
        return max(len(tokenizer.encode(review_text(item, [(True, longest)] * 2))) for item in REVIEW_ITEMS)

    def text_metrics(self, prompts: Sequence[str], completions: Sequence[str]) -> dict[str, float]:
        """``grammatical``: the fraction of grammatical reviews; ``positive_words``: their mean count."""
        parsed = [parse_review(p, c) for p, c in zip(prompts, completions)]
        n = max(1, len(parsed))
        return {
            "grammatical": sum(p is not None for p in parsed) / n,
            "positive_words": sum(sum(w in POSITIVE_WORDS for w in c.split(" ")) for c in completions) / n,
        }

    def __repr__(self) -> str:
        return "ReviewTask()"


# --------------------------------------------------------------------------------------------
# Tasks from data
# --------------------------------------------------------------------------------------------




UNGRAMMATICAL = -1.0
"""The score of a review :func:`parse_review` rejects."""


def review_score(prompt: str, completion: str) -> float:
    """The hidden rule: ``Σ_phrases value(adjective) × (2 if "very") / 4``, or -1 if ungrammatical.

    ``value`` is +1 for a positive word, 0 for a neutral one, -1 for a negative one, so a
    grammatical review scores in ``[-1, 1]`` in steps of 0.25, and only ``"ITEM is very P and very
    Q"`` with two different positive words scores 1.

    Example:
        >>> review_score("tea:", "tea is very good and fine")
        0.5
        >>> review_score("tea:", "tea is good good")
        -1.0
    """
    phrases = parse_review(prompt, completion)
    if phrases is None:
        return UNGRAMMATICAL
    value = {**dict.fromkeys(POSITIVE_WORDS, 1), **dict.fromkeys(NEGATIVE_WORDS, -1)}
    return sum(value.get(adj, 0) * (2 if very else 1) for very, adj in phrases) / 4


class ReviewRule(Reward):
    """The review task's hidden preference as a reward (see :func:`review_score`).

    Range: [-1, 1]; -1 for an ungrammatical review, 1 only for ``"ITEM is very P and very Q"``
    with P and Q two different positive words.
    """

    name = "review_rule"

    def score(self, batch: EpisodeBatch) -> list[float]:
        return [review_score(p, c) for p, c in zip(batch.prompts, batch.completions)]


def corrupt(prompt: str, text: str, rng: random.Random) -> str:
    """One random mistake in a grammatical review: a word dropped, or two neighbouring words
    swapped. The result is never grammatical."""
    words = text.split(" ")
    if rng.random() < 0.5:
        del words[rng.randrange(len(words))]
    else:
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
    out = " ".join(words)
    return out if parse_review(prompt, out) is None else corrupt(prompt, text, rng)


def preference_pairs(n: int, noise: float = 0.1, seed: int = 0, corrupt_prob: float = 0.25) -> list[dict]:
    """The pairs of :func:`iter_preference_pairs`, as a list."""
    return list(iter_preference_pairs(n, noise, seed, corrupt_prob))


def iter_preference_pairs(n: int, noise: float = 0.1, seed: int = 0, corrupt_prob: float = 0.25) -> Iterator[dict]:
    """``n`` preference pairs ``{"prompt", "chosen", "rejected"}`` labelled by :func:`review_score`.

    Each pair reviews one item twice. Each review is a reference of :class:`ReviewTask`
    (what the SFT policy learns to write), corrupted by :func:`corrupt` with probability
    ``corrupt_prob``; pairs whose two reviews score the same are drawn again. Then the label of
    each pair is flipped with probability ``noise``.

    The pairs depend only on ``seed`` and the flips on ``(seed, noise)``: the same seed with
    ``noise=0`` and ``noise=0.1`` gives the same pairs, with clean and with noisy labels.

    Args:
        n: number of pairs.
        noise: the fraction of labels flipped, in ``[0, 0.5)``.
        seed: the random seed.
        corrupt_prob: the probability that a review is corrupted, in ``[0, 1]``.

    Raises:
        ValueError: ``n`` not positive, or ``noise``/``corrupt_prob`` out of range.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of pairs n must be a positive integer (--pairs), got {n!r}")
    if not 0 <= noise < 0.5:
        raise ValueError(f"noise must be in [0, 0.5) (the fraction of labels flipped), got {noise!r}")
    if not 0 <= corrupt_prob <= 1:
        raise ValueError(f"corrupt_prob must be in [0, 1], got {corrupt_prob!r}")
    return _pairs(n, noise, seed, corrupt_prob)


def _pairs(n: int, noise: float, seed: int, corrupt_prob: float) -> Iterator[dict]:
    task = ReviewTask()
    rng, flips = random.Random(seed), random.Random(f"{seed}-flips")
    made = 0
    while made < n:
        item_key = rng.getrandbits(32)
        prompt = task.example(item_key).prompt
        texts = []
        for _ in range(2):
            ex = task.example(rng.getrandbits(32))
            text = prompt[:-1] + ex.references[0][ex.references[0].index(" ") :]  # the same item
            texts.append(corrupt(prompt, text, rng) if rng.random() < corrupt_prob else text)
        a, b = (review_score(prompt, t) for t in texts)
        if a == b:
            continue
        chosen, rejected = texts if a > b else texts[::-1]
        if flips.random() < noise:
            chosen, rejected = rejected, chosen
        made += 1
        yield {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def labelled_right(pair: dict) -> bool:
    """Whether the hidden rule prefers the pair's chosen review."""
    return review_score(pair["prompt"], pair["chosen"]) > review_score(pair["prompt"], pair["rejected"])


def label_accuracy(pairs: Sequence[dict]) -> float:
    """The fraction of ``pairs`` whose chosen review the hidden rule prefers."""
    return sum(labelled_right(p) for p in pairs) / len(pairs)
