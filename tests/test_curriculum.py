"""The curriculum: its band logic, its bad input, its place in a trainer's log, and exact resume."""

import math

import gymnasium as gym
import pytest
import torch

import textgym  # noqa: F401  (registers the envs)
from textgym.agents import ppo
from textgym.agents.state import run_history as metrics
from textgym.agents.state import same_weights
from textgym.envs.curriculum import Curriculum


def _play(envs, seed, succeed):
    """One episode in every sub-env: the expert's answer where ``succeed``, else eos at once."""
    obs, _ = envs.reset(seed=seed)
    done = torch.zeros(envs.num_envs, dtype=torch.bool)
    while not done.all():
        actions = torch.where(succeed, envs.expert(obs), envs.tokenizer.eos_id)
        obs, _, terminated, truncated, _ = envs.step(actions)
        done |= terminated | truncated


def test_the_band_moves_the_difficulty_up_down_and_holds_it():
    envs = gym.make_vec("textgym/Hanoi-v0", num_envs=10, device="cpu", autoreset_mode="disabled",
                        task_kwargs={"difficulty": 3})
    assert envs.difficulties == range(1, 4) and envs.difficulty == 3
    envs.set_curriculum(Curriculum(low=0.3, high=0.7, episodes=10))
    assert envs.difficulty == 1  # starts at the easiest
    assert math.isnan(envs.curriculum.rate)  # no decision yet
    levels = []
    for seed, rate in enumerate([1.0, 1.0, 1.0, 1.0, 0.5, 0.7, 0.2, 0.0, 0.0, 0.3]):
        _play(envs, seed, torch.arange(10) < round(rate * 10))
        levels.append(envs.difficulty)
        envs.reset(seed=100 + seed)  # the decision comes with the next full reset
        assert envs.difficulty == _expected(levels[-1], rate)
        assert envs.curriculum.rate == pytest.approx(rate)  # what it compared with its band
        assert envs.setup.task.difficulty == envs.difficulty
    assert levels == [1, 2, 3, 3, 3, 3, 3, 2, 1, 1]
    assert envs.curriculum.moves == [(0, 1), (10, 2), (20, 3), (70, 2), (80, 1)]
    restored = Curriculum(low=0.3, high=0.7, episodes=10)
    restored.attach(envs.difficulties, torch.device("cpu"))
    restored.load_state_dict(envs.curriculum.state_dict())
    assert restored.rate == pytest.approx(0.3) and restored.moves == envs.curriculum.moves


def _expected(level, rate):
    return min(3, level + 1) if rate > 0.7 else max(1, level - 1) if rate < 0.3 else level


def test_a_decision_waits_for_enough_episodes():
    envs = gym.make_vec("textgym/Hanoi-v0", num_envs=4, device="cpu", autoreset_mode="disabled")
    envs.set_curriculum(Curriculum(episodes=10))
    for seed in range(2):  # 8 episodes: not yet
        _play(envs, seed, torch.ones(4, dtype=torch.bool))
    envs.reset(seed=9)
    assert envs.difficulty == 1
    _play(envs, 3, torch.ones(4, dtype=torch.bool))  # 12
    envs.reset(seed=10)
    assert envs.difficulty == 2


def test_the_puzzles_at_a_lower_difficulty_are_those_of_that_difficulty():
    low = gym.make_vec("textgym/Maze-v0", num_envs=4, device="cpu", render_mode="ansi", task_kwargs={"difficulty": 3})
    high = gym.make_vec("textgym/Maze-v0", num_envs=4, device="cpu", render_mode="ansi", task_kwargs={"difficulty": 6})
    high.difficulty = 3
    low.reset(seed=1)
    high.reset(seed=1)
    assert low.render() == high.render()


def test_bad_curricula_and_difficulties_are_refused():
    for kwargs, match in [({"low": 0.8, "high": 0.2}, "band is empty"), ({"low": 0.5, "high": 0.5}, "band is empty"),
                          ({"low": -0.1}, r"low must be a success rate in \[0, 1\]"),
                          ({"high": 1.5}, r"high must be a success rate in \[0, 1\]"),
                          ({"episodes": 0}, "episodes must be a positive integer"),
                          ({"window": 0}, "window must be a positive integer"),
                          ({"window": 1.5}, "window must be a positive integer")]:
        with pytest.raises(ValueError, match=match):
            Curriculum(**kwargs)
    with pytest.raises(ValueError, match="keys among"):
        Curriculum.from_setting({"band": [0.2, 0.8]})
    envs = gym.make_vec("textgym/Reverse-v0", num_envs=2, device="cpu")
    with pytest.raises(ValueError, match="has no difficulty knob"):
        envs.set_curriculum(Curriculum())
    hanoi = gym.make_vec("textgym/Hanoi-v0", num_envs=2, device="cpu")
    with pytest.raises(ValueError, match=r"difficulty must be an integer in 1\.\.3, got 4"):
        hanoi.difficulty = 4  # above the difficulty it was made with: its shapes do not fit
    with pytest.raises(ValueError, match=r"curriculum start must be a difficulty in 1\.\.3"):
        hanoi.set_curriculum(Curriculum(start=5))
    with pytest.raises(ValueError, match="curriculum must be a JSON object or None"):
        ppo.PPOConfig(curriculum=[0.2, 0.8])
    with pytest.raises(ValueError, match="no difficulty knob"):
        ppo.train(ppo.PPOConfig(env_id="textgym/Reverse-v0", curriculum={}, num_envs=4, total_steps=10), progress=False)


