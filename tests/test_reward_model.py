"""The learned reward model: its loss, data rules, training, checkpoints, and use as an env reward."""

import json
import math
import random

import gymnasium as gym
import pytest
import torch

from textgym import rewards
from textgym.cli import main
from textgym.rewards.model import (
    LearnedReward,
    RewardModelTrainConfig,
    bradley_terry_loss,
    encode_rows,
    load_reward_data,
    load_reward_model,
    save_reward_model,
    train_reward_model,
)
from textgym.tokenizers import CharTokenizer

TOK = CharTokenizer("abc=")


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def preference_rows(n, seed=0):
    """The hidden rule: the completion with more 'a's is preferred."""
    rng = random.Random(seed)
    rows = []
    while len(rows) < n:
        x, y = ("".join(rng.choice("abc") for _ in range(6)) for _ in range(2))
        if x.count("a") != y.count("a"):
            chosen, rejected = (x, y) if x.count("a") > y.count("a") else (y, x)
            rows.append({"prompt": "a=", "chosen": chosen, "rejected": rejected})
    return rows


def test_bradley_terry_loss_hand_computed():
    c, r = torch.tensor([1.0]), torch.tensor([0.0])
    assert float(bradley_terry_loss(c, r)) == pytest.approx(math.log(1 + math.exp(-1)))
    assert float(bradley_terry_loss(c, r, torch.tensor([0.5]))) == pytest.approx(math.log(1 + math.exp(-0.5)))
    assert float(bradley_terry_loss(c, r, center_coef=0.1)) == pytest.approx(math.log(1 + math.exp(-1)) + 0.1)


def test_reward_model_learns_a_preference_rule(tmp_path):
    data = load_reward_data(write_jsonl(tmp_path / "prefs.jsonl", preference_rows(600)))
    model, tok, metrics = train_reward_model(data, RewardModelTrainConfig(epochs=15, n_layers=1, d_model=32, n_heads=2), tokenizer=TOK)
    assert metrics["eval"]["pairs"] == 60
    assert metrics["eval"]["accuracy"] > 0.85  # chance is 0.5


def test_reward_model_learns_scores_with_mse_and_bce(tmp_path):
    rng = random.Random(1)
    texts = ["".join(rng.choice("abc") for _ in range(6)) for _ in range(400)]
    scored = [{"prompt": "a=", "completion": t, "score": t.count("a") / 6} for t in texts]
    model, _, metrics = train_reward_model(load_reward_data(write_jsonl(tmp_path / "s.jsonl", scored)),
                                           RewardModelTrainConfig(epochs=15, n_layers=1, d_model=32, n_heads=2), tokenizer=TOK)
    assert metrics["eval"]["correlation"] > 0.8
    labels = [{"prompt": "a=", "completion": t, "score": int(t.count("a") >= 2)} for t in texts]
    _, _, metrics = train_reward_model(load_reward_data(write_jsonl(tmp_path / "b.jsonl", labels)),
                                       RewardModelTrainConfig(epochs=5, n_layers=1, d_model=32, n_heads=2), tokenizer=TOK)
    assert math.isfinite(metrics["eval"]["mse"])


@pytest.mark.parametrize("content,match", [
    ("", "no examples"),
    ('{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "a", "chosen": "b"\n', r"line 2: not valid JSON"),
    ('{"prompt": "a", "chosen": "b"}\n', r"line 1: missing \['rejected'\]"),
    ('{"prompt": "a", "completion": "b", "score": NaN}\n', r"line 1: score must be a finite number, got nan"),
    ('{"prompt": "a", "completion": "b", "score": "high"}\n', r"line 1: score must be a finite number"),
    ('{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "a", "completion": "b", "score": 1}\n', "one file holds one kind"),
])
def test_bad_reward_data_names_the_line(tmp_path, content, match):
    path = tmp_path / "data.jsonl"
    path.write_text(content)
    with pytest.raises(ValueError, match=match):
        load_reward_data(path)


