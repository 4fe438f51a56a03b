import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import textgym
from textgym.cli import main


def test_list_prints_every_env(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for info in textgym.ENVS:
        assert info.id in out and info.description in out
    assert "Discrete(100)" in out and "Box(float32, (23,))" in out and "token_accuracy" in out


def test_demo_scripted_agents_win_and_random_ones_do_not(capsys):
    assert main(["demo", "--episodes", "3"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("textgym/")]
    assert len(rows) == 2 * len(textgym.ENVS)
    for env_id, agent, episodes, ret, success, _length in rows:
        float(ret)  # a number
        if agent == "scripted" and env_id != "textgym/Review-v0":
            assert success == "100.0%", env_id
        assert episodes == "3"
    review = {agent: float(ret) for env_id, agent, _, ret, _, _ in rows if env_id == "textgym/Review-v0"}
    assert review["random"] == -1.0 < review["scripted"]  # random text is never grammatical; references are


def test_bad_arguments(capsys):
    assert main(["demo", "--episodes", "0"]) == 2
    assert "--episodes must be at least 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["fly"])


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "textgym.cli", "list"], capture_output=True, text=True, check=True)
    assert "textgym/Reverse-v0" in out.stdout


TINY = ["--total-steps", "200", "--num-envs", "16", "--quiet", "--set", "n_layers=1", "--set", "d_model=32",
        "--set", "n_heads=2", "--set", "eval_episodes=16"]


@pytest.mark.parametrize("algo,env", [("ppo", "textgym/Reverse-v0"), ("reinforce", "textgym/GuessNumber-v0"),
                                      ("sft", "textgym/GuessNumberText-v0")])
