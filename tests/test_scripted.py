import gymnasium as gym
import numpy as np
import pytest

from textgym.agents import scripted_policy
from textgym.cli import play


def test_text_binary_search_matches_the_plain_game():
    plain, text = gym.make("textgym/GuessNumber-v0"), gym.make("textgym/GuessNumberText-v0")
    for seed in range(30):
        for env in (plain, text):
            env.reset(seed=seed)
        outcomes = []
        for env in (plain, text):
            obs, _ = env.reset(seed=seed)
            policy, done = scripted_policy(env), False
            while not done:
                obs, _, term, trunc, info = env.step(policy(obs))
                done = term or trunc
            outcomes.append((info["guesses"], info["secret"], info["success"]))
        assert outcomes[0] == outcomes[1]  # same seed, same secret, same number of guesses


@pytest.mark.parametrize("env_id", ["textgym/Addition-v0", "textgym/Sort-v0"])
def test_oracle_scores_one(env_id):
    env = gym.make(env_id)
    ret, win, _ = play(env, scripted_policy(env), episodes=20, seed=0)
    assert ret == 1.0 and win == 1.0


def test_oracle_on_a_list_task_with_a_word_tokenizer():
    env = gym.make("textgym/TokenGeneration-v0", task=[("hi", ["hello"]), ("yo", ["yo yo"])], reward="f1")
    ret, win, _ = play(env, scripted_policy(env), episodes=6, seed=0)
    assert ret == 1.0


def test_scripted_policy_rejects_other_envs():
    with pytest.raises(TypeError, match="no scripted policy for CartPoleEnv"):
        scripted_policy(gym.make("CartPole-v1"))


def test_guess_number_scripted_mean_is_binary_search():
    env = gym.make("textgym/GuessNumber-v0")
    _, win, length = play(env, scripted_policy(env), episodes=500, seed=0)
    assert win == 1.0 and abs(length - 5.80) < 0.15 and np.isfinite(length)


@pytest.mark.parametrize("env_id", ["textgym/GuessNumber-v0", "textgym/GuessNumberText-v0"])
def test_shaping_does_not_change_the_return_of_binary_search(env_id):
    plain, shaped = gym.make(env_id), gym.make(env_id, shaping=True)
    ret_plain, win, _ = play(plain, scripted_policy(plain), episodes=30, seed=0)
    ret_shaped, _, _ = play(shaped, scripted_policy(shaped), episodes=30, seed=0)
    assert win == 1.0 and ret_shaped == pytest.approx(ret_plain)