@pytest.mark.parametrize("window", [1, 2])
def test_a_trainer_logs_the_difficulty_and_resumes_it_exactly(tmp_path, stop_at, window):
    cfg = ppo.PPOConfig(env_id="textgym/Hanoi-v0", env_kwargs={"task_kwargs": {"difficulty": 3}},
                        curriculum={"low": 0.0, "high": 0.01, "episodes": 8, "window": window}, num_envs=8, total_steps=600,
                        eval_episodes=8, device="cpu", n_layers=1, d_model=32)
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    ppo.train(cfg, out=whole, progress=False, save_every=100)
    levels = [row["difficulty"] for row in metrics(whole)]
    assert levels[0] == 1.0 and set(levels) <= {1.0, 2.0, 3.0}
    rates = [row["level_success"] for row in metrics(whole)]
    assert math.isnan(rates[0]) and all(0.0 <= r <= 1.0 for r in rates if not math.isnan(r))
    assert any(not math.isnan(r) for r in rates)  # 8 episodes a decision: some were made
    stop_at(3, ppo.train, cfg, out=parts, progress=False, save_every=100)
    ppo.train(cfg, out=parts, progress=False, save_every=100, resume=True)
    assert metrics(parts) == metrics(whole)
    assert same_weights(parts, whole)


def test_the_guessing_game_in_text_has_its_range_as_the_knob():
    envs = gym.make_vec("textgym/GuessNumberText-v0", num_envs=64, device="cpu", autoreset_mode="disabled",
                        render_mode="ansi")
    assert envs.tops == [8, 16, 32, 64, 100] and envs.difficulties == range(1, 6) and envs.difficulty == 5
    envs.difficulty = 2
    obs, _ = envs.reset(seed=0)
    assert envs.render().startswith("guess 1-16\n") and int(envs.secret.max()) <= 16
    done, won = torch.zeros(64, dtype=torch.bool), torch.zeros(64, dtype=torch.bool)
    while not done.all():
        obs, _, terminated, truncated, info = envs.step(envs.expert(obs))
        done |= terminated | truncated
        won |= terminated & info["success"]
    assert bool(won.all()) and envs.episode_metrics()["mean_guesses"] <= 5  # binary search on 1..16
    # a guess above the level's range is invalid, as a guess above 100 is at the top level
    envs.reset(seed=1)
    for ch in "17":
        obs, *_ = envs.step(torch.full((64,), envs.tokenizer.encode(ch)[0]))
    envs.step(torch.full((64,), envs.tokenizer.eos_id))
    assert envs.render().split("\n---\n")[0].endswith("17: invalid\n")


def _prompts(envs, obs):
    return [envs.tokenizer.decode(ids[:n].tolist()) for ids, n in zip(obs["input_ids"], obs["attention_mask"].sum(1))]


def test_a_window_draws_each_episodes_level_from_its_key():
    def make():
        envs = gym.make_vec("textgym/Hanoi-v0", num_envs=64, device="cpu", autoreset_mode="disabled",
                            task_kwargs={"difficulty": 5})
        envs.set_curriculum(Curriculum(start=5, window=3, episodes=1000))
        return envs

    envs = make()
    obs, _ = envs.reset(seed=1)
    assert envs.difficulty == 5 and set(envs.levels.tolist()) == {3, 4, 5}
    assert [int(p[0]) for p in _prompts(envs, obs)] == envs.levels.tolist()  # each prompt is of its level
    again = make()
    again.reset(seed=1)
    assert torch.equal(again.levels, envs.levels)  # drawn from the seed
    done, won = torch.zeros(64, dtype=torch.bool), torch.zeros(64, dtype=torch.bool)
    while not done.all():
        obs, _, terminated, truncated, info = envs.step(envs.expert(obs))
        done |= terminated | truncated
        won |= terminated & info["success"]
    assert bool(won.all())  # each episode judged against its own level's puzzle
    # only the episodes at the current level are counted towards the next decision
    assert int(envs.curriculum._counted) == int((envs.levels == 5).sum()) < 64


def test_the_level_moves_on_the_success_at_the_current_level_alone():
    envs = gym.make_vec("textgym/Hanoi-v0", num_envs=64, device="cpu", autoreset_mode="disabled")
    envs.set_curriculum(Curriculum(low=0.3, high=0.7, episodes=8, start=3, window=2))
    obs, _ = envs.reset(seed=0)
    easier = envs.levels < 3
    assert 0.3 < easier.float().mean() < 0.7  # over every episode the rate would stay in the band
    done = torch.zeros(64, dtype=torch.bool)
    while not done.all():  # solve the easier puzzles, fail every one at the current level
        obs, _, terminated, truncated, _ = envs.step(torch.where(easier, envs.expert(obs), envs.tokenizer.eos_id))
        done |= terminated | truncated
    envs.reset(seed=1)
    assert envs.difficulty == 2 and set(envs.levels.tolist()) == {1, 2}


def test_the_guessing_game_in_text_draws_each_games_range_in_a_window():
    envs = gym.make_vec("textgym/GuessNumberText-v0", num_envs=64, device="cpu", autoreset_mode="disabled")
    envs.set_curriculum({"start": 4, "window": 2})
    obs, _ = envs.reset(seed=3)
    assert set(envs.levels.tolist()) == {3, 4}
    tops = torch.tensor(envs.tops)[envs.levels - 1]
    assert [p.split("\n")[0] for p in _prompts(envs, obs)] == [f"guess 1-{t}" for t in tops.tolist()]
    assert bool((envs.secret <= tops).all()) and bool((envs.hi == tops).all())
    done, won = torch.zeros(64, dtype=torch.bool), torch.zeros(64, dtype=torch.bool)
    while not done.all():
        obs, _, terminated, truncated, info = envs.step(envs.expert(obs))
        done |= terminated | truncated
        won |= terminated & info["success"]
    assert bool(won.all()) and envs.episode_metrics()["mean_guesses"] <= 6  # binary search on 1..32 and 1..64
