"""Reasoning Gym's datasets as textgym tasks: gym.make, check_env, its scorer as the reward, its
curriculum levels as the difficulty knob, and the errors."""

import sys

import gymnasium as gym
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import textgym  # noqa: F401  (registers the envs)
from textgym.tasks import make_task
from textgym.tasks.core import Example

pytest.importorskip("reasoning_gym")


def _env(**task_kwargs):
    return gym.make("textgym/TokenGeneration-v0", task="reasoning_gym", reward="task",
                    task_kwargs={"dataset": "leg_counting", **task_kwargs})


def test_a_reasoning_gym_dataset_is_a_gymnasium_env_scored_by_its_own_scorer():
    env = _env()
    check_env(env.unwrapped)
    u = env.unwrapped
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        assert "legs" in u.current_example.prompt
        done, total = False, 0.0
        while not done:
            obs, reward, terminated, truncated, info = env.step(u.expert(obs))
            total, done = total + reward, terminated or truncated
        assert total == 1.0 and info["is_success"]
    env.reset(seed=0)
    answer = u.current_example.references[0]
    for wrong in ["", "legs", "-1", "\x00"]:  # never an exception: a wrong or unreadable answer scores 0
        assert u.task.score(u.current_example, wrong) == 0.0
    assert u.task.score(Example("a question it never asked", ()), answer) == 0.0


def test_the_vector_env_plays_the_same_questions():
    single = _env()
    envs = gym.make_vec("textgym/TokenGeneration-v0", num_envs=3, device="cpu", task="reasoning_gym", reward="task",
                        task_kwargs={"dataset": "leg_counting"})
    obs, _ = envs.reset(seed=5)
    prompts = [ex.prompt for ex, _ in envs.episode_texts()]
    for i in range(3):
        single.reset(seed=5 + i)
        assert single.unwrapped.current_example.prompt == prompts[i]
    done = torch.zeros(3, dtype=torch.bool)
    while not done.all():
        obs, reward, terminated, truncated, info = envs.step(envs.expert(obs))
        done |= terminated | truncated
    assert info["score"].tolist() == [1.0, 1.0, 1.0]


def test_the_difficulty_is_the_datasets_curriculum_level():
    easy = make_task("reasoning_gym", dataset="basic_arithmetic", difficulty=0)
    assert easy.difficulties == range(0, 5)
    hard = make_task("reasoning_gym", dataset="basic_arithmetic", difficulty=4)
    mean = lambda task: sum(len(task.example(k).prompt) for k in range(50)) / 50  # noqa: E731
    assert mean(hard) > mean(easy)
    with pytest.raises(ValueError, match=r"difficulty of 'basic_arithmetic' must be an integer in 0\.\.4, got 9"):
        make_task("reasoning_gym", dataset="basic_arithmetic", difficulty=9)
    with pytest.raises(ValueError, match="has no curriculum"):
        make_task("reasoning_gym", dataset="acre", difficulty=0)
    assert make_task("reasoning_gym", dataset="leg_counting").difficulties is None


def test_an_unknown_dataset_lists_some_that_exist():
    with pytest.raises(ValueError, match=r"unknown Reasoning Gym dataset 'leg_countin'.*'leg_counting'"):
        make_task("reasoning_gym", dataset="leg_countin")


def test_without_reasoning_gym_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "reasoning_gym", None)
    with pytest.raises(ImportError, match=r'pip install "textgym\[reasoning\]"'):
        make_task("reasoning_gym", dataset="leg_counting")
