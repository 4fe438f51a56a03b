"""The RLHF teaching task: its grammar, its hidden rule, its preference pairs and its env."""

import json
import random

import gymnasium as gym
import pytest

from textgym.cli import main
from textgym.review import (
    ADJECTIVES,
    REVIEW_ITEMS,
    ReviewTask,
    corrupt,
    label_accuracy,
    parse_review,
    preference_pairs,
    review_score,
)
from textgym.rewards import EpisodeBatch, make


@pytest.mark.parametrize("completion,expected", [
    ("tea is good", 0.25),
    ("tea is very good", 0.5),
    ("tea is very good and very great", 1.0),
    ("tea is very good and fine", 0.5),
    ("tea is okay", 0.0),
    ("tea is nice and bad", 0.0),
    ("tea is very bad and very poor", -1.0),
    ("tea is plain and very dull", -0.5),
])
def test_hidden_rule_hand_computed(completion, expected):
    assert review_score("tea:", completion) == expected


@pytest.mark.parametrize("completion", [
    "soup is good",  # another item
    "tea is good and good",  # an adjective repeated
    "tea is good and nice and great",  # three phrases
    "tea is very",  # no adjective
    "tea is goad",  # not a word
    "tea is  good",  # two spaces
    "tea is good ",  # a trailing space
    "tea good",  # no verb
    "",
    "tea is very very good",
])
def test_ungrammatical_reviews_score_minus_one(completion):
    assert parse_review("tea:", completion) is None
    assert review_score("tea:", completion) == -1.0


def test_references_are_grammatical_and_carry_no_preference():
    task = ReviewTask()
    examples = [task.example(k) for k in range(3000)]
    assert all(parse_review(ex.prompt, ex.references[0]) is not None for ex in examples)
    assert {ex.prompt[:-1] for ex in examples} == set(REVIEW_ITEMS)
    scores = [review_score(ex.prompt, ex.references[0]) for ex in examples]
    assert abs(sum(scores) / len(scores)) < 0.03  # positive and negative words are equally likely
    used = {w for ex in examples for w in ex.references[0].split(" ")}
    assert set(ADJECTIVES) <= used


def test_corruptions_are_never_grammatical():
    rng, task = random.Random(0), ReviewTask()
    for key in range(500):
        ex = task.example(key)
        bad = corrupt(ex.prompt, ex.references[0], rng)
        assert bad != ex.references[0] and parse_review(ex.prompt, bad) is None


def test_preference_pairs_noise_flips_labels_of_the_same_pairs():
    clean, noisy = preference_pairs(2000, noise=0.0, seed=3), preference_pairs(2000, noise=0.2, seed=3)
    assert label_accuracy(clean) == 1.0
    assert all({a["chosen"], a["rejected"]} == {b["chosen"], b["rejected"]} for a, b in zip(clean, noisy))
    assert 0.77 < label_accuracy(noisy) < 0.83  # 20% flipped
    assert all(review_score(p["prompt"], p["chosen"]) != review_score(p["prompt"], p["rejected"]) for p in clean)
    corrupted = sum(review_score(p["prompt"], t) == -1 for p in clean for t in (p["chosen"], p["rejected"]))
    assert 0.15 < corrupted / 4000 < 0.4  # some reviews have mistakes, most do not
    assert preference_pairs(50, seed=4) == preference_pairs(50, seed=4)
    assert preference_pairs(50, seed=4) != preference_pairs(50, seed=5)


@pytest.mark.parametrize("kwargs,match", [({"n": 0}, "n must be a positive integer"),
                                          ({"n": 5, "noise": 0.5}, r"noise must be in \[0, 0.5\)"),
                                          ({"n": 5, "corrupt_prob": 1.5}, r"corrupt_prob must be in \[0, 1\]")])
def test_bad_preference_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        preference_pairs(**kwargs)


def test_review_env_pays_the_hidden_rule():
    env = gym.make("textgym/Review-v0")
    obs, info = env.reset(seed=0)
    prompt = env.unwrapped.current_example.prompt
    tok = env.unwrapped.tokenizer
    text = f"{prompt[:-1]} is very good and nice"
    for token in tok.encode(text) + [tok.eos_id]:
        obs, reward, terminated, truncated, info = env.step(token)
    assert terminated and not truncated
    assert reward == pytest.approx(0.75) and info["completion"] == text
    assert env.unwrapped.setup.max_new_tokens == 48  # room to write more than the grammar allows


def test_review_rule_reward_and_text_metrics():
    tok = gym.make("textgym/Review-v0").unwrapped.tokenizer
    batch = EpisodeBatch.from_texts(["tea:", "cake:"], ["tea is great", "cake is good good"], [["tea is"], ["cake is"]], tok)
    assert make("review_rule")(batch).tolist() == [0.25, -1.0]
    metrics = ReviewTask().text_metrics(["tea:", "cake:"], ["tea is great", "cake is good good"])
    assert metrics == {"grammatical": 0.5, "positive_words": 1.5}


def test_cli_preferences(tmp_path, capsys):
    out = tmp_path / "prefs.jsonl"
    assert main(["preferences", "--pairs", "300", "--noise", "0.1", "--seed", "1", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert printed["pairs"] == len(rows) == 300 and printed["labels_right"] == label_accuracy(rows)
    assert main(["preferences", "--pairs", "10", "--noise", "0.7", "--out", str(out)]) == 2
    assert "noise must be in [0, 0.5)" in capsys.readouterr().err