def test_identical_pairs_are_warned_skipped_and_counted(tmp_path):
    rows = [{"prompt": "a", "chosen": "b", "rejected": "b"}, {"prompt": "a", "chosen": "b", "rejected": "c"}]
    with pytest.warns(UserWarning, match="skipped 1 pairs whose chosen and rejected texts are identical"):
        data = load_reward_data(write_jsonl(tmp_path / "d.jsonl", rows))
    assert data.skipped_identical == 1 and len(data.rows) == 1
    with pytest.raises(ValueError, match="no usable pairs"), pytest.warns(UserWarning):
        load_reward_data(write_jsonl(tmp_path / "e.jsonl", rows[:1]))


def test_examples_longer_than_the_context_are_reported(tmp_path):
    rows = [{"prompt": "a=", "chosen": "abc", "rejected": "c"}, {"prompt": "a=", "chosen": "abcabcabc", "rejected": "c"}]
    data = load_reward_data(write_jsonl(tmp_path / "d.jsonl", rows))
    with pytest.warns(UserWarning, match=r"1 examples are longer than the context of 8 tokens .*lines \[2\]"):
        enc = encode_rows(data, TOK, 8, torch.device("cpu"))
    assert data.too_long == [2] and enc["chosen"].shape == (1, 8)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    path = tmp_path_factory.mktemp("rm")
    data = load_reward_data(write_jsonl(path / "prefs.jsonl", preference_rows(300)))
    model, tok, _ = train_reward_model(data, RewardModelTrainConfig(epochs=5, n_layers=1, d_model=32, n_heads=2), tokenizer=TOK)
    save_reward_model(model, tok, path / "rm")
    return path / "rm", model


def test_save_and_load_give_identical_scores(trained):
    path, model = trained
    loaded, tok = load_reward_model(path)
    assert tok == TOK
    ids = torch.tensor([TOK.encode("a=aab") + [1, 0, 0]])
    assert torch.equal(model.eval()(ids, torch.tensor([6])), loaded(ids, torch.tensor([6])))


def test_corrupt_or_missing_reward_model(tmp_path, trained):
    with pytest.raises(FileNotFoundError, match="reward_model.json is missing"):
        load_reward_model(tmp_path)
    import shutil

    shutil.copytree(trained[0], tmp_path / "rm")
    (tmp_path / "rm" / "reward_model.safetensors").write_bytes(b"junk")
    with pytest.raises(ValueError, match="corrupt"):
        load_reward_model(tmp_path / "rm")


def test_an_env_uses_the_learned_reward(trained):
    path, _ = trained
    env = gym.make("textgym/TokenGeneration-v0", task=[("a=", ["aaa"])], tokenizer=TOK,
                   reward="reward_model", reward_kwargs={"path": str(path)})
    env.reset(seed=0)
    for t in TOK.encode("aab"):
        env.step(t)
    *_, reward, term, _, info = env.step(TOK.eos_id)
    expected = LearnedReward(path)(rewards.EpisodeBatch.from_texts(["a="], ["aab"], [["aaa"]], TOK))
    assert term and reward == pytest.approx(float(expected[0]), abs=1e-5)
    weighted = gym.make("textgym/TokenGeneration-v0", task=[("a=", ["aaa"])], tokenizer=TOK,
                        reward=[(LearnedReward(path), 0.5), ("exact_match", 0.5)])
    weighted.reset(seed=0)


def test_the_learned_reward_prefers_what_the_rule_prefers(trained):
    reward = rewards.make("reward_model", path=str(trained[0]))
    scores = reward(rewards.EpisodeBatch.from_texts(["a="] * 2, ["aaaaaa", "cccccc"], [["a"], ["a"]], TOK))
    assert scores[0] > scores[1]


def test_a_vocabulary_mismatch_names_both_sizes(trained):
    with pytest.raises(ValueError, match="reward model's vocabulary has 6 tokens but the env's tokenizer has 9"):
        gym.make("textgym/Reverse-v0", reward="reward_model", reward_kwargs={"path": str(trained[0])})


def test_normalized_scores_are_standardised(trained):
    reward = rewards.make("reward_model", path=str(trained[0]), normalize=True)
    texts = ["aaaaaa", "cccccc", "abcabc", "aabbcc", "ccccca", "aaaaac"]
    scores = reward(rewards.EpisodeBatch.from_texts(["a="] * 6, texts, [["a"]] * 6, TOK))
    assert abs(float(scores.mean())) < 1e-4 and float(scores.std(unbiased=False)) == pytest.approx(1.0, abs=1e-3)


