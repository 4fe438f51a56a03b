"""Stable-Baselines3 works on every textgym env, out of the box and through textgym's adapter."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.env_util import make_vec_env

import textgym
from textgym.envs.sb3 import SB3VecEnv, TokenTransformerExtractor

IDS = [info.id for info in textgym.ENVS]


def _policy(env_id):
    return "MlpPolicy" if env_id == "textgym/GuessNumber-v0" else "MultiInputPolicy"


@pytest.mark.parametrize("algo", [PPO, A2C, DQN])
@pytest.mark.parametrize("env_id", IDS)
def test_sb3_algorithms_run_on_every_env(algo, env_id):
    venv = make_vec_env(f"textgym:{env_id}", n_envs=2, seed=0)
    kwargs = {DQN: {"learning_starts": 0, "buffer_size": 500}, A2C: {"n_steps": 8}, PPO: {"n_steps": 8, "batch_size": 16}}[algo]
    model = algo(_policy(env_id), venv, seed=0, **kwargs)
    model.learn(total_timesteps=32)
    action, _ = model.predict(venv.reset(), deterministic=True)
    assert action.shape == (2,)


def test_adapter_resets_finished_envs_in_the_same_step():
    venv = SB3VecEnv("textgym/GuessNumber-v0", num_envs=3, max_guesses=1)
    venv.seed(5)
    obs = venv.reset()
    assert obs.shape == (3, 5) and obs[:, 2].tolist() == [1.0, 1.0, 1.0]
    obs, reward, done, infos = venv.step(np.array([0, 0, 0]))
    assert done.all() and reward.dtype == np.float32
    assert obs[:, 2].tolist() == [1.0, 1.0, 1.0]  # already the next games
    assert all(info["terminal_observation"][2] == 0.0 for info in infos)  # the finished games
    assert all(info["TimeLimit.truncated"] is False for info in infos)


def test_adapter_seeding_matches_the_vector_env():
    venv = SB3VecEnv("textgym/Reverse-v0", num_envs=4)
    venv.seed(11)
    obs = venv.reset()
    vec = gym.make_vec("textgym/Reverse-v0", num_envs=4)
    expected, _ = vec.reset(seed=11)
    np.testing.assert_array_equal(obs["input_ids"], expected["input_ids"])


def test_adapter_marks_truncation_for_sb3():
    venv = SB3VecEnv("textgym/Reverse-v0", num_envs=2, max_new_tokens=1)
    venv.reset()
    _, _, done, infos = venv.step(np.array([2, 2]))  # a letter, not eos: truncated at 1 token
    assert done.all() and all(info["TimeLimit.truncated"] for info in infos)


def test_adapter_rejects_other_envs():
    with pytest.raises(TypeError, match="needs a textgym vector env"):
        SB3VecEnv(gym.make("textgym/Reverse-v0"))


def test_extractor_honours_the_attention_mask():
    env = gym.make("textgym/Reverse-v0")
    ext = TokenTransformerExtractor(env.observation_space, d_model=32, n_layers=1, n_heads=2)
    obs, _ = env.reset(seed=0)
    ids = torch.as_tensor(obs["input_ids"])[None].float()
    mask = torch.as_tensor(obs["attention_mask"])[None].float()
    out = ext({"input_ids": ids, "attention_mask": mask})
    assert out.shape == (1, 32)
    junk = torch.where(mask.bool(), ids, torch.full_like(ids, 5.0))  # change only the padding
    assert torch.allclose(ext({"input_ids": junk, "attention_mask": mask}), out, atol=1e-6)
    changed = ids.clone()
    changed[0, 0] = (changed[0, 0] + 1) % 8 + 2  # change a real token
    assert not torch.allclose(ext({"input_ids": changed, "attention_mask": mask}), out)


def test_extractor_rejects_a_box_observation():
    with pytest.raises(ValueError, match="needs a Dict observation"):
        TokenTransformerExtractor(gym.make("textgym/GuessNumber-v0").observation_space)


def test_ppo_with_the_extractor_on_the_adapter():
    venv = SB3VecEnv("textgym/Reverse-v0", num_envs=4)
    model = PPO("MultiInputPolicy", venv, n_steps=8, batch_size=16, seed=0,
                policy_kwargs=dict(features_extractor_class=TokenTransformerExtractor,
                                   features_extractor_kwargs=dict(d_model=32, n_layers=1, n_heads=2)))
    model.learn(total_timesteps=64)
    assert isinstance(model.policy.features_extractor, TokenTransformerExtractor)


def test_guess_number_action_masks_follow_the_interval():
    env = gym.make("textgym/GuessNumber-v0").unwrapped
    env.reset(seed=0)
    assert env.action_masks().all()
    env.step(49)  # guess 50
    mask = env.action_masks()
    assert mask.sum() in (50, 49) and mask[49] == False  # noqa: E712 (a numpy bool)
    vec = gym.make_vec("textgym/GuessNumber-v0", num_envs=3)
    vec.reset(seed=0)
    vec.step(np.array([49, 49, 49]))
    masks = vec.action_masks()
    assert masks.shape == (3, 100) and not masks[:, 49].any()


@pytest.mark.parametrize("make", ["make_vec_env", "adapter"])
def test_maskable_ppo_runs_with_textgyms_masks(make):
    sb3_contrib = pytest.importorskip("sb3_contrib")
    from sb3_contrib.common.maskable.utils import get_action_masks

    venv = (make_vec_env("textgym:textgym/GuessNumber-v0", n_envs=2, seed=0) if make == "make_vec_env"
            else SB3VecEnv("textgym/GuessNumber-v0", num_envs=2))
    model = sb3_contrib.MaskablePPO("MlpPolicy", venv, n_steps=32, batch_size=32, seed=0)
    model.learn(64)
    obs = venv.reset()
    venv.step(np.array([49, 49]))
    masks = get_action_masks(venv)
    assert masks.shape == (2, 100) and not masks[:, 49].any()
    action, _ = model.predict(venv.reset(), action_masks=get_action_masks(venv))
    assert obs.shape == (2, 23) and all(get_action_masks(venv)[i, a] for i, a in enumerate(action))


@pytest.mark.parametrize("make", ["make_vec_env", "adapter"])
@pytest.mark.parametrize(("env_id", "chars"), [("textgym/GuessNumberText-v0", "0123456789"), ("textgym/Hanoi-v0", "ABC")])
def test_maskable_ppo_writes_only_the_tokens_of_the_action_mask(make, env_id, chars):
    sb3_contrib = pytest.importorskip("sb3_contrib")
    from sb3_contrib.common.maskable.utils import get_action_masks

    kwargs = {"action_mask": True}
    venv = (make_vec_env(f"textgym:{env_id}", n_envs=2, seed=0, env_kwargs=kwargs) if make == "make_vec_env"
            else SB3VecEnv(env_id, num_envs=2, **kwargs))
    tok = gym.make(env_id).unwrapped.tokenizer
    allowed = set(tok.encode(chars)) | {tok.eos_id}
    masks = get_action_masks(venv)
    assert masks.shape == (2, tok.vocab_size) and {int(a) for a in np.nonzero(masks[0])[0]} == allowed
    model = sb3_contrib.MaskablePPO("MultiInputPolicy", venv, n_steps=16, batch_size=16, seed=0)
    obs = venv.reset()
    for _ in range(20):
        action, _ = model.predict(obs, action_masks=get_action_masks(venv))
        assert {int(a) for a in action} <= allowed
        obs, *_ = venv.step(action)
