"""Every example runs, on a tiny budget (the full budgets are in the README)."""

import importlib.util
import pathlib

import pytest

import textgym

IDS = [info.id for info in textgym.ENVS]
EXAMPLES = pathlib.Path(__file__).parent.parent / "examples"


def _load_example(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_01_random_agent_smoke(capsys):
    _load_example("01_random_agent").main(episodes=5)
    out = capsys.readouterr().out
    assert "binary search on GuessNumber-v0: 5 games" in out and "all won: True" in out
    for env_id in IDS:
        assert f"== {env_id}" in out


def test_example_02_sb3_agents_smoke(capsys):
    results = _load_example("02_sb3_agents").main(steps=256, reverse_steps=256, episodes=3)
    assert set(results) == {"GuessNumber-v0", "Reverse-v0"}
    assert "mean return" in capsys.readouterr().out


def test_example_03_reinforce_smoke(capsys):
    ev = _load_example("03_reinforce_guess_number").main(steps=300, num_envs=16)
    assert "mean_guesses" in ev and "greedy play" in capsys.readouterr().out


def test_example_04_ppo_reverse_smoke(capsys):
    ev = _load_example("04_ppo_reverse").main(steps=300, num_envs=16)
    out = capsys.readouterr().out
    assert "exact_match" in ev and "reference" in out


def test_example_05_sft_then_ppo_smoke(capsys):
    results = _load_example("05_sft_then_ppo_text_game").main(sft_steps=300, ppo_steps=300, num_envs=16)
    assert set(results) == {"PPO from scratch", "SFT", "SFT then PPO"}
    assert "binary search" in capsys.readouterr().out


def test_example_08_your_own_game_smoke(capsys):
    ev = _load_example("08_your_own_game").main(steps=300, num_envs=8)
    out = capsys.readouterr().out
    assert "mean_right" in ev and "after one turn: " in out and "game 0: return" in out


def test_sb3_benchmark_quick():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(EXAMPLES.parent / "benchmarks" / "sb3.py"), "--quick"],
                          check=True, capture_output=True, text=True)
    assert "MaskablePPO, GuessNumber-v0" in done.stdout and "exact match" in done.stdout


