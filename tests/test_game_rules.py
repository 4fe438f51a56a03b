"""Each game's rules are stated once and serve its single and vector forms alike; the registries
of trainers and tasks check what they are given."""

import inspect
import pathlib
import re

import pytest
import torch

from textgym.envs.guess_number import GuessNumberEnv, GuessNumberVectorEnv, GuessRules
from textgym.envs.guess_number_text import GuessNumberTextEnv, GuessNumberTextVectorEnv
from textgym.envs.token_generation import TokenGenerationEnv, TokenGenerationVectorEnv, TokenSetup

ENVS = pathlib.Path(__file__).resolve().parents[1] / "textgym" / "envs"


def test_the_guessing_games_interval_rule_is_written_once():
    # "higher" moves lo above the guess, "lower" moves hi below it: one line each in all of textgym/envs
    text = "\n".join(p.read_text() for p in ENVS.glob("*.py"))
    assert len(re.findall(r"(?:guess|value) \+ 1\)", text)) == 1
    assert len(re.findall(r"(?:guess|value) - 1\)", text)) == 1
    games = "\n".join(p.read_text() for p in ENVS.glob("guess_number*.py"))
    assert len(re.findall(r"keys? % ", games)) == 1  # the secret's draw


@pytest.mark.parametrize("shaping", [False, True])
def test_judge_gives_the_same_on_ints_and_tensors(shaping):
    game = GuessRules(1, 100, 10, 0.1, shaping)
    cases = [(1, 100, 50, 70, True), (1, 100, 50, 30, True), (40, 60, 50, 50, True), (40, 60, 55, 41, False)]
    lo, hi, guess, secret, made = (torch.tensor(c) for c in zip(*cases))
    t_lo, t_hi, t_correct, t_reward = game.judge(lo, hi, guess, secret, made)
    for i, case in enumerate(cases):
        i_lo, i_hi, i_correct, i_reward = game.judge(*case)
        assert (i_lo, i_hi, i_correct) == (int(t_lo[i]), int(t_hi[i]), bool(t_correct[i]))
        assert i_reward == pytest.approx(float(t_reward[i]), abs=1e-6)


def test_judge_by_hand():
    game = GuessRules(1, 100, 10, 0.1, False)
    assert game.judge(1, 100, 50, 70, True) == (51, 100, False, -0.1)   # higher
    assert game.judge(1, 100, 50, 30, True) == (1, 49, False, -0.1)    # lower
    assert game.judge(40, 60, 50, 50, True) == (50, 50, True, 1.0)     # right
    assert game.judge(40, 60, 55, 41, False) == (40, 60, False, -0.1)  # not a valid guess: no narrowing
    shaped = GuessRules(1, 100, 10, 0.1, True)
    lo, hi, correct, reward = shaped.judge(1, 100, 50, 70, True)
    # the potential went from -log2(100)/log2(100) = -1 to -log2(50)/log2(100), less the penalty
    assert reward == pytest.approx(1 - 0.84948500216 - 0.1)
    assert shaped.over(False, 10) and shaped.over(True, 1) and not shaped.over(False, 9)


@pytest.mark.parametrize("single_env, vector_env, source", [
    (GuessNumberEnv, GuessNumberVectorEnv, GuessRules),
    (GuessNumberTextEnv, GuessNumberTextVectorEnv, GuessRules),
    (TokenGenerationEnv, TokenGenerationVectorEnv, TokenSetup.build),
])
def test_both_forms_of_a_game_take_its_arguments_from_where_they_are_checked(single_env, vector_env, source):
    written = {n for n in inspect.signature(source).parameters if n != "text"}
    # help(env) and inspect show the game's arguments, not **kwargs
    for env in (single_env, vector_env):
        shown = inspect.signature(env).parameters
        assert written <= set(shown), (env, written - set(shown))
        assert not any(p.kind == p.VAR_KEYWORD for p in shown.values())
        assert "render_mode" in shown
    assert {"num_envs", "device", "max_episode_steps", "autoreset_mode"} <= set(inspect.signature(vector_env).parameters)
    # the defaults are the ones where the arguments are checked
    defaults = {n: p.default for n, p in inspect.signature(source).parameters.items() if n in written}
    for env in (single_env, vector_env):
        assert {n: inspect.signature(env).parameters[n].default for n in written} == defaults
    # an argument that no source names is refused with the env's name, as Python refuses one
    with pytest.raises(TypeError, match=rf"{single_env.__name__}\(\): got an unexpected keyword argument 'colour'"):
        single_env(colour=3)
    with pytest.raises(TypeError, match=rf"{vector_env.__name__}\(\): got an unexpected keyword argument 'colour'"):
        vector_env(2, colour=3)
    # and the arguments reach the game: a bad value gets the check's own error from either form
    bad = {"high": 0} if source is GuessRules else {"shaping": "yes"}
    for make in (lambda: single_env(**bad), lambda: vector_env(2, **bad)):
        with pytest.raises(ValueError, match="high|shaping"):
            make()


def test_a_vector_env_refuses_a_render_mode_it_does_not_have():
    from textgym.envs.guess_number import GuessNumberVectorEnv
    from textgym.envs.multi_turn import MultiTurnVectorEnv

    for env in (GuessNumberVectorEnv, MultiTurnVectorEnv):
        with pytest.raises(ValueError, match=r"render_mode of the vector env must be one of \['ansi'\] or None, got 'human'"):
            env(2, render_mode="human")
    assert GuessNumberVectorEnv(2, render_mode="ansi").render_mode == "ansi"


def test_register_trainer_and_task_refuse_bad_input():
    from textgym.registry import TRAINERS, register_trainer
    from textgym.tasks import TASKS, CopyTask, register_task

    with pytest.raises(ValueError, match="a trainer's name must be a word"):
        register_trainer("my trainer!", "m:train", "m:Config")
    with pytest.raises(ValueError, match="train must be a 'module:name' entry point"):
        register_trainer("mine", "train", "m:Config")
    with pytest.raises(ValueError, match="trainer 'ppo' is registered already"):
        register_trainer("ppo", "elsewhere:train", "elsewhere:Config")
    with pytest.raises(ValueError, match="needs a Task subclass"):
        register_task("mine", dict)
    with pytest.raises(ValueError, match="task 'reverse' is registered already"):
        register_task("reverse", CopyTask)
    assert "mine" not in TRAINERS and "mine" not in TASKS