def test_cli_train_rm_and_eval_rm(tmp_path, capsys):
    data = write_jsonl(tmp_path / "prefs.jsonl", preference_rows(100))
    assert main(["train-rm", "--data", str(data), "--out", str(tmp_path / "rm"), "--epochs", "2", "--device", "cpu",
                 "--set", "n_layers=1", "--set", "d_model=16"]) == 0
    capsys.readouterr()
    model, _ = load_reward_model(tmp_path / "rm")
    assert (model.cfg.n_layers, model.cfg.d_model) == (1, 16)
    assert main(["train-rm", "--data", str(data), "--out", str(tmp_path / "y"), "--set", "layers=1"]) == 2
    assert "--set 'layers=1': expected KEY=VALUE with KEY one of" in capsys.readouterr().err
    assert main(["eval-rm", str(tmp_path / "rm"), "--data", str(data), "--json", "--device", "cpu"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["pairs"] == 100 and 0 <= metrics["accuracy"] <= 1
    assert main(["train-rm", "--data", str(data), "--out", str(tmp_path / "rm")]) == 2
    assert "holds another reward model" in capsys.readouterr().err
    (tmp_path / "empty.jsonl").write_text("")
    assert main(["train-rm", "--data", str(tmp_path / "empty.jsonl"), "--out", str(tmp_path / "x")]) == 2
    assert "no examples" in capsys.readouterr().err


def test_a_tokenizer_with_other_characters_of_the_same_size_is_refused(trained):
    other = CharTokenizer("abd=")  # 'd' where the reward model has 'c'
    assert other.vocab_size == TOK.vocab_size
    with pytest.raises(ValueError, match="token id 4 is 'c' for the reward model and 'd' for the env"):
        gym.make("textgym/TokenGeneration-v0", task=[("a=", ["ab"])], tokenizer=other,
                 reward="reward_model", reward_kwargs={"path": str(trained[0])})


def test_an_env_whose_episodes_outrun_the_context_is_refused(trained):
    context = trained[1].cfg.max_len
    with pytest.raises(ValueError, match=f"reads at most {context} tokens, but the env's episodes reach"):
        gym.make("textgym/TokenGeneration-v0", task=[("a=", ["a" * context])], tokenizer=TOK,
                 reward="reward_model", reward_kwargs={"path": str(trained[0])})


def test_scoring_in_chunks_gives_the_same_scores(trained):
    texts = ["aaaaaa", "cccccc", "abcabc", "aabbcc", "ccccca", "aaaaac", "a", "", "cab", "bb"]
    batch = rewards.EpisodeBatch.from_texts(["a="] * 10, texts, [["a"]] * 10, TOK)
    whole = LearnedReward(trained[0])(batch)
    assert torch.allclose(LearnedReward(trained[0], chunk=3)(batch), whole, atol=1e-6)


def test_a_run_with_a_normalized_learned_reward_resumes_bit_identically(trained, tmp_path, stop_at):
    from textgym.agents import ppo
    from textgym.agents.state import run_history, same_weights
    from textgym.tokenizers import save_tokenizer

    save_tokenizer(TOK, tmp_path / "tok")
    env_kwargs = {"task": [["a=", ["aaa"]], ["b=", ["abc"]]], "tokenizer": str(tmp_path / "tok"), "max_new_tokens": 6,
                  "reward": "reward_model", "reward_kwargs": {"path": str(trained[0]), "normalize": True}}
    cfg = ppo.PPOConfig(env_id="textgym/TokenGeneration-v0", env_kwargs=env_kwargs, num_envs=8, total_steps=400,
                        eval_episodes=8, device="cpu", n_layers=1, d_model=32)
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    ppo.train(cfg, out=whole, progress=False, save_every=100)
    stop_at(3, ppo.train, cfg, out=parts, progress=False, save_every=100)
    state = torch.load(parts / "training_state.pt", weights_only=True)
    assert state["ranks"][0]["envs"]["reward"]["count"] == 3 * 8  # the normalisation's running statistics
    ppo.train(cfg, out=parts, progress=False, save_every=100, resume=True)
    assert len(run_history(whole)) > 4 and run_history(parts) == run_history(whole)
    assert same_weights(parts, whole)