def test_learning_benchmark_quick(tmp_path):
    """The table's tiny row: two seeds of one cell trained and evaluated, the README table and the
    PNG written from the results file, and a finished cell not trained again."""
    import json
    import subprocess
    import sys

    script, results = str(EXAMPLES.parent / "benchmarks" / "learning.py"), tmp_path / "rows.json"
    args = [sys.executable, script, "--quick", "--episodes", "8", "--results", str(results)]
    subprocess.run(args + ["--only", "GuessNumberText-v0:sft+ppo", "--seeds", "0", "1"], check=True, capture_output=True)
    rows = json.loads(results.read_text())
    assert [(r["algo"], r["seed"]) for r in rows] == [("sft+ppo", 0), ("sft+ppo", 1)]
    assert all(r["eval"]["episodes"] == 8 and r["env_steps"] == 800 and r["curve"] for r in rows)
    again = subprocess.run(args + ["--only", "GuessNumberText-v0:sft+ppo", "--seeds", "0"], check=True,
                           capture_output=True, text=True)
    assert "GuessNumberText-v0:sft+ppo:0 " not in again.stdout  # already in the file: not trained again
    assert json.loads(results.read_text()) == rows

    readme = tmp_path / "README.md"
    readme.write_text("before\n<!-- learning-table:begin -->\nold\n<!-- learning-table:end -->\nafter\n")
    subprocess.run([sys.executable, script, "--results", str(results), "--readme", str(readme), "--plots",
                    str(tmp_path / "curves")], check=True, capture_output=True)
    text = readme.read_text()
    assert text.startswith("before\n<!-- learning-table:begin -->\n| env |") and text.endswith("end -->\nafter\n")
    line = next(s for s in text.splitlines() if s.startswith("| GuessNumberText-v0"))
    success = [r["eval"]["success_rate"] for r in rows]
    assert "| SFT then PPO | 800 |" in line and "| 2 |" in line and f"success {sum(success) / 2:.3f} ± " in line
    assert "old" not in text and (tmp_path / "curves" / "GuessNumberText-v0.png").stat().st_size > 1000

    bad = subprocess.run(args + ["--only", "Reverse-v0:dqn"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown cells ['Reverse-v0:dqn']" in bad.stderr and "Reverse-v0:grpo" in bad.stderr


def test_learning_table_leaves_out_seeds_of_an_older_budget():
    import importlib.util

    spec = importlib.util.spec_from_file_location("learning_bench", EXAMPLES.parent / "benchmarks" / "learning.py")
    learning = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(learning)
    steps = learning.budget("GuessNumber-v0", "sft")

    def row(seed, env_steps, success):
        return {"env": "GuessNumber-v0", "algo": "sft", "seed": seed, "env_steps": env_steps, "train_seconds": 1.0,
                "cpu_seconds": 1.0, "eval": {"success_rate": success, "mean_guesses": 6.0}, "curve": [(0, 0.0)]}

    line = learning.table([row(0, steps, 1.0), row(1, steps // 4, 0.0), row(2, steps, 0.5)]).splitlines()[-1]
    assert f"| {steps:,} |" in line and "| 2 |" in line and "success 0.750 ± 0.354" in line
    line = learning.table([row(1, steps // 4, 0.0)]).splitlines()[-1]  # none at the recipe's budget yet: shown as run
    assert f"| {steps // 4:,} |" in line and "| 1 |" in line


def test_throughput_benchmark_quick():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(EXAMPLES.parent / "benchmarks" / "throughput.py"), "--quick", "--device", "cpu"],
                         check=True, capture_output=True, text=True).stdout
    for row in ("PPO env steps/s", "vector env steps/s", "rollout s", "HF generate s", "KV cache"):
        assert row in out


def test_example_06_rlhf_smoke(tmp_path, capsys):
    rows = _load_example("06_rlhf_review").main(out=str(tmp_path), quick=True)
    assert [pathlib.Path(r["run"]).name for r in rows] == ["sft", "ppo_kl", "ppo_no_kl"]
    assert rows[0]["kl_to_reference"] == 0.0 and all("learned_reward" in r for r in rows)
    out = capsys.readouterr().out
    assert "reward model accuracy on test_clean" in out and out.count(" -> ") == 9


def test_rlhf_benchmark_quick(tmp_path):
    import json
    import subprocess
    import sys

    out = tmp_path / "figures.json"
    printed = subprocess.run([sys.executable, str(EXAMPLES.parent / "benchmarks" / "rlhf.py"), "--quick", "--workdir",
                              str(tmp_path / "w"), "--json", str(out)], check=True, capture_output=True, text=True).stdout
    figures = json.loads(out.read_text())
    assert 0 <= figures["rm_accuracy_true"] <= 1 and figures["kl_ppo_kl"] >= 0
    assert "whole pipeline" in printed and (tmp_path / "w" / "runs/review/compare/comparison.csv").is_file()


def test_example_07_sft_vs_rl_smoke(tmp_path, capsys):
    tables = _load_example("07_sft_vs_rl").main(out=str(tmp_path), quick=True)
    assert list(tables) == ["textgym/Reverse-v0", "textgym/Review-v0"]
    for rows in tables.values():
        assert [pathlib.Path(r["run"]).name for r in rows] == ["sft", "ppo", "reinforce", "sft_ppo"]
        assert rows[0]["kl_to_reference"] == 0.0 and rows[1]["kl_to_reference"] > 0
    assert "textgym/Review-v0 (sampled)" in capsys.readouterr().out


def test_example_09_your_own_language_model_smoke(tmp_path, capsys):
    ev = _load_example("09_your_own_language_model").main(out=str(tmp_path), quick=True)
    assert "exact_match" in ev
    out = capsys.readouterr().out
    assert "PPO with LoRA (" in out and (tmp_path / "ppo-lora" / "hf_model" / "config.json").is_file()
    assert (tmp_path / "tiny-gpt2" / "tokenizer.json").is_file()


def test_example_11_pretrained_chat_model_smoke(tmp_path, capsys):
    import pytest

    pytest.importorskip("gguf")
    results = _load_example("11_pretrained_chat_model").main(None, steps=100, problems=4, out=str(tmp_path / "run"))
    assert set(results["before"]) == set(results["after"]) == {"pass@1 (greedy)", "pass@8"}
    assert (tmp_path / "run" / "hf_model" / "config.json").is_file()
    assert "base model on 4 held-out questions" in capsys.readouterr().out


def test_hf_policy_benchmark_quick():
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(EXAMPLES.parent / "benchmarks" / "hf_policy.py"), "all", "--quick"],
                         check=True, capture_output=True, text=True).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [r["benchmark"] for r in rows] == ["learning"] * 2 + ["throughput"] * 3 + ["memory"] * 2
    assert rows[0]["parameters"] == rows[1]["parameters"]  # the GPT-2 has textgym's policy's size
    assert rows[-1]["trainable"] < rows[-2]["trainable"] / 10  # LoRA trains a small part


def test_scaling_benchmark_quick():
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(EXAMPLES.parent / "benchmarks" / "scaling.py"), "all", "--quick"],
                         check=True, capture_output=True, text=True).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    kinds = [r["benchmark"] for r in rows]
    assert kinds == ["threads"] * 4 + ["ddp"] * 3 + ["efficiency"] * 5 + ["compile"] * 2 + ["profile"] * 2
    assert all(r["steps_per_s"] > 0 for r in rows if "steps_per_s" in r)
    assert all(r.get("gflop_per_s", 0) > 0 or "error" in r for r in rows if r["benchmark"] == "efficiency")
    for r in rows[-2:]:  # the shares of an iteration's time add up, and its matrix products are among them
        assert r["matmul"] > 0 and r["ms"] > 0 and "aten::mm" in dict(r["top"])
        assert r["matmul"] + r["attention"] + r["other_ops"] + r["outside_ops"] == pytest.approx(1.0, abs=0.002)


def test_gpu_benchmark_quick_runs_on_the_cpu(tmp_path):
    import json
    import subprocess
    import sys

    results = tmp_path / "gpu.jsonl"
    out = subprocess.run([sys.executable, str(EXAMPLES.parent / "benchmarks" / "gpu.py"), "--quick", "--device", "cpu",
                          "--json", str(results)], check=True, capture_output=True, text=True).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [json.loads(line) for line in results.read_text().splitlines()] == rows
    assert [r["benchmark"] for r in rows] == ["device", "vector_env"] + ["rollout"] * 4 + ["ppo"] * 3
    assert rows[1]["steps_per_s"] > 0 and all(r["tokens_per_s"] > 0 for r in rows[2:6])
    assert [r["what"].split(",")[0] for r in rows[2:6]] == ["textgym Policy", "textgym Policy of the GPT-2's size",
                                                            "HF GPT-2", "HF GPT-2"]
    assert rows[4]["vs_generate"] > 0 and {r["tokens"] for r in rows[2:6]} == {4 * 4}
    plain, bf16, compiled = rows[6:]
    assert plain["steps_per_s"] > 0 and 0 < plain["rollout_share"] < 1 and not plain["bf16"]
    assert bf16["bf16"] and (bf16.get("steps_per_s", 0) > 0 or "error" in bf16)
    assert "skipped" in compiled
    only = subprocess.run([sys.executable, str(EXAMPLES.parent / "benchmarks" / "gpu.py"), "--quick", "--device", "cpu",
                           "--only", "ppo", "--ppo-envs", "8", "--ppo-steps", "200"], check=True, capture_output=True,
                          text=True).stdout
    rows = [json.loads(line) for line in only.splitlines() if line.startswith("{")]
    assert [r["benchmark"] for r in rows] == ["device", "ppo", "ppo", "ppo"] and rows[1]["num_envs"] == 8


def test_reverse_positions_benchmark_quick():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "benchmarks/reverse_positions.py", "--steps", "300", "--episodes", "64",
                          "--set", "num_envs=16"], capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    assert lines[0].startswith("reinforce, 300 steps, seed 0: exact match ")
    lengths = [line for line in lines if line.startswith("length ")]
    assert [line.split(":")[0] for line in lengths] == [f"length {n}" for n in range(2, 7)]
    assert all(len(line.split("position ")[1].split()) == int(line.split()[1].rstrip(":")) for line in lengths)


def test_by_length_counts_letters_by_position():
    import importlib.util

    spec = importlib.util.spec_from_file_location("reverse_positions", "benchmarks/reverse_positions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = [{"completion": "ba", "references": ["ba"]}, {"completion": "bb", "references": ["ba"]},
            {"completion": "cba", "references": ["cba"]}, {"completion": "c", "references": ["abc"]}]
    assert module.by_length(rows) == {2: (0.5, [1.0, 0.5]), 3: (0.5, [0.5, 0.5, 0.5])}


def test_example_10_cleanrl_ppo_smoke(capsys):
    example = _load_example("10_cleanrl_ppo")
    args = example.Args(total_steps=4096, num_steps=64, eval_episodes=16)
    agent = example.train(args)
    success, guesses = example.evaluate(agent, args)
    assert 0.0 <= success <= 1.0 and 1.0 <= guesses <= 10.0
    assert "steps/s" in capsys.readouterr().out


def test_standard_agents_benchmark_quick(tmp_path):
    import json
    import subprocess
    import sys

    rows = tmp_path / "rows.jsonl"
    subprocess.run([sys.executable, str(EXAMPLES.parent / "benchmarks" / "standard_agents.py"), "--quick", "--seeds", "0",
                    "--json", str(rows)], check=True, capture_output=True, text=True)
    runs = [json.loads(line) for line in rows.read_text().splitlines()]
    assert [r["agent"] for r in runs] == ["random", "sb3", "cleanrl", "torchrl", "textgym"]
    assert all(0 <= r["success"] <= 1 and 1 <= r["mean_guesses"] <= 10 for r in runs)
