import subprocess
import sys

import pytest

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
        if agent == "scripted":
            assert success == "100.0%", env_id
        assert episodes == "3"


def test_bad_arguments(capsys):
    assert main(["demo", "--episodes", "0"]) == 2
    assert "--episodes must be at least 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["fly"])


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "textgym.cli", "list"], capture_output=True, text=True, check=True)
    assert "textgym/Reverse-v0" in out.stdout