def test_train_writes_a_run_and_eval_reads_it(tmp_path, capsys, algo, env):
    import json

    out = tmp_path / "run"
    assert main(["train", algo, "--env", env, "--out", str(out), *TINY]) == 0
    for name in ("config.json", "metrics.jsonl", "policy.safetensors", "policy.json", "learning_curve.png"):
        assert (out / name).is_file(), name
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines and all("mean_return" in m and "env_steps" in m for m in lines)
    assert json.loads((out / "config.json").read_text())["algo"] == algo
    if importlib.util.find_spec("tensorboard") is not None:
        assert list(out.glob("events.out.tfevents.*")), "TensorBoard events are written when tensorboard is installed"
    capsys.readouterr()
    assert main(["eval", str(out), "--episodes", "20", "--json", "--device", "cpu"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["env"] == env and metrics["episodes"] == 20.0
    assert {"mean_return", "success_rate", "mean_length"} <= set(metrics)
    if "GuessNumber" in env:
        assert "mean_guesses" in metrics
    else:
        assert {"exact_match", "f1"} <= set(metrics)


def test_sft_then_ppo_through_init(tmp_path):
    assert main(["train", "sft", "--out", str(tmp_path / "sft"), *TINY]) == 0
    assert main(["train", "ppo", "--init", str(tmp_path / "sft"), "--out", str(tmp_path / "ppo"),
                 "--set", "kl_coef=0.1", *TINY]) == 0


def test_train_refuses_an_out_that_holds_another_run(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["train", "sft", "--out", out, *TINY]) == 0
    capsys.readouterr()
    assert main(["train", "ppo", "--out", out, *TINY]) == 2
    assert "holds another run" in capsys.readouterr().err
    assert main(["train", "ppo", "--out", out, "--force", *TINY]) == 0


@pytest.mark.parametrize("argv,message", [
    (["train", "ppo", "--env", "textgym/Nope-v0"], "unknown env 'textgym/Nope-v0'"),
    (["train", "ppo", "--env", "CartPole-v1"], "'CartPole-v1' is not a textgym env"),
    (["train", "ppo", "--num-envs", "2"], "num_minibatches must be between 1 and num_envs=2"),
    (["train", "ppo", "--set", "lr=1"], "--set 'lr=1': expected KEY=VALUE"),
    (["train", "ppo", "--env-kwargs", "[1]"], "--env-kwargs must be a JSON object"),
    (["train", "ppo", "--init", "/nonexistent/run"], "--init: /nonexistent/run holds neither a textgym run"),
    (["train", "ppo", "--device", "tpu"], "unknown device 'tpu'"),
    (["train", "reinforce", "--set", "baseline=mean"], "unknown baseline 'mean'"),
])
def test_train_bad_input(tmp_path, capsys, argv, message):
    assert main([*argv, "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert message in capsys.readouterr().err


def test_unknown_algorithm_is_refused(tmp_path, capsys):
    assert main(["train", "dqn", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "unknown trainer 'dqn'" in err and "['ppo', 'reinforce', 'grpo', 'sft'" in err
    assert not (tmp_path / "x").exists()


def test_eval_of_a_corrupt_or_missing_checkpoint(tmp_path, capsys):
    assert main(["eval", str(tmp_path), "--env", "textgym/Reverse-v0"]) == 2
    assert "holds neither a textgym run" in capsys.readouterr().err
    out = tmp_path / "run"
    assert main(["train", "sft", "--out", str(out), *TINY]) == 0
    (out / "policy.safetensors").write_bytes(b"\0" * 10)
    capsys.readouterr()
    assert main(["eval", str(out)]) == 2
    assert "corrupt" in capsys.readouterr().err


def test_nan_during_training_keeps_the_last_good_checkpoint(tmp_path, capsys, monkeypatch):
    from textgym.agents import ppo
    from textgym.policies import Policy

    real, calls, saved = ppo.value_loss, [], {}
    real_save = Policy.save

    def save(policy, directory, *a, **k):
        real_save(policy, directory, *a, **k)
        saved["bytes"] = (Path(directory) / "policy.safetensors").read_bytes()

    def value_loss(*a, **k):  # NaN from the 12th iteration on (4 minibatches x 4 epochs each)
        calls.append(1)
        return torch.tensor(float("nan")) if len(calls) > 11 * 16 else real(*a, **k)

    monkeypatch.setattr("textgym.agents.ppo.value_loss", value_loss)
    monkeypatch.setattr(Policy, "save", save)
    out = tmp_path / "run"
    assert main(["train", "ppo", "--out", str(out), *TINY[:1], "20000", *TINY[2:]]) == 1
    err = capsys.readouterr().err
    assert "iteration 12: v_loss became NaN" in err and f"the last good checkpoint is kept in {out}" in err
    assert (out / "policy.safetensors").read_bytes() == saved["bytes"]  # the iteration-10 save


def test_nan_at_the_first_iteration_says_no_checkpoint_was_saved(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("textgym.agents.ppo.value_loss", lambda *a, **k: torch.tensor(float("nan")))
    assert main(["train", "ppo", "--out", str(tmp_path / "run"), *TINY]) == 1
    err = capsys.readouterr().err
    assert "iteration 1: v_loss became NaN" in err and "no checkpoint was saved before it" in err


def test_train_starts_from_the_envs_recipe_and_flags_override_it(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", "ppo", "--env", "textgym/GuessNumber-v0", "--out", str(out), *TINY]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["config"]["learning_rate"] == 1e-3 and saved["env_kwargs"] == {"shaping": True}  # the recipe's
    assert saved["config"]["total_steps"] == 200  # the flag's
    assert main(["train", "ppo", "--env", "textgym/GuessNumber-v0", "--out", str(out), "--force", *TINY,
                 "--set", "learning_rate=2e-3", "--env-kwargs", '{"shaping": false}']) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["config"]["learning_rate"] == 2e-3 and saved["env_kwargs"] == {"shaping": False}
    assert main(["train", "ppo", "--env", "textgym/GuessNumber-v0", "--out", str(out), "--force", *TINY,
                 "--recipe", "none"]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["config"]["learning_rate"] == 3e-4 and saved["env_kwargs"] == {}  # the plain defaults


def test_a_missing_recipe_lists_what_exists(tmp_path, capsys):
    assert main(["train", "grpo", "--env", "textgym/Addition-v0", "--recipe", "require", "--out", str(tmp_path / "x"),
                 *TINY]) == 2
    assert "no grpo recipe for textgym/Addition-v0: it has recipes for ['sft']" in capsys.readouterr().err
    assert main(["recipes", "--env", "textgym/Nope-v0"]) == 2
    assert "no recipe for 'textgym/Nope-v0'" in capsys.readouterr().err
    assert main(["recipes"]) == 0
    assert "textgym/Reverse-v0" in capsys.readouterr().out


def test_every_recipe_is_a_valid_config_of_a_registered_env():
    from textgym.agents import grpo, ppo, reinforce, sft
    from textgym.recipes import all_recipes

    classes = {"ppo": ppo.PPOConfig, "reinforce": reinforce.ReinforceConfig, "grpo": grpo.GRPOConfig,
               "sft": sft.SFTConfig}
    ids = {info.id for info in textgym.ENVS}
    for r in all_recipes():
        assert r.env_id in ids and r.result
        classes[r.algo](env_id=r.env_id, env_kwargs=r.env_kwargs, **r.config)  # checked like any config


def test_version_and_the_package_files(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"textgym {textgym.__version__}"
    root = Path(__file__).resolve().parent.parent
    assert "MIT License" in (root / "LICENSE").read_text()
    assert "## Unreleased" in (root / "CHANGELOG.md").read_text()
    assert (Path(textgym.__file__).parent / "py.typed").is_file()  # type checkers read textgym's annotations


def test_tables_print_counts_as_whole_numbers():
    from textgym.cli import _metrics_table

    table = _metrics_table({"episodes": 1000.0, "success_rate": 1.0, "mean_return": 0.25})
    rows = {line.split()[0]: line.split()[1] for line in table.splitlines()[2:]}
    assert rows == {"episodes": "1000", "success_rate": "1.0000", "mean_return": "0.2500"}


def test_the_cli_and_the_registration_import_no_torch():
    """``textgym --help`` and ``import textgym`` stay fast: torch is imported by the commands and
    envs that use it, when they run."""
    import subprocess
    import sys

    code = ("import sys, gymnasium as gym, textgym, textgym.cli; from textgym.cli import build_parser; build_parser(); "
            "assert 'textgym/Reverse-v0' in gym.registry; print(sorted(m for m in ('torch', 'textgym.envs') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_bench_times_the_commands_fixed_costs_in_fresh_processes():
    """The bench's last rows: `textgym --help`, and a one-iteration PPO run's wall time split into its
    loop (from its metrics) and everything outside it."""
    from dataclasses import replace

    from textgym.bench import BenchConfig, bench_cli

    r = bench_cli(replace(BenchConfig.quick(), device="cpu"))
    assert 0 < r["cli_help_seconds"] < r["cli_train_seconds"]
    assert 0 < r["cli_outside_loop_seconds"] < r["cli_train_seconds"]


def test_learning_curve_png_leaves_pyplot_and_the_backend_alone(tmp_path):
    # Drawn on a bare Figure: a user's interactive backend (a notebook's) is not switched to Agg.
    backend = "dict.__getitem__(matplotlib.rcParams, 'backend')"  # as set; get_backend() would import pyplot
    code = (f"import sys, matplotlib; before = {backend}\n"
            "from pathlib import Path\n"
            "from textgym.agents.run import plot_learning_curve\n"
            f"plot_learning_curve([{{'env_steps': 1, 'mean_return': 0.5, 'success_rate': 0.5}}], Path({str(tmp_path / 'c.png')!r}))\n"
            f"print('matplotlib.pyplot' in sys.modules, {backend} == before)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    assert out == ["False", "True"]
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
