import math

import pytest
import torch

from textgym import rewards
from textgym.rewards import (
    EpisodeBatch,
    bleu_score,
    chrf_score,
    exact_match_score,
    f1_score,
    normalize_answer,
    rouge_l_score,
)
from textgym.tokenizers import CharTokenizer

TOK = CharTokenizer("abcdefhtxyz =")


def batch(completions, references, prompts=None):
    prompts = prompts or ["a="] * len(completions)
    return EpisodeBatch.from_texts(prompts, completions, references, TOK)


# -- metrics against hand-computed values -------------------------------------------------------


def test_normalize_answer_is_squad():
    assert normalize_answer("  The Cat, an  apple!  A dog. ") == "cat apple dog"


def test_exact_match():
    assert exact_match_score("  abc \n", ["x", "abc"]) == 1.0
    assert exact_match_score("The Cat!", ["cat"]) == 0.0
    assert exact_match_score("The Cat!", ["cat"], normalize=True) == 1.0
    assert exact_match_score("abd", ["abc"]) == 0.0


def test_f1_is_squad_v1():
    # normalised: [cat, sat, on, mat] vs [cat, on, mat]: 3 shared, P = 3/4, R = 1
    assert f1_score("the cat sat on the mat", ["a cat on a mat"]) == pytest.approx(2 * 0.75 / 1.75)
    # multiset overlap: {x:2, y:1} & {x:1, y:2} = 2 tokens, P = R = 2/3
    assert f1_score("x x y", ["x y y"]) == pytest.approx(2 / 3)
    assert f1_score("x", ["q", "x"]) == 1.0  # best reference
    assert f1_score("", [""]) == 0.0  # SQuAD v1.1: no shared token scores 0


def test_bleu_is_sacrebleu_sentence_bleu_over_100():
    # 1- to 4-gram precisions 4/5, 3/4, 2/3, 1/2; equal lengths so no brevity penalty
    expected = (0.8 * 0.75 * (2 / 3) * 0.5) ** 0.25
    assert bleu_score("a b c d e", ["a b c d f"]) == pytest.approx(expected, abs=1e-6)
    assert bleu_score("a b c d e", ["zzz", "a b c d e"]) == 1.0


def test_multi_reference_bleu_scores_all_references_together_as_sacrebleu_does():
    import sacrebleu

    refs = ["hello world", "hi there world"]
    expected = sacrebleu.sentence_bleu("hello there world", refs).score / 100
    assert expected == pytest.approx(0.630, abs=5e-4)
    assert bleu_score("hello there world", refs) == pytest.approx(expected, abs=1e-9)
    assert bleu_score("hello there world", refs, multi_reference=False) == pytest.approx(0.550, abs=5e-4)


def test_chrf_is_sacrebleu_chrf_over_100():
    # char n-grams of 'abc' vs 'abd': P = R = 2/3 (1-grams), 1/2 (2-grams), 0 (3-grams)
    assert chrf_score("abc", ["abd"]) == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert chrf_score("abc", ["abc"]) == pytest.approx(1.0)


def test_rouge_l_is_lcs_f_measure():
    # LCS('the cat', 'the cat sat') = 2 words: P = 1, R = 2/3
    assert rouge_l_score("the cat", ["the cat sat"]) == pytest.approx(0.8)
    assert rouge_l_score("sat cat", ["the cat sat", "sat cat"]) == pytest.approx(1.0)


@pytest.mark.parametrize("metric", [exact_match_score, f1_score, bleu_score, chrf_score, rouge_l_score])
def test_metrics_need_a_list_of_references(metric):
    with pytest.raises(ValueError, match="non-empty list of strings"):
        metric("a", "a")


# -- Reward objects ------------------------------------------------------------------------------


def test_token_accuracy_hand_computed():
    b = batch(["cba", "cb", "cbaa", "", "xyz"], [["cbd"], ["cba"], ["cba"], [""], ["abc", "xya"]])
    scores = rewards.make("token_accuracy")(b)
    assert scores.tolist() == pytest.approx([2 / 3, 2 / 3, 3 / 4, 1.0, 2 / 3])
    assert scores.dtype == torch.float32


