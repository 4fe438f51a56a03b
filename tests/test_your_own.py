"""A user's own game, data, reward, tokenizer and model, from the command line and from Python; run
folders that stand on their own; names in a run folder are data; ``play``."""

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from textgym.cli import main

ROOT = Path(__file__).parent.parent
TINY = ["--num-envs", "16", "--quiet", "--set", "n_layers=1", "--set", "d_model=32", "--set", "n_heads=2",
        "--set", "eval_episodes=16"]


def readme_game(module: str) -> str:
    """The README's "Your own game" module (the Echo game and its register line), with its id in
    namespace ``module`` (a new name per test: Python caches modules by name)."""
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"### Your own game.*?```python\n(.*?)```", readme, re.S).group(1)
    code = code[: code.index("env = gym.make(")]  # the module: the class and its register line
    assert 'gym.register("my_games/Echo-v0"' in code
    return code.replace("my_games/", f"{module}/")


@pytest.fixture
def user_folder(tmp_path, monkeypatch):
    """A user's folder as the current directory; ``sys.path`` restored afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    return tmp_path


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@pytest.mark.skipif(shutil.which("textgym") is None, reason="the textgym console script is not installed")
def test_your_own_game_with_the_console_script_and_no_pythonpath(tmp_path):
    module = unique("my_games")
    (tmp_path / f"{module}.py").write_text(readme_game(module))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    kwargs = json.dumps({"text_env": f"{module}:{module}/Echo-v0"})
    run = lambda *args: subprocess.run(["textgym", *args], cwd=tmp_path, env=env, capture_output=True, text=True)  # noqa: E731
    done = run("train", "ppo", "--env", "textgym/MultiTurn-v0", "--env-kwargs", kwargs, "--out", "runs/echo",
               "--total-steps", "300", *TINY)
    assert done.returncode == 0, done.stderr
    refused = run("eval", "runs/echo", "--episodes", "4")
    assert refused.returncode == 2 and "--trust-code" in refused.stderr and f"{module}:{module}/Echo-v0" in refused.stderr
    done = run("eval", "runs/echo", "--episodes", "4", "--json", "--trust-code")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["episodes"] == 4


def test_a_run_config_naming_code_runs_nothing_without_trust(user_folder, capsys):
    assert main(["train", "sft", "--env", "textgym/Copy-v0", "--out", "run", "--total-steps", "200", *TINY]) == 0
    config = json.loads((user_folder / "run" / "config.json").read_text())
    marker = user_folder / "pwned.txt"
    module = unique("evil")
    (user_folder / f"{module}.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n"
                                              "def reward(prompts, completions, references):\n"
                                              "    return [0.0] * len(completions)\n")
    config["env_kwargs"] = {"reward": f"{module}:reward"}
    (user_folder / "run" / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    for command in (["eval", "run", "--episodes", "2"], ["play", "run", "--episodes", "1"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert "--trust-code" in err and f"env_kwargs.reward '{module}:reward'" in err
    assert not marker.exists()
    assert main(["eval", "run", "--episodes", "2", "--trust-code"]) == 0
    assert marker.read_text() == "ran"


def test_your_own_data_evaluated_on_a_second_file(user_folder, capsys):
    rows = lambda words: "".join(json.dumps({"prompt": w, "references": [w[::-1]]}) + "\n" for w in words)  # noqa: E731
    (user_folder / "train.jsonl").write_text(rows(["abc", "cab", "bca", "aab", "ccb", "bac", "cba", "abca"]))
    (user_folder / "test.jsonl").write_text(rows(["ab", "ba", "cc"]))  # fewer letters: its own alphabet differs
    kwargs = '{"task": "train.jsonl"}'
    assert main(["train", "sft", "--env", "textgym/TokenGeneration-v0", "--env-kwargs", kwargs, "--out", "runs/s",
                 "--total-steps", "300", *TINY]) == 0
    assert json.loads((user_folder / "runs/s/tokenizer/char_tokenizer.json").read_text())["alphabet"] == "abc"
    capsys.readouterr()
    assert main(["eval", "runs/s", "--env-kwargs", '{"task": "test.jsonl"}', "--episodes", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["episodes"] == 3
    os.chdir(user_folder / "runs")  # from another folder: the task file is found where the run started
    assert main(["eval", str(user_folder / "runs/s"), "--episodes", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["episodes"] == 3


def test_your_own_reward_task_and_tokenizer_by_module_name(user_folder, capsys):
    module = unique("mine")
    (user_folder / f"{module}.py").write_text(
        "from textgym import CharTokenizer, ListTask\n"
        "def vowels(prompts, completions, references):\n"
        "    return [sum(c in 'ae' for c in x) / (1 + len(x)) for x in completions]\n"
        "def words(n=4):\n"
        "    return ListTask([{'prompt': w, 'references': [w]} for w in ['abe', 'bee', 'ace', 'dab'][:n]])\n"
        "def tokenizer():\n"
        "    return CharTokenizer('abcde=')\n")
    kwargs = json.dumps({"task": f"{module}:words", "task_kwargs": {"n": 3}, "reward": f"{module}:vowels",
                         "tokenizer": f"{module}:tokenizer"})
    assert main(["train", "ppo", "--env", "textgym/TokenGeneration-v0", "--env-kwargs", kwargs, "--out", "run",
                 "--total-steps", "300", *TINY]) == 0
    lines = [json.loads(x) for x in (user_folder / "run/metrics.jsonl").read_text().splitlines()]
    assert lines and all(0 <= x["mean_return"] <= 1 for x in lines)
    assert main(["eval", "run", "--episodes", "3", "--trust-code"]) == 0

    from textgym import make_task, rewards
    from textgym.tokenizers import as_tokenizer

    assert rewards.make(f"{module}:vowels").name == "vowels"
    assert len(make_task(f"{module}:words", n=2).examples) == 2
    assert as_tokenizer(f"{module}:tokenizer").vocab_size == 8


def test_a_name_that_cannot_be_imported_names_the_module_and_the_folder(user_folder, capsys):
    for kwargs, what in (({"reward": "no_such_module:f"}, "reward"), ({"task": "no_such_module:t"}, "task"),
                         ({"tokenizer": "no_such_module:t"}, "tokenizer")):
        assert main(["train", "ppo", "--env", "textgym/Reverse-v0", "--env-kwargs", json.dumps(kwargs), "--out", "r",
                     *TINY]) == 2
        err = capsys.readouterr().err
        assert f"{what} 'no_such_module:" in err and "cannot import module 'no_such_module'" in err
        assert str(user_folder) in err
    assert not (user_folder / "r").exists()
    module = unique("half")
    (user_folder / f"{module}.py").write_text("def f(p, c, r):\n    return [0.0] * len(c)\n")
    assert main(["train", "ppo", "--env-kwargs", json.dumps({"reward": f"{module}:g"}), "--out", "r", *TINY]) == 2
    err = capsys.readouterr().err
    assert f"module {module!r}" in err and "has no 'g'" in err


def test_a_python_trained_run_evaluates_plays_and_resumes_from_the_cli(user_folder, capsys):
    from textgym.agents import ppo

    cfg = ppo.PPOConfig(env_id="textgym/Reverse-v0", total_steps=400, num_envs=16, n_layers=1, d_model=32, n_heads=2,
                        eval_episodes=16)
    ppo.train(cfg, out="runs/py", progress=False, save_every=1)
    saved = json.loads((user_folder / "runs/py/config.json").read_text())
    assert saved["algo"] == "ppo" and saved["config"]["total_steps"] == 400
    assert main(["eval", "runs/py", "--episodes", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["env"] == "textgym/Reverse-v0"
    assert main(["play", "runs/py", "--episodes", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("--- episode") == 2 and "prompt:" in out and "completion:" in out
    lines = len((user_folder / "runs/py/metrics.jsonl").read_text().splitlines())
    assert main(["train", "--resume", "runs/py", "--set", "total_steps=800"]) == 0  # no algo, no env: the run's own
    assert len((user_folder / "runs/py/metrics.jsonl").read_text().splitlines()) > lines


def test_resume_refuses_a_flag_that_differs_unless_set_on_purpose(user_folder, capsys):
    assert main(["train", "ppo", "--env", "textgym/Copy-v0", "--out", "run", "--total-steps", "200", "--save-every",
                 "1", *TINY]) == 0
    capsys.readouterr()
    for flag, field in ((["--seed", "3"], "seed"), (["--env", "textgym/Sort-v0"], "env_id"),
                        (["--num-envs", "32"], "num_envs")):
        assert main(["train", "--resume", "run", *flag]) == 2
        err = capsys.readouterr().err
        assert f"differs from the run's {field}" in err and f"--set {field}=" in err
    assert main(["train", "sft", "--resume", "run"]) == 2
    assert "is a ppo run, not sft" in capsys.readouterr().err
    assert main(["train", "--resume", "run", "--seed", "0", "--quiet"]) == 0  # the run's own value is no conflict
    assert main(["train", "--resume", "run", "--set", "total_steps=600", "--quiet"]) == 0
    assert json.loads((user_folder / "run/config.json").read_text())["config"]["total_steps"] == 200
    assert main(["train", "--resume", "nowhere"]) == 2
    assert "run folder nowhere does not exist" in capsys.readouterr().err


def test_a_run_missing_its_config_or_tokenizer_names_the_file(user_folder, capsys):
    assert main(["train", "sft", "--env", "textgym/Copy-v0", "--out", "run", "--total-steps", "200", *TINY]) == 0
    shutil.rmtree(user_folder / "run/tokenizer")
    (user_folder / "run/tokenizer").mkdir()
    (user_folder / "run/tokenizer/char_tokenizer.json").write_text("[1, 2]")
    capsys.readouterr()
    assert main(["eval", "run", "--env-kwargs", '{"shaping": true}']) == 2  # other arguments: the run's tokenizer
    assert "char_tokenizer.json is not a textgym character tokenizer" in capsys.readouterr().err
    (user_folder / "run/config.json").unlink()
    assert main(["eval", "run"]) == 2
    err = capsys.readouterr().err
    assert "has no config.json" in err and "--env" in err
    assert main(["eval", "elsewhere"]) == 2
    assert "run folder elsewhere does not exist" in capsys.readouterr().err


def test_an_init_run_evaluates_from_another_folder(user_folder, capsys):
    pytest.importorskip("transformers")
    from test_hf_policy import char_tokenizer, tiny_lm

    tok = char_tokenizer()
    tiny_lm("gpt2", len(tok), tok.eos_token_id, tok.pad_token_id).save_pretrained("models/tiny-gpt2")
    tok.save_pretrained("models/tiny-gpt2")
    assert main(["train", "sft", "--env", "textgym/Reverse-v0", "--init", "models/tiny-gpt2", "--out", "runs/g",
                 "--total-steps", "200", "--num-envs", "8", "--quiet", "--set", "eval_episodes=8"]) == 0
    assert json.loads((user_folder / "runs/g/config.json").read_text())["env_kwargs"]["tokenizer"] == "models/tiny-gpt2"
    os.chdir(user_folder / "runs")
    capsys.readouterr()
    assert main(["eval", str(user_folder / "runs/g"), "--episodes", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["episodes"] == 4


def _readme_commands(section: str) -> list[list[str]]:
    """The ``textgym ...`` commands of a README section, split as a shell splits them."""
    import shlex

    readme = (ROOT / "README.md").read_text()
    text = readme[readme.index(section):]
    text = re.split(r"\n#{2,3} ", text[1:])[0]
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    return [shlex.split(line, comments=True) for b in blocks for line in b.splitlines() if line.startswith("textgym ")]


def _short(command: list[str]) -> list[str]:
    """A README command with a CI-sized budget: its ``--total-steps`` made small."""
    command = list(command[1:])
    if "--total-steps" in command:
        command[command.index("--total-steps") + 1] = "300"
    else:
        command += ["--total-steps", "300"]
    return command + ["--num-envs", "16", "--quiet", "--set", "eval_episodes=16"]


def test_the_readme_your_own_game_commands_work_as_written(user_folder, capsys):
    (user_folder / "my_games.py").write_text(readme_game("my_games"))
    commands = [c for c in _readme_commands("### Your own game") if c[1] == "train"]
    assert len(commands) == 2 and all("my_games:my_games/Echo-v0" in " ".join(c) for c in commands)
    for command in commands:
        assert main(_short(command)) == 0
    assert main(["eval", "runs/echo", "--trust-code", "--episodes", "4"]) == 0


def test_the_readme_your_own_reward_works_as_written(user_folder, capsys):
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Your own task, tokenizer and reward"):]
    (user_folder / "myreward.py").write_text(re.search(r"With `myreward.py` holding\n\n```python\n(.*?)```", section,
                                                       re.S).group(1))
    (command,) = [c for c in _readme_commands("### Your own task, tokenizer and reward") if "myreward:vowels" in " ".join(c)]
    assert main(_short(command)) == 0
    lines = [json.loads(x) for x in (user_folder / "runs/vowels/metrics.jsonl").read_text().splitlines()]
    assert lines and all(0 <= x["mean_return"] <= 1 for x in lines)


TRAINER = '''
"""Vanilla policy gradient in one file: a new textgym trainer."""
from dataclasses import dataclass

import torch

from textgym.agents.common import gradient_step, setup
from textgym.agents.configs import TrainConfig
from textgym.agents.rollout import collect, evaluate_logprobs
from textgym.agents.run import save_and_evaluate, start_run
from textgym.registry import register_trainer


@dataclass(frozen=True)
class VPGConfig(TrainConfig):
    pass


def train(cfg, policy=None, out=None, progress=True, save_every=10, resume=False):
    s = setup(cfg, policy)
    optimizer = torch.optim.Adam(s.policy.parameters(), lr=cfg.learning_rate)
    checkpointer, run, logger = start_run("vpg", cfg, s.policy, optimizer, s.generator, s.envs, s.ranks, out,
                                          progress, save_every, resume)
    with checkpointer.stop_on_signals(), logger:
        while run.env_steps < cfg.total_steps:
            run.iteration += 1
            rollout = collect(s.envs, s.view, s.policy, seed=cfg.seed if run.iteration == 1 else None,
                              generator=s.generator).trimmed()
            run.env_steps += int(rollout.mask.sum())
            logprobs, _, _ = evaluate_logprobs(s.policy, rollout)
            advantage = rollout.returns - rollout.returns.mean()
            loss = -((logprobs * rollout.mask).sum(1) * advantage).mean()
            gradient_step(loss, s.policy, optimizer, s.ranks, cfg.max_grad_norm)
            logger.log({"iteration": run.iteration, "env_steps": run.env_steps,
                        "mean_return": float(rollout.returns.mean())})
            checkpointer.end_of_iteration(run)
    return save_and_evaluate(cfg, s.policy, logger, checkpointer, run, s.device)


register_trainer("vpg", "{module}:train", "{module}:VPGConfig", summary="vanilla policy gradient")
'''

TASK = '''
"""Double every letter: a new token task."""
from textgym.tasks import Example, Task, register_task


class DoubleTask(Task):
    name = "double"

    def example(self, key):
        word = "".join("xyz"[(key >> (2 * i)) % 3] for i in range(1 + key % 3))
        return Example(word + "=", ("".join(c + c for c in word),))

    def alphabet(self):
        return "xyz="

    def max_prompt_tokens(self, tokenizer):
        return 4

    def max_reference_tokens(self, tokenizer):
        return 6


register_task("{name}", DoubleTask)
'''


def test_a_new_trainer_and_a_new_task_each_one_module_trained_through_the_cli(user_folder, capsys):
    import gymnasium as gym

    from textgym.registry import TRAINERS

    trainer, task, name = unique("my_trainer"), unique("my_task"), unique("double")
    (user_folder / f"{trainer}.py").write_text(TRAINER.replace("{module}", trainer))
    (user_folder / f"{task}.py").write_text(TASK.replace("{name}", name))
    run = user_folder / "runs" / "vpg"
    env_kwargs = json.dumps({"task": f"{task}:DoubleTask"})
    assert main(["train", f"{trainer}:vpg", "--env", "textgym/TokenGeneration-v0", "--env-kwargs", env_kwargs,
                 "--total-steps", "40", "--out", str(run), *TINY]) == 0
    assert "vpg" in TRAINERS  # registered by importing the module the command named
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [h["iteration"] for h in history] == list(range(1, len(history) + 1)) and history[-1]["env_steps"] >= 40
    assert json.loads((run / "config.json").read_text())["algo"] == f"{trainer}:vpg"
    assert main(["eval", str(run), "--episodes", "8", "--json", "--trust-code"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["episodes"] == 8
    # the task's registration line makes its name a task of every token env
    env = gym.make("textgym/TokenGeneration-v0", task=name)
    obs, _ = env.reset(seed=3)
    assert env.unwrapped.current_example.prompt.endswith("=")
    assert main(["train", "nope:vpg", "--out", str(user_folder / "x"), "--quiet"]) == 2
    assert "nope" in capsys.readouterr().err
