"""Trajectories out and back in: eval --save, then SFT on the good episodes (rejection sampling)."""

import json

import pytest
import torch

import textgym  # noqa: F401
from textgym.agents import sft
from textgym.agents.evaluate import play_policy
from textgym.agents.rollout import SequenceView, collect, make_envs
from textgym.cli import main
from textgym.policies import make_policy

TINY = ["--total-steps", "200", "--num-envs", "16", "--quiet", "--set", "n_layers=1", "--set", "d_model=32",
        "--set", "eval_episodes=8"]


@pytest.mark.parametrize("env_id", ["textgym/GuessNumber-v0", "textgym/Reverse-v0", "textgym/Mastermind-v0"])
def test_recorded_episodes_replay_exactly(env_id):
    envs = make_envs(env_id, 2, torch.device("cpu"))
    policy = make_policy(**SequenceView(envs).policy_spec(), n_layers=1, d_model=16, n_heads=2)
    _, rows = play_policy(policy, env_id, {}, episodes=6, seed=7, sample=True)
    assert [r["index"] for r in rows] == list(range(6)) and all(r["num_envs"] == 6 for r in rows)
    cfg = sft.SFTConfig(env_id=env_id, num_envs=6)
    (replay,) = sft.replays(rows, cfg, torch.device("cpu"))
    demos = collect(replay.envs, SequenceView(replay.envs), expert=replay.expert(), seed=replay.seed)
    assert demos.lengths.tolist() == [r["length"] for r in rows]
    assert demos.returns.tolist() == pytest.approx([r["return"] for r in rows])
    for i, r in enumerate(rows):
        assert demos.actions[i, : r["length"]].tolist() == r["actions"]


def test_eval_save_then_sft_on_the_good_episodes(tmp_path, capsys):
    run, data = tmp_path / "run", tmp_path / "episodes.jsonl"
    assert main(["train", "sft", "--out", str(run), *TINY]) == 0
    assert main(["eval", str(run), "--episodes", "32", "--sample", "--save", str(data), "--json"]) == 0
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    assert len(rows) == 32 and {"prompt", "completion", "references", "return", "success", "actions"} <= set(rows[0])
    threshold = sorted(r["return"] for r in rows)[16]
    assert main(["train", "sft", "--data", str(data), "--min-reward", str(threshold), "--init", str(run),
                 "--out", str(tmp_path / "again"), *TINY]) == 0
    datasets = pytest.importorskip("datasets")
    loaded = datasets.load_dataset("json", data_files=str(data), split="train")
    assert len(loaded) == 32 and loaded[0]["prompt"] == rows[0]["prompt"]


@pytest.mark.parametrize("content,message", [
    ('{"prompt": "a"}\n', "episodes.jsonl, line 1: not a trajectory of textgym eval --save: it lacks ['env_id'"),
    ('[1, 2]\n', "line 1: not a trajectory"),
    ('{"env_id": "textgym/Reverse-v0", "env_kwargs": {}, "seed": 0, "num_envs": 2, "index": 5, "actions": [1], '
     '"return": 0}\n', "index an integer below num_envs"),
])
def test_data_that_is_not_trajectories_names_the_file_and_line(tmp_path, capsys, content, message):
    path = tmp_path / "episodes.jsonl"
    path.write_text(content)
    assert main(["train", "sft", "--data", str(path), "--out", str(tmp_path / "x"), *TINY]) == 2
    assert message in capsys.readouterr().err


def test_data_of_another_env_or_with_nothing_kept_is_refused(tmp_path, capsys):
    run, data = tmp_path / "run", tmp_path / "episodes.jsonl"
    assert main(["train", "sft", "--out", str(run), *TINY]) == 0
    assert main(["eval", str(run), "--episodes", "4", "--save", str(data), "--json"]) == 0
    capsys.readouterr()
    assert main(["train", "sft", "--env", "textgym/Copy-v0", "--data", str(data), "--out", str(tmp_path / "x"), *TINY]) == 2
    assert "the data was played on textgym/Reverse-v0" in capsys.readouterr().err
    assert main(["train", "sft", "--data", str(data), "--min-reward", "99", "--out", str(tmp_path / "y"), *TINY]) == 2
    assert "no episode in the data has a return >= 99" in capsys.readouterr().err
    assert main(["train", "ppo", "--data", str(data), "--out", str(tmp_path / "z"), *TINY]) == 2
    assert "--data trains on recorded episodes, which ppo does not: use textgym train sft" in capsys.readouterr().err