@pytest.mark.parametrize("name,expected", [("exact_match", [1.0, 0.0]), ("f1", [1.0, 0.0]),
                                           ("chrf", [1.0, None]), ("rouge_l", [1.0, 0.0])])
def test_named_text_rewards(name, expected):
    scores = rewards.make(name)(batch(["abc", "xyz"], [["abc"], ["abd"]]))
    assert scores[0] == pytest.approx(expected[0])
    if expected[1] is not None:
        assert scores[1] == pytest.approx(expected[1])


def test_exact_match_kwargs_reach_the_metric():
    b = batch(["the cab"], [["cab"]])
    assert rewards.make("exact_match")(b).item() == 0.0
    assert rewards.make("exact_match", normalize=True)(b).item() == 1.0


def test_weighted_sum():
    b = batch(["cba", "cbd"], [["cba"], ["cba"]])
    r = rewards.make([("token_accuracy", 0.7), ("exact_match", 0.3)])
    assert r.name == "0.7*token_accuracy + 0.3*exact_match"
    assert r.on_device is False
    assert r(b).tolist() == pytest.approx([1.0, 0.7 * 2 / 3])


def test_user_function_plugs_in():
    def length_bonus(prompts, completions, references):
        return [len(c) / 10 for c in completions]

    r = rewards.make(length_bonus)
    assert r.name == "length_bonus"
    assert r(batch(["abc", ""], [["x"], ["y"]])).tolist() == pytest.approx([0.3, 0.0])
    both = rewards.make([(length_bonus, 1.0), ("exact_match", 2.0)])
    assert both(batch(["x"], [["x"]])).tolist() == pytest.approx([2.1])


def test_user_function_sees_texts():
    seen = {}

    def spy(prompts, completions, references):
        seen.update(prompts=prompts, completions=completions, references=references)
        return [0.0] * len(prompts)

    rewards.make(spy)(batch(["ab"], [["ba", "ab"]], prompts=["ab="]))
    assert seen == {"prompts": ["ab="], "completions": ["ab"], "references": [["ba", "ab"]]}


@pytest.mark.parametrize("returned,match", [
    ([float("nan"), 1.0], r"reward 'bad' returned nan for episode 0: scores must be finite"),
    ([math.inf, 1.0], "returned inf"),
    ([1.0], r"reward 'bad' must return one score per episode \(2\), got shape \(1,\)"),
    (["high", "low"], r"reward 'bad' must return 2 numbers, got \['high', 'low'\]"),
    (None, "reward 'bad' must return 2 numbers"),
    (torch.tensor([[1.0, 2.0]]), r"got shape \(1, 2\)"),
])
def test_bad_reward_outputs_are_named(returned, match):
    def bad(prompts, completions, references):
        return returned

    with pytest.raises(ValueError, match=match):
        rewards.make(bad)(batch(["a", "b"], [["a"], ["b"]]))


def test_unknown_reward_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown reward 'blue': expected one of \['bleu', 'chrf', 'exact_match', 'f1', 'format', 'hf_classifier', 'review_rule', 'reward_model', 'rouge_l', 'task', 'token_accuracy'\]"):
        rewards.make("blue")


@pytest.mark.parametrize("spec,err,match", [
    ([("f1", "heavy")], ValueError, "weight of reward 'f1' must be a finite number"),
    ([("f1", float("nan"))], ValueError, "finite number"),
    ([], ValueError, "at least one"),
    (3, TypeError, "cannot make a reward from int"),
])
def test_bad_reward_specs(spec, err, match):
    with pytest.raises(err, match=match):
        rewards.make(spec)


def test_bad_reward_kwargs_name_the_reward():
    with pytest.raises(TypeError, match="reward 'f1'"):
        rewards.make("f1", normalize=True)
