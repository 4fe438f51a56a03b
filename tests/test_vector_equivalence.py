"""Every vector env follows exactly the rules of its single env, seed for seed and action for action."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import textgym

IDS = [info.id for info in textgym.ENVS]


def _actions(env_id, n, rng, vocab):
    """Actions that make episodes end in every way: eos, digits, numbers, junk."""
    if env_id == "textgym/GuessNumber-v0":
        return rng.integers(0, n)
    if env_id == "textgym/GuessNumberText-v0":
        tok = textgym.envs.GuessNumberTextEnv().tokenizer
        digits = tok.encode("0123456789")
        choice = rng.random()
        if choice < 0.6:
            return rng.choice(digits)
        if choice < 0.85:
            return tok.eos_id
        return rng.integers(0, vocab)
    return 1 if rng.random() < 0.15 else rng.integers(0, vocab)  # eos is id 1 of a CharTokenizer


def _obs_equal(single, vector_row):
    if isinstance(single, dict):
        for k in single:
            np.testing.assert_array_equal(single[k], np.asarray(vector_row[k]), err_msg=k)
    else:
        np.testing.assert_allclose(single, np.asarray(vector_row), rtol=0, atol=1e-6)


def _row(obs, i):
    return {k: v[i] for k, v in obs.items()} if isinstance(obs, dict) else obs[i]


def run_both(env_id, num_envs=5, steps=120, seed=123, **kwargs):
    singles = [gym.make(env_id, **kwargs) for _ in range(num_envs)]
    vec = gym.make_vec(env_id, num_envs=num_envs, **kwargs)
    obs, _ = vec.reset(seed=seed)
    done = [False] * num_envs
    for i, env in enumerate(singles):
        o, _ = env.reset(seed=seed + i)
        _obs_equal(o, _row(obs, i))
    n = singles[0].action_space.n
    rng = np.random.default_rng(0)
    episodes_ended = 0
    for _ in range(steps):
        actions = np.array([_actions(env_id, n, rng, n) for _ in range(num_envs)], dtype=np.int64)
        obs, reward, term, trunc, info = vec.step(actions)
        for i, env in enumerate(singles):
            if done[i]:  # next-step autoreset: the vector env starts the next episode now
                o, _ = env.reset()
                r, te, tr = 0.0, False, False
            else:
                o, r, te, tr, _ = env.step(actions[i])
            _obs_equal(o, _row(obs, i))
            assert float(reward[i]) == pytest.approx(r, abs=1e-6)
            assert (bool(term[i]), bool(trunc[i])) == (te, tr)
            done[i] = te or tr
            episodes_ended += done[i]
    assert episodes_ended > 10, "the actions should end many episodes"
    return episodes_ended


@pytest.mark.parametrize("env_id", IDS)
def test_vector_env_matches_single_env(env_id):
    run_both(env_id)


def test_equivalence_with_shaping_and_a_text_reward():
    run_both("textgym/TokenGeneration-v0", task="reverse", reward="f1", shaping=True)
    run_both("textgym/Reverse-v0", shaping=True)


def test_equivalence_of_the_guessing_game_with_shaping():
    run_both("textgym/GuessNumber-v0", shaping=True)
    run_both("textgym/GuessNumberText-v0", shaping=True, steps=300)


def test_equivalence_with_max_episode_steps():
    run_both("textgym/Reverse-v0", max_episode_steps=3)
    run_both("textgym/GuessNumber-v0", max_episode_steps=4)


def test_equivalence_on_a_list_task_with_two_references():
    examples = [("hi", ["hello", "hey"]), ("yo", ["yo"]), ("ab", ["ba"])]
    run_both("textgym/TokenGeneration-v0", task=examples, reward=[("exact_match", 0.5), ("token_accuracy", 0.5)])


def test_vector_env_declares_next_step_autoreset_and_batches_spaces():
    vec = gym.make_vec("textgym/Reverse-v0", num_envs=3, device="cpu")
    assert vec.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    assert isinstance(vec, gym.vector.VectorEnv)
    assert vec.observation_space["input_ids"].shape == (3, vec.single_observation_space["input_ids"].shape[0])
    obs, _ = vec.reset(seed=0)
    assert obs["input_ids"].dtype == torch.int64 and obs["attention_mask"].dtype == torch.int8


def test_reset_mask_restarts_only_the_masked_envs():
    vec = gym.make_vec("textgym/GuessNumber-v0", num_envs=3, device="cpu")
    vec.reset(seed=0)
    obs, *_ = vec.step(np.array([0, 0, 0]))
    before = obs.clone()
    obs, _ = vec.reset(options={"reset_mask": np.array([True, False, False])})
    assert obs[0, 2] == 1.0  # all guesses left again
    assert torch.equal(obs[1:], before[1:])


def test_same_seed_same_episodes_and_different_seeds_differ():
    def prompts(seed):
        vec = gym.make_vec("textgym/Reverse-v0", num_envs=8, device="cpu")
        obs, _ = vec.reset(seed=seed)
        return obs["input_ids"]

    assert torch.equal(prompts(7), prompts(7))
    assert not torch.equal(prompts(7), prompts(8))


def test_disabled_autoreset_freezes_finished_envs_until_reset():
    vec = gym.make_vec("textgym/GuessNumber-v0", num_envs=2, max_guesses=1, autoreset_mode="disabled", device="cpu")
    assert vec.metadata["autoreset_mode"] == gym.vector.AutoresetMode.DISABLED
    obs, _ = vec.reset(seed=0)
    obs1, r1, term1, *_ = vec.step(np.array([0, 0]))
    assert term1.all()
    obs2, r2, term2, trunc2, _ = vec.step(np.array([5, 5]))
    assert torch.equal(obs2, obs1) and (r2 == 0).all() and not term2.any() and not trunc2.any()
    obs3, _ = vec.reset()
    assert obs3[:, 2].tolist() == [1.0, 1.0]


def test_group_size_gives_groups_the_same_examples():
    vec = gym.make_vec("textgym/Reverse-v0", num_envs=6, autoreset_mode="disabled", device="cpu")
    obs, _ = vec.reset(seed=3, options={"group_size": 3})
    ids = obs["input_ids"]
    assert torch.equal(ids[0], ids[1]) and torch.equal(ids[1], ids[2]) and torch.equal(ids[3], ids[5])
    assert not torch.equal(ids[0], ids[3])
    obs, _ = vec.reset()  # the groups keep their shared streams
    assert torch.equal(obs["input_ids"][0], obs["input_ids"][2])
    with pytest.raises(ValueError, match="group_size"):
        vec.reset(seed=0, options={"group_size": 4})


def test_bad_autoreset_mode():
    with pytest.raises(ValueError, match="autoreset_mode must be 'next_step', 'same_step' or 'disabled'"):
        gym.make_vec("textgym/Reverse-v0", num_envs=2, autoreset_mode="first_step")


def test_an_observation_already_returned_does_not_change_when_the_env_steps():
    vec = gym.make_vec("textgym/Reverse-v0", num_envs=4, device="cpu")
    obs, _ = vec.reset(seed=0)
    kept = {k: v.clone() for k, v in obs.items()}
    for _ in range(3):
        vec.step(torch.full((4,), 5))
    for k in kept:
        assert torch.equal(obs[k], kept[k]), k
    vec.reset(seed=1)
    assert torch.equal(obs["input_ids"], kept["input_ids"])
