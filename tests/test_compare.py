"""textgym compare on two tiny saved policies."""

import csv
import json

import pytest
import torch

from textgym.agents.compare import compare_policies, distinct_n, format_comparison, kl_to_reference
from textgym.agents.rollout import SequenceView, collect, make_envs
from textgym.cli import main
from textgym.policies import make_policy

TINY = ["--total-steps", "300", "--num-envs", "16", "--quiet", "--set", "n_layers=1", "--set", "d_model=32",
        "--set", "n_heads=2", "--set", "eval_episodes=16"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    assert main(["train", "sft", "--env", "textgym/Reverse-v0", "--out", str(root / "sft"), *TINY]) == 0
    assert main(["train", "ppo", "--env", "textgym/Reverse-v0", "--init", str(root / "sft"), "--out", str(root / "ppo"),
                 "--set", "kl_coef=0.1", *TINY]) == 0
    return root


def test_distinct_n_hand_computed():
    assert distinct_n([[1, 2, 1, 2]], 1) == 0.5  # {1, 2} of 4 tokens
    assert distinct_n([[1, 2, 1, 2]], 2) == pytest.approx(2 / 3)  # {(1,2), (2,1)} of 3 bigrams
    assert distinct_n([[1]], 2) == 0.0


def test_kl_to_itself_is_zero_and_to_another_policy_positive():
    envs = make_envs("textgym/Reverse-v0", 8, torch.device("cpu"))
    view = SequenceView(envs)
    torch.manual_seed(0)
    a, b = make_policy(**view.policy_spec()), make_policy(**view.policy_spec())
    for p in b.parameters():
        p.data.normal_(0, 0.3)
    rollout = collect(envs, view, a, seed=0, greedy=True)
    assert kl_to_reference(a, a, rollout) == pytest.approx(0.0, abs=1e-6)
    assert kl_to_reference(a, b, rollout) > 0.01


def test_compare_two_policies_on_the_same_episodes(runs, tmp_path, capsys):
    rows = compare_policies([runs / "sft", runs / "ppo"], "textgym/Reverse-v0", episodes=32, reference=runs / "sft")
    assert [r["run"] for r in rows] == [str(runs / "sft"), str(runs / "ppo")]
    for row in rows:
        assert {"exact_match", "f1", "bleu", "rouge_l", "mean_return", "mean_length", "distinct_1", "distinct_2",
                "kl_to_reference"} <= set(row)
    assert rows[0]["kl_to_reference"] == pytest.approx(0.0, abs=1e-6)  # the reference against itself
    assert main(["compare", str(runs / "sft"), str(runs / "ppo"), "--env", "textgym/Reverse-v0", "--episodes", "32",
                 "--reference", str(runs / "sft"), "--device", "cpu", "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "kl_to_reference" in out and "exact_match" in out
    with open(tmp_path / "cmp" / "comparison.csv") as f:
        assert len(list(csv.DictReader(f))) == 2
    assert len(json.loads((tmp_path / "cmp" / "comparison.json").read_text())) == 2
    assert (tmp_path / "cmp" / "comparison.png").is_file()


def test_compare_refuses_a_policy_for_another_env(runs, capsys):
    assert main(["compare", str(runs / "sft"), "--env", "textgym/Addition-v0", "--device", "cpu"]) == 2
    assert "does not fit this env" in capsys.readouterr().err


def test_show_gives_every_policy_the_same_prompts_and_decodes_its_completions(runs, tmp_path, capsys):
    rows = compare_policies([runs / "sft", runs / "ppo"], "textgym/Reverse-v0", episodes=16, show=3, sample=True)
    prompts = [[s["prompt"] for s in row["samples"]] for row in rows]
    assert len(prompts[0]) == 3 and prompts[0] == prompts[1]
    for row in rows:
        assert all(isinstance(s["completion"], str) for s in row["samples"])
    assert main(["compare", str(runs / "sft"), "--env", "textgym/Reverse-v0", "--episodes", "16", "--show", "2",
                 "--device", "cpu", "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert out.count(" -> ") == 2
    with open(tmp_path / "cmp" / "comparison.csv") as f:
        assert "samples" not in next(csv.reader(f))
    assert len(json.loads((tmp_path / "cmp" / "comparison.json").read_text())[0]["samples"]) == 2
    with pytest.raises(ValueError, match="show must be 0 or more"):
        compare_policies([runs / "sft"], "textgym/Reverse-v0", episodes=4, show=-1)


def test_format_comparison_aligns_the_chosen_metrics_and_lists_the_samples():
    rows = [{"run": "a", "episodes": 2.0, "mean_return": 0.5, "f1": 1.0, "samples": [{"prompt": "ab=", "completion": "ba"}]},
            {"run": "longer", "episodes": 2.0, "mean_return": -0.25}]
    assert format_comparison(rows, ["mean_return", "f1"]).splitlines() == [
        "run     mean_return  f1",
        "------  -----------  ------",
        "a       0.5000       1.0000",
        "longer  -0.2500      -",
        "",
        "a:",
        "  'ab=' -> 'ba'",
    ]
    assert format_comparison(rows).splitlines()[0].split() == ["run", "mean_return", "f1"]
