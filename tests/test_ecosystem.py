"""textgym's vector envs under the ecosystem's own tools: Gymnasium's vector wrappers, torchrl,
Stable-Baselines3's success rate, and a CleanRL-style flat observation."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.wrappers.vector import (
    DictInfoToList,
    FlattenObservation,
    NormalizeObservation,
    NormalizeReward,
    RecordEpisodeStatistics,
)

import textgym  # noqa: F401


def play(envs, steps, seed=0):
    """Random actions; returns every step's (reward, terminated, truncated, info)."""
    envs.action_space.seed(seed)
    envs.reset(seed=seed)
    return [envs.step(envs.action_space.sample())[1:] for _ in range(steps)]


def test_numpy_by_default_and_tensors_when_a_device_is_given():
    obs, _ = gym.make_vec("textgym/Reverse-v0", num_envs=2).reset(seed=0)
    assert isinstance(obs["input_ids"], np.ndarray) and obs["input_ids"].dtype == np.int64
    obs, _ = gym.make_vec("textgym/Reverse-v0", num_envs=2, device="cpu").reset(seed=0)
    assert isinstance(obs["input_ids"], torch.Tensor)


def test_record_episode_statistics_counts_each_episodes_return():
    envs = RecordEpisodeStatistics(gym.make_vec("textgym/GuessNumber-v0", num_envs=3, max_guesses=3))
    running, ended = np.zeros(3), 0
    for reward, terminated, truncated, info in play(envs, 12):
        running += reward
        done = terminated | truncated
        if done.any():
            assert np.array_equal(info["_episode"], done)
            np.testing.assert_allclose(info["episode"]["r"][done], running[done], rtol=1e-6)
            assert (info["episode"]["l"][done] == 3).all()  # three wrong or right guesses at most
            ended += int(done.sum())
        running[done] = 0.0
        running[~done & (running == 0)] = 0.0
    assert ended >= 3


def test_normalize_reward_and_observation_give_finite_floats():
    envs = NormalizeObservation(NormalizeReward(gym.make_vec("textgym/GuessNumber-v0", num_envs=4, max_guesses=3)))
    steps = play(envs, 20)
    rewards = np.stack([s[0] for s in steps])
    assert rewards.dtype.kind == "f" and np.isfinite(rewards).all() and rewards.std() > 0
    obs, *_ = envs.step(envs.action_space.sample())
    assert obs.dtype == np.float32 and np.isfinite(obs).all()


def test_dict_info_to_list_gives_each_sub_env_its_info_and_is_success_at_the_end():
    envs = DictInfoToList(gym.make_vec("textgym/GuessNumber-v0", num_envs=3, max_guesses=2))
    ends = 0
    for _, terminated, truncated, infos in play(envs, 8):
        assert isinstance(infos, list) and len(infos) == 3
        for i, info in enumerate(infos):
            if terminated[i] or truncated[i]:
                assert isinstance(info["is_success"], (bool, np.bool_)) and "secret" in info
                ends += 1
            else:
                assert "is_success" not in info
    assert ends >= 3


def test_array_conversion_to_torch():
    from gymnasium.wrappers.vector import ArrayConversion

    envs = ArrayConversion(gym.make_vec("textgym/Reverse-v0", num_envs=2), env_xp=np, target_xp=torch)
    obs, _ = envs.reset(seed=0)
    _, reward, terminated, *_ = envs.step(torch.tensor([1, 1]))  # eos: both episodes end
    assert isinstance(obs["input_ids"], torch.Tensor) and isinstance(reward, torch.Tensor) and bool(terminated.all())


def test_same_step_autoreset_keeps_the_last_observation_in_info():
    envs = gym.make_vec("textgym/Reverse-v0", num_envs=2, autoreset_mode="same_step")
    first, _ = envs.reset(seed=0)
    obs, _, terminated, _, info = envs.step(np.array([1, 1]))  # eos ends both
    assert terminated.all() and info["_final_obs"].all()
    assert info["final_obs"]["attention_mask"].sum(1).tolist() == (first["attention_mask"].sum(1) + 1).tolist()
    assert not np.array_equal(obs["input_ids"], first["input_ids"])  # the next episodes have begun
    assert (obs["attention_mask"].sum(1) < info["final_obs"]["attention_mask"].sum(1)).all()


@pytest.mark.parametrize("mode", ["disabled", "same_step"])
def test_torchrl_gym_wrapper(mode):
    pytest.importorskip("torchrl")
    from torchrl.envs.libs.gym import GymWrapper

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = GymWrapper(gym.make_vec("textgym/GuessNumber-v0", num_envs=4, autoreset_mode=mode))
        td = env.rollout(12, break_when_any_done=False)
    assert td.batch_size == torch.Size([4, 12])
    assert td["next", "observation"].shape == (4, 12, 23)
    assert int(td["next", "done"].sum()) >= 4  # every game ends within its 10 guesses


def test_torchrl_gym_env_by_id():
    pytest.importorskip("torchrl")
    from torchrl.envs.libs.gym import GymEnv

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        td = GymEnv("textgym/Reverse-v0").rollout(20)
    assert ("next", "input_ids") in td.keys(True) and bool(td["next", "done"][-1])


@pytest.mark.parametrize("make", ["adapter", "make_vec_env"])
def test_sb3_eval_callback_reports_a_success_rate(make):
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import EvalCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecMonitor

    from textgym.envs.sb3 import SB3VecEnv

    def envs():
        if make == "adapter":
            return VecMonitor(SB3VecEnv("textgym/GuessNumber-v0", num_envs=4))
        return make_vec_env("textgym:textgym/GuessNumber-v0", n_envs=2)

    model = PPO("MlpPolicy", envs(), n_steps=16, seed=0)
    callback = EvalCallback(envs(), eval_freq=8, n_eval_episodes=8, verbose=0)
    model.learn(64, callback=callback)
    assert len(callback._is_success_buffer) == 8
    assert all(isinstance(s, (bool, np.bool_)) for s in callback._is_success_buffer)


def test_cleanrl_style_flat_observations():
    """CleanRL sizes its MLP from ``single_observation_space.shape``: flatten the token Dict first."""
    envs = gym.vector.SyncVectorEnv([lambda: gym.wrappers.FlattenObservation(gym.make("textgym/Reverse-v0"))] * 2)
    n_inputs = int(np.array(envs.single_observation_space.shape).prod())
    assert n_inputs == 2 * 14  # input_ids and attention_mask side by side
    mlp = torch.nn.Sequential(torch.nn.Linear(n_inputs, 16), torch.nn.Tanh(), torch.nn.Linear(16, envs.single_action_space.n))
    obs, _ = envs.reset(seed=0)
    logits = mlp(torch.as_tensor(obs, dtype=torch.float32))
    obs, *_ = envs.step(logits.argmax(-1).numpy())
    assert obs.shape == (2, n_inputs)
    vec = FlattenObservation(gym.make_vec("textgym/Reverse-v0", num_envs=2))
    assert vec.single_observation_space.shape == (n_inputs,)


def test_text_games_pass_check_env_as_text_envs():
    from gymnasium.utils.env_checker import check_env

    from textgym.envs import BullsAndCows, Mastermind

    for cls in (Mastermind, BullsAndCows):
        check_env(cls(), skip_render_check=True)
